#!/usr/bin/python3
"""Minimal GPT-2 reference in plain PyTorch; writes the lmscale test fixture.

Regenerate the fixture with:

    /usr/bin/python3 tests/ref/gpt2_reference.py tests/fixtures/gpt2_tiny.bin

The model follows docs/model.md exactly: tied LM head, vocabulary padded to Vp (next
multiple of 64), loss = mean cross-entropy over logits[..., :V], LayerNorm eps 1e-5,
GELU tanh approximation, causal attention scaled by 1/sqrt(hs), fused QKV projection,
no dropout. Parameters are drawn as float32 values, then the model is converted to
float64 and every computation (forward, backward, clipping, AdamW) runs in float64, so
the stored results are the (rounded to float32) exact answers for the float32 inputs.

Fixture binary format (all little-endian, no padding between fields):

    char[8]   magic = "LMSFIX01"
    int32[9]  V, Vp, maxT, L, NH, C, B, T, nsteps
    float32[6] lr, beta1, beta2, eps, weight_decay, grad_clip
    int32     nparams                      total floats in the flat layout
    float32[nparams]  initial parameters, flat layer-major layout of docs/model.md
    int32[B*T]        input tokens, row-major (B, T)
    int32[B*T]        targets, row-major (B, T)
    float32[B*T*Vp]   logits of the initial parameters, full padded width, (B, T, Vp)
    float32           loss of the initial parameters
    float32[nparams]  d loss / d params, same flat layout (tied wte: embedding + head sum)
    float32[nsteps]   loss of the forward pass of each AdamW step (first = initial loss)
    float32[nsteps]   global gradient norm of each step, before clipping
    float32[nparams]  parameters after the nsteps AdamW steps

Each training step: zero grads, forward, backward,
clip_grad_norm_(all params, max_norm=grad_clip) (tied wte counted once), AdamW step.
AdamW applies weight decay only to 2-D tensors (wte, wpe, the four linear weight
matrices of each layer), not to biases or LayerNorm parameters.
"""

import math
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def padded_vocab(V):
    return ((V + 63) // 64) * 64


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


class LayerNorm(nn.Module):
    def __init__(self, C, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.bias = nn.Parameter(torch.zeros(C))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased variance
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class Linear(nn.Module):
    """y = x @ W^T + b with W stored (out, in), like nn.Linear."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.weight.t() + self.bias


class Attention(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.C, self.NH = C, NH
        self.c_attn = Linear(C, 3 * C)
        self.c_proj = Linear(C, C)

    def forward(self, x):
        B, T, C = x.shape
        NH, hs = self.NH, C // self.NH
        qkv = self.c_attn(x)                      # (B, T, 3C): [q | k | v]
        q, k, v = qkv.split(C, dim=-1)
        # head j uses columns j*hs..(j+1)*hs of each of q, k, v
        q = q.view(B, T, NH, hs).transpose(1, 2)  # (B, NH, T, hs)
        k = k.view(B, T, NH, hs).transpose(1, 2)
        v = v.view(B, T, NH, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = att @ v                               # (B, NH, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.c_fc = Linear(C, 4 * C)
        self.c_proj = Linear(4 * C, C)

    def forward(self, x):
        return self.c_proj(gelu_tanh(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.ln_1 = LayerNorm(C)
        self.attn = Attention(C, NH)
        self.ln_2 = LayerNorm(C)
        self.mlp = MLP(C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT2(nn.Module):
    def __init__(self, V, maxT, L, NH, C):
        super().__init__()
        self.V, self.Vp, self.maxT, self.L, self.NH, self.C = V, padded_vocab(V), maxT, L, NH, C
        self.wte = nn.Parameter(torch.zeros(self.Vp, C))
        self.wpe = nn.Parameter(torch.zeros(maxT, C))
        self.h = nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.ln_f = LayerNorm(C)

    def forward(self, tokens, targets=None):
        B, T = tokens.shape
        x = self.wte[tokens] + self.wpe[:T]
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.t()      # (B, T, Vp), tied head
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits[..., : self.V].reshape(-1, self.V), targets.reshape(-1))
        return logits, loss

    def layout(self):
        """(name, parameter) in the flat layer-major order of docs/model.md."""
        out = [("wte", self.wte), ("wpe", self.wpe)]
        for l, b in enumerate(self.h):
            p = "h.%d." % l
            out += [
                (p + "ln_1.weight", b.ln_1.weight), (p + "ln_1.bias", b.ln_1.bias),
                (p + "attn.c_attn.weight", b.attn.c_attn.weight), (p + "attn.c_attn.bias", b.attn.c_attn.bias),
                (p + "attn.c_proj.weight", b.attn.c_proj.weight), (p + "attn.c_proj.bias", b.attn.c_proj.bias),
                (p + "ln_2.weight", b.ln_2.weight), (p + "ln_2.bias", b.ln_2.bias),
                (p + "mlp.c_fc.weight", b.mlp.c_fc.weight), (p + "mlp.c_fc.bias", b.mlp.c_fc.bias),
                (p + "mlp.c_proj.weight", b.mlp.c_proj.weight), (p + "mlp.c_proj.bias", b.mlp.c_proj.bias),
            ]
        out += [("ln_f.weight", self.ln_f.weight), ("ln_f.bias", self.ln_f.bias)]
        return out

    def flat(self, grads=False):
        parts = []
        for _, p in self.layout():
            t = p.grad if grads else p
            parts.append(t.detach().reshape(-1).to(torch.float64).cpu().numpy())
        return np.concatenate(parts)


def init_fixture_params(model, seed=1234):
    """All parameters ~ N(0, 0.1) (LayerNorm weights 1 + N(0, 0.1)), drawn as float32,
    in layout order; padded wte rows exactly zero."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.layout():
            r = torch.randn(p.shape, dtype=torch.float32) * 0.1
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
                r = r + 1.0
            if name == "wte":
                r[model.V:] = 0.0
            p.copy_(r)


def make_optimizer(model, lr, betas, eps, wd):
    decay = [p for _, p in model.layout() if p.dim() == 2]
    no_decay = [p for _, p in model.layout() if p.dim() != 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=betas, eps=eps)


def main(path):
    torch.set_num_threads(2)
    V, maxT, L, NH, C = 100, 16, 2, 4, 32
    B, T, nsteps = 2, 16, 5
    lr, beta1, beta2, eps, wd, clip = 1e-2, 0.9, 0.95, 1e-8, 0.1, 1.0
    Vp = padded_vocab(V)

    model = GPT2(V, maxT, L, NH, C)
    init_fixture_params(model)             # float32 values
    model = model.double()                 # exact widening; compute in float64
    params0 = model.flat()
    nparams = params0.size

    g = torch.Generator().manual_seed(4321)
    tokens = torch.randint(0, V, (B, T), generator=g, dtype=torch.int64)
    targets = torch.randint(0, V, (B, T), generator=g, dtype=torch.int64)

    # initial forward/backward
    model.zero_grad(set_to_none=True)
    logits, loss = model(tokens, targets)
    loss.backward()
    logits0 = logits.detach().numpy().copy()
    loss0 = loss.item()
    grads0 = model.flat(grads=True)

    # nsteps AdamW steps
    params = [p for _, p in model.layout()]
    opt = make_optimizer(model, lr, (beta1, beta2), eps, wd)
    losses, norms = [], []
    for _ in range(nsteps):
        opt.zero_grad(set_to_none=True)
        _, loss = model(tokens, targets)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=clip)
        opt.step()
        losses.append(loss.item())
        norms.append(float(norm))
    params_final = model.flat()

    f32 = lambda a: np.asarray(a, dtype="<f4")
    i32 = lambda a: np.asarray(a, dtype="<i4")
    with open(path, "wb") as f:
        f.write(b"LMSFIX01")
        f.write(struct.pack("<9i", V, Vp, maxT, L, NH, C, B, T, nsteps))
        f.write(struct.pack("<6f", lr, beta1, beta2, eps, wd, clip))
        f.write(struct.pack("<i", nparams))
        f.write(f32(params0).tobytes())
        f.write(i32(tokens.numpy()).tobytes())
        f.write(i32(targets.numpy()).tobytes())
        f.write(f32(logits0).tobytes())
        f.write(struct.pack("<f", loss0))
        f.write(f32(grads0).tobytes())
        f.write(f32(losses).tobytes())
        f.write(f32(norms).tobytes())
        f.write(f32(params_final).tobytes())

    print("wrote %s: nparams=%d loss=%.6f" % (path, nparams, loss0))
    print("losses: " + " ".join("%.6f" % x for x in losses))
    print("grad norms: " + " ".join("%.6f" % x for x in norms))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: %s OUT.bin" % sys.argv[0])
    main(sys.argv[1])
