"""An independent reader of lmscale's TensorBoard event files.

The records are read by the TFRecord framing (uint64 length, masked CRC-32C
of the length, data, masked CRC-32C of the data), the CRCs recomputed here
from the definition of CRC-32C (reflected polynomial 0x82F63B78) and
TensorFlow's mask, and each record parsed as an `Event` protobuf by Debian's
python3-protobuf from tensorboard_subset.proto (TensorFlow's field numbers),
compiled here with protoc.

    check_tensorboard.py DIR --unit            the events test_obs writes
    check_tensorboard.py DIR --metrics M.jsonl a training run: scalars equal
                                               its --metrics lines
"""
import glob
import importlib
import json
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def load_proto():
    out = tempfile.mkdtemp()
    subprocess.run(["protoc", "--proto_path=" + HERE, "--python_out=" + out, "tensorboard_subset.proto"],
                   check=True)
    sys.path.insert(0, out)
    return importlib.import_module("tensorboard_subset_pb2")


def read_events(path, pb):
    data = open(path, "rb").read()
    events, off = [], 0
    while off < len(data):
        if off + 12 > len(data):
            sys.exit("%s: a truncated record header at byte %d" % (path, off))
        head = data[off:off + 8]
        (n,) = struct.unpack("<Q", head)
        (c,) = struct.unpack("<I", data[off + 8:off + 12])
        if c != masked(crc32c(head)):
            sys.exit("%s: bad length CRC at byte %d" % (path, off))
        body = data[off + 12:off + 12 + n]
        (d,) = struct.unpack("<I", data[off + 12 + n:off + 16 + n])
        if len(body) != n or d != masked(crc32c(body)):
            sys.exit("%s: bad data CRC at byte %d" % (path, off))
        ev = pb.Event()
        ev.ParseFromString(body)
        events.append(ev)
        off += 16 + n
    return events


def scalars(events):
    out = {}
    for ev in events:
        if ev.WhichOneof("what") == "summary":
            for v in ev.summary.value:
                out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def main():
    d, mode = sys.argv[1], sys.argv[2]
    files = glob.glob(os.path.join(d, "events.out.tfevents.*"))
    if len(files) != 1:
        sys.exit("expected one events.out.tfevents.* file in %s, found %r" % (d, files))
    pb = load_proto()
    events = read_events(files[0], pb)
    if not events or events[0].file_version != "brain.Event:2":
        sys.exit("the first event is not file_version brain.Event:2: %r" % (events[:1],))
    if not all(e.wall_time > 1.5e9 for e in events):
        sys.exit("an event without a plausible wall_time (seconds since 1970)")
    s = scalars(events)
    bad = []
    if mode == "--unit":
        want = {"train/loss": [(k, f32(10.0 / k)) for k in range(1, 6)],
                "train/lr": [(k, f32(f32(0.001) * k)) for k in range(1, 6)], "time/forward ms": [(5, 1.5)]}
        for tag, pts in want.items():
            got = s.get(tag)
            if got is None or [(a, f32(b)) for a, b in got] != pts:
                bad.append("%s: got %r, want %r" % (tag, got, pts))
    else:
        rows = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
        # (tag, metrics key, tolerance): the metrics print loss, val_loss and
        # grad_norm with 17 digits and lr with 9 (exact as float32); the rest
        # rounded to the decimals given (half a unit of the last one)
        pairs = [("train/loss", "loss", 0), ("train/lr", "lr", 0), ("train/grad_norm", "grad_norm", 0),
                 ("val/loss", "val_loss", 0), ("perf/tokens_per_s", "tokens_per_s", 0.005),
                 ("perf/mfu", "mfu", 5e-7), ("time/data_ms", "data_ms", 5e-5), ("time/forward_ms", "forward_ms", 5e-5),
                 ("time/backward_ms", "backward_ms", 5e-5), ("time/grad_comm_ms", "grad_comm_ms", 5e-5),
                 ("time/optim_ms", "optim_ms", 5e-5), ("time/step_ms", "step_ms", 5e-4),
                 ("memory/peak_rss_mb", "peak_rss_mb", 0.5)]
        for tag, key, tol in pairs:
            want = [(r["step"], r[key]) for r in rows if key in r]
            got = s.get(tag, [])
            if not want or len(got) != len(want):
                bad.append("%s: %d values, the metrics have %d" % (tag, len(got), len(want)))
                continue
            for (gs, gv), (ws, wv) in zip(got, want):
                ok = gv == f32(wv) if tol == 0 else abs(gv - wv) <= tol + 1e-6 * abs(wv)
                if gs != ws or not ok:
                    bad.append("%s at step %d: %r, the metrics say %r at step %d" % (tag, gs, gv, wv, ws))
                    break
    nvals = sum(len(v) for v in s.values())
    print("  %s: %d records, CRCs good, %d tags, %d scalar values" % (os.path.basename(files[0]), len(events),
                                                                     len(s), nvals))
    if bad:
        print("\n".join("  " + b for b in bad))
        sys.exit(1)


main()
