#!/usr/bin/python3
"""PyTorch peer for the lmscale training benchmark.

Trains the GPT-2 architecture of docs/model.md (float32, tied head, vocabulary padded to a
multiple of 64, loss over the first V logits, GELU tanh, no dropout) on random tokens with
AdamW (lr 3e-4, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on 2-D weights only) and global
grad-norm clipping at 1.0, timing each step after the warm-up steps.

    /usr/bin/python3 bench/pytorch_train.py --model small --batch 4 --seq 64 --steps 10 --warmup 2 --threads 2

--autocast bf16 runs forward and loss under torch.autocast("cpu", dtype=torch.bfloat16) (the
parameters and AdamW stay float32), as PyTorch's CPU mixed precision does.

Prints one final line:
    pytorch model=<name> B=<B> T=<T> steps=<N> autocast=<none|bf16> peak_rss_mb=<M> tokens_per_s=<median> step_ms=<median>
"""

import argparse
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    "gpt2-124m": dict(layers=12, heads=12, embd=768, maxT=1024, vocab=50257),
    "small": dict(layers=4, heads=4, embd=256, maxT=256, vocab=50257),
}


def padded_vocab(V):
    return ((V + 63) // 64) * 64


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.c_attn = nn.Linear(C, 3 * C)
        self.attn_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def attention(self, x):
        B, T, C = x.shape
        NH, hs = self.NH, C // self.NH
        q, k, v = self.c_attn(x).split(C, dim=-1)
        q = q.view(B, T, NH, hs).transpose(1, 2)
        k = k.view(B, T, NH, hs).transpose(1, 2)
        v = v.view(B, T, NH, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = torch.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.attn_proj(y)

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        x = x + self.mlp_proj(gelu_tanh(self.c_fc(self.ln_2(x))))
        return x


class GPT2(nn.Module):
    def __init__(self, V, maxT, L, NH, C):
        super().__init__()
        self.V, self.Vp = V, padded_vocab(V)
        self.wte = nn.Parameter(torch.empty(self.Vp, C))
        self.wpe = nn.Parameter(torch.empty(maxT, C))
        self.h = nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C, eps=1e-5)
        # standard GPT-2 init (values do not matter for speed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    std = 0.02 / math.sqrt(2 * L) if name.endswith("proj.weight") else 0.02
                    p.normal_(0.0, std)
                elif "ln" in name and name.endswith("weight"):
                    p.fill_(1.0)
                else:
                    p.zero_()
            self.wte[V:] = 0.0

    def forward(self, tokens, targets):
        T = tokens.shape[1]
        x = self.wte[tokens] + self.wpe[:T]
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.t()
        return F.cross_entropy(logits[..., : self.V].reshape(-1, self.V), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small", choices=sorted(CONFIGS))
    ap.add_argument("--layers", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--embd", type=int)
    ap.add_argument("--vocab", type=int)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--autocast", default="none", choices=["none", "bf16"])
    a = ap.parse_args()

    cfg = dict(CONFIGS[a.model])
    for key in ("layers", "heads", "embd", "vocab"):
        if getattr(a, key) is not None:
            cfg[key] = getattr(a, key)
    if cfg["embd"] % cfg["heads"]:
        ap.error("embd must be divisible by heads")
    if a.seq > cfg["maxT"]:
        ap.error("seq %d exceeds maxT %d" % (a.seq, cfg["maxT"]))
    if a.steps < 1 or a.warmup < 0:
        ap.error("need steps >= 1 and warmup >= 0")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = GPT2(cfg["vocab"], cfg["maxT"], cfg["layers"], cfg["heads"], cfg["embd"])
    params = list(model.parameters())
    decay = [p for p in params if p.dim() == 2]
    no_decay = [p for p in params if p.dim() != 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=3e-4, betas=(0.9, 0.95), eps=1e-8)

    B, T, V = a.batch, a.seq, cfg["vocab"]
    g = torch.Generator().manual_seed(a.seed)
    times = []
    for step in range(a.warmup + a.steps):
        tokens = torch.randint(0, V, (B, T), generator=g)
        targets = torch.randint(0, V, (B, T), generator=g)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if a.autocast == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(tokens, targets)
        else:
            loss = model(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
        opt.step()
        loss_value = loss.item()
        dt = time.perf_counter() - t0
        if step >= a.warmup:
            times.append(dt)
        print("step %d loss %.4f %.1f ms%s" % (step, loss_value, dt * 1e3,
                                              " (warmup)" if step < a.warmup else ""), flush=True)

    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("pytorch model=%s B=%d T=%d steps=%d autocast=%s peak_rss_mb=%.0f tokens_per_s=%.1f step_ms=%.2f"
          % (a.model, B, T, a.steps, a.autocast, rss, B * T / med, med * 1e3))


if __name__ == "__main__":
    main()
