#!/usr/bin/env python3
"""Write the seed corpora in fuzz/corpus/<target>/: small real files, a few KiB each.

    python3 fuzz/make_seeds.py

Needs numpy and safetensors; torch for the torch seeds (skipped without it; its legacy
format is not byte-reproducible). The configs and .npy noise come from tests/fixtures and
models/ as they are; the rest is made here. Files named regress-* are kept.
"""

import json
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from safetensors.numpy import save

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "corpus"


def put(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def raw_safetensors(entries, data, metadata=None):
    """A file with a hand-written header: for dtypes numpy cannot hold (BF16)."""
    h = dict(entries)
    if metadata:
        h["__metadata__"] = metadata
    b = json.dumps(h, separators=(",", ":")).encode()
    b += b" " * (-len(b) % 8)
    return struct.pack("<Q", len(b)) + b + data


def safetensors_seeds():
    r = np.random.default_rng(0)
    a = r.standard_normal((2, 3)).astype(np.float32)
    put("safetensors", "f32.safetensors",
        save({"w": a, "b": np.arange(3, dtype=np.float32)}, metadata={"config": "model: {}\n"}))
    put("safetensors", "f16.safetensors", save({"w": a.astype(np.float16)}))
    put("safetensors", "f64.safetensors", save({"x": a.astype(np.float64)}))
    put("safetensors", "mixed.safetensors",
        save({"w": a, "i": np.arange(4, dtype=np.int32), "e": np.zeros((0, 3), np.float32)}))
    bf16 = (a.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    put("safetensors", "bf16.safetensors",
        raw_safetensors({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]}}, bf16,
                        {"k": "v"}))
    put("safetensors", "empty.safetensors", save({}, metadata={"a": "b"}))


def model_seeds():
    """The tiny fixture's tensor table with every tensor of more than 64 values cut to no
    rows, so a seed is a few KiB yet carries every name, dtype and most shapes."""
    for src, name in [("tests/fixtures/tiny/model.safetensors", "official"),
                      ("tests/fixtures/tiny/diffusers/diffusion_pytorch_model.safetensors",
                       "diffusers")]:
        b = (ROOT / src).read_bytes()
        n = struct.unpack("<Q", b[:8])[0]
        header = json.loads(b[8:8 + n])
        header.pop("__metadata__", None)
        data = b[8 + n:]
        entries, out = {}, bytearray()
        for key, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
            s, e = t["data_offsets"]
            shape = t["shape"]
            vals = np.frombuffer(data[s:e], dtype=np.float32).astype(np.float16)
            if vals.size > 64:
                shape, vals = [0] + shape[1:], vals[:0]
            entries[key] = {"dtype": "F16", "shape": shape,
                            "data_offsets": [len(out), len(out) + vals.nbytes]}
            out += vals.tobytes()
            if name == "official" and key.startswith("conv_in"):
                entries["module." + key] = dict(entries[key], data_offsets=[len(out)] * 2,
                                                shape=[0])
        put("model", name + ".safetensors", raw_safetensors(entries, bytes(out)))


def config_fields_seeds():
    """Bytes the target reads as choices: all-low picks small values, all-high the edges."""
    for name, b in [("low", bytes(64)), ("high", b"\xff" * 64), ("ramp", bytes(range(128)))]:
        put("config_fields", name, b)


def npy_seeds():
    shutil.copy(ROOT / "tests/fixtures/tiny_odd/xT.npy", OUT / "npy/tiny_odd_xT.npy")
    shutil.copy(ROOT / "tests/fixtures/tiny/xT.npy", OUT / "npy/tiny_xT.npy")
    import io
    for name, arr, version in [("f64_1d.npy", np.linspace(-1, 1, 5), (1, 0)),
                               ("f32_v2.npy", np.ones((1, 1, 2, 2), np.float32), (2, 0)),
                               ("scalar.npy", np.float32(3.5).reshape(()), (1, 0))]:
        f = io.BytesIO()
        np.lib.format.write_array(f, np.asarray(arr), version=version)
        put("npy", name, f.getvalue())


def config_seeds():
    for src in ["tests/fixtures/tiny/config.yml", "tests/fixtures/tiny_odd/config.yml",
                "tests/fixtures/export/model.yml", "models/emoji32.yml",
                "tools/configs/cifar10.yml"]:
        p = ROOT / src
        put("config", p.parent.name + "_" + p.name, p.read_bytes())
    d = ROOT / "tests/fixtures/tiny/diffusers"
    cfg, sched = (d / "config.json").read_bytes(), (d / "scheduler_config.json").read_bytes()
    put("config", "diffusers_config.json", cfg)
    put("config", "diffusers_with_scheduler.json", cfg + b"\0" + sched)


def png(width, height, color, depth, rows, extra=b"", interlace=0):
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace)
    raw = b"".join(b"\0" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_seeds():
    w = h = 8
    grad = [bytes((x * 32 + y * 4) % 256 for x in range(w)) for y in range(h)]
    put("png", "gray8.png", png(w, h, 0, 8, grad))
    put("png", "gray16.png", png(w, h, 0, 16, [bytes(b for v in r for b in (v, v)) for r in grad]))
    put("png", "gray_alpha.png", png(w, h, 4, 8, [bytes(b for v in r for b in (v, 255)) for r in grad]))
    put("png", "rgb.png", png(w, h, 2, 8, [bytes(b for v in r for b in (v, 255 - v, 128)) for r in grad]))
    put("png", "rgba16.png",
        png(w, h, 6, 16, [bytes(b for v in r for b in (v, v, 255 - v, 0, 0, 9, 255, 255))
                          for r in grad]))
    put("png", "gray1.png", png(w, h, 0, 1, [b"\xaa" if y % 2 else b"\x55" for y in range(h)]))
    plte = b"".join(bytes((i * 60, 255 - i * 60, 7)) for i in range(4))
    extra = (struct.pack(">I", len(plte)) + b"PLTE" + plte
             + struct.pack(">I", zlib.crc32(b"PLTE" + plte) & 0xFFFFFFFF))
    put("png", "palette2.png", png(w, h, 3, 2, [bytes([0b00011011, 0b11100100]) for _ in range(h)],
                                   extra))
    # Adam7: rows of each pass, laid out as the decoder expects for an 8×8 8-bit gray image.
    passes = [(1, 1), (1, 1), (2, 1), (2, 2), (4, 2), (4, 4), (8, 4)]
    rows = [bytes(range(pw)) for pw, ph in passes for _ in range(ph)]
    put("png", "interlaced.png", png(w, h, 0, 8, rows, interlace=1))


def torch_seeds():
    try:
        import torch
    except ImportError:
        print("no torch: torch seeds skipped", file=sys.stderr)
        return
    import io
    sd = {"conv_in.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
          "conv_in.bias": torch.ones(2, dtype=torch.float16)}
    for name, obj, zipped in [("state_dict.pt", sd, True),
                              ("legacy.pt", sd, False),
                              ("wrapped.pt", {"state_dict": sd, "step": 3}, True),
                              ("training_list.pt", [sd, {}, 1, 2, sd], True)]:
        f = io.BytesIO()
        torch.save(obj, f, _use_new_zipfile_serialization=zipped)
        put("torch", name, f.getvalue())


if __name__ == "__main__":
    for t in ["safetensors", "model", "npy", "config", "config_fields", "png", "torch"]:
        (OUT / t).mkdir(parents=True, exist_ok=True)
        # regress-* are inputs that once failed (fuzz/README.md); they stay.
        for p in (OUT / t).iterdir():
            if not p.name.startswith("regress-"):
                p.unlink()
    safetensors_seeds()
    model_seeds()
    npy_seeds()
    config_seeds()
    config_fields_seeds()
    png_seeds()
    torch_seeds()
    for d in sorted(OUT.iterdir()):
        sizes = [p.stat().st_size for p in d.iterdir()]
        print(f"{d.name:12} {len(sizes)} files, largest {max(sizes, default=0)} bytes")
