"""Write the PyTorch checkpoint fixtures under tests/fixtures/torch/.

Usage (from the repository root):

    python tools/make_torch_fixtures.py            # writes tests/fixtures/torch/
    python tools/make_torch_fixtures.py --out DIR  # somewhere else
    python tools/make_torch_fixtures.py --hostile-only   # no torch needed

Real checkpoints, written by torch.save from tests/fixtures/tiny/model.safetensors
(needs torch and safetensors; each gets a copy of tests/fixtures/tiny/config.yml
beside it as <name>.yml):

    tiny_zip.pth      an OrderedDict state dict, zip format (torch >= 1.6).
                      Tensors of rank >= 2 as float16 (lossless: make_fixtures.py
                      rounds every fixture weight to a float16 value), the rest
                      float32, and temb.dense.0.weight as a transposed view, so
                      its strides are not row-major.
    tiny_legacy.pth   the same state dict, _use_new_zipfile_serialization=False
                      (the legacy stream of torch <= 1.5); one bias is a view at
                      an offset into a larger storage.
    tiny_train.ckpt   ddim's training checkpoint, a list [model state dict,
                      Adam state dict, epoch, step, EMA shadow]. The EMA is the
                      fixture's weights (a plain dict, as ddim's EMAHelper keeps
                      it). The model state dict has DataParallel's "module."
                      prefix and the "downsample.op" spelling; conv_in.weight,
                      conv_out.weight and conv_out.bias differ from the EMA. Its
                      other tensors are the EMA's own tensor objects, so torch
                      stores them once: the file stays the size of one model.
                      The optimizer is a real Adam after one step, over the
                      parameters that differ (a small but real state dict).

Hostile files, written with the Python standard library only (each the kind of
file a reader must refuse without running, recursing or allocating):

    evil_zip.pth      a zip archive whose data.pkl calls posix.system
    evil_legacy.pth   a legacy stream whose object pickle calls os.system
    deep.pth          a zip archive whose data.pkl nests 100,000 marks deep
    huge_storage.pth  a zip archive whose storage claims 10**12 float32
                      elements while its member holds 16 bytes
    truncated.pth     the first half of a small, valid torch-style zip archive

For a given torch version every file comes out the same byte for byte, except
tiny_legacy.pth: the legacy format names storages by memory address, so those
keys (not the tensors) change from run to run.
"""

from __future__ import annotations

import argparse
import io
import pickle
import shutil
import struct
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "tiny"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# --------------------------------------------------------------------------
# real checkpoints (torch)
# --------------------------------------------------------------------------

def real(out: Path) -> None:
    import torch
    from collections import OrderedDict
    from safetensors.torch import load_file

    ema = load_file(str(TINY / "model.safetensors"))
    for name, t in ema.items():
        assert torch.equal(t.half().float(), t), f"{name} is not float16-exact"

    def mixed(sd):
        out = OrderedDict()
        for name, t in sd.items():
            out[name] = t.half() if t.dim() >= 2 else t.clone()
        return out

    sd = mixed(ema)
    w = sd["temb.dense.0.weight"]
    sd["temb.dense.0.weight"] = w.t().contiguous().t()
    assert not sd["temb.dense.0.weight"].is_contiguous()
    torch.save(sd, out / "tiny_zip.pth")

    legacy = mixed(ema)
    b = legacy["conv_out.bias"]
    legacy["conv_out.bias"] = torch.cat([torch.full((5,), 7.0), b])[5:]
    assert legacy["conv_out.bias"].storage_offset() == 5
    torch.save(legacy, out / "tiny_legacy.pth", _use_new_zipfile_serialization=False)

    # The training checkpoint. The EMA is a plain dict, unprefixed, float16.
    shadow = {name: t.half() for name, t in ema.items()}
    g = torch.Generator().manual_seed(16)
    differ = ["conv_in.weight", "conv_out.weight", "conv_out.bias"]
    params = {}
    for name in differ:
        t = ema[name]
        params[name] = torch.nn.Parameter(t + 0.25 * torch.randn(t.shape, generator=g))
    opt = torch.optim.Adam(params.values(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8)
    loss = sum((p * p).sum() for p in params.values())
    loss.backward()
    opt.step()
    model_sd = OrderedDict()
    for name in ema:
        t = params[name].detach() if name in params else shadow[name]
        name = name.replace("down.0.downsample.conv.", "down.0.downsample.op.")
        model_sd["module." + name] = t
    assert any(".downsample.op." in k for k in model_sd)
    states = [model_sd, opt.state_dict(), 3, 1234, shadow]
    torch.save(states, out / "tiny_train.ckpt")

    for name in ("tiny_zip", "tiny_legacy", "tiny_train"):
        shutil.copyfile(TINY / "config.yml", out / f"{name}.yml")


# --------------------------------------------------------------------------
# hostile files (standard library only)
# --------------------------------------------------------------------------

def uni(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def call_system(module: str) -> bytes:
    """A pickle that would run a shell command if a reader called what it names."""
    return b"\x80\x02" + glob(module, "system") + uni("echo this checkpoint ran code") + b"\x85R."


def torch_zip(prefix: str, pkl: bytes, storages: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    members = [("data.pkl", pkl), ("byteorder", b"little")]
    members += [(f"data/{key}", data) for key, data in storages.items()]
    members += [("version", b"3\n")]
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            # A fixed date, so the bytes do not depend on when the script ran.
            z.writestr(zipfile.ZipInfo(f"{prefix}/{name}", date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def state_dict_pickle(name: str, numel: int, size: int) -> bytes:
    """{name: _rebuild_tensor_v2(storage '0' of `numel` floats, 0, (size,), (1,), False, {})}."""
    pid = b"(" + uni("storage") + glob("torch", "FloatStorage") + uni("0") + uni("cpu")
    pid += pickle.dumps(numel, protocol=2)[2:-1] + b"t"
    tensor = glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + b"Q"
    tensor += b"K\x00" + pickle.dumps((size,), protocol=2)[2:-1] + b"K\x01\x85"
    tensor += b"\x89" + glob("collections", "OrderedDict") + b")Rt" + b"R"
    return b"\x80\x02" + glob("collections", "OrderedDict") + b")R(" + uni(name) + tensor + b"u."


def hostile(out: Path) -> None:
    (out / "evil_zip.pth").write_bytes(torch_zip("evil_zip", call_system("posix"), {}))

    legacy = b"".join(
        pickle.dumps(x, protocol=2)
        for x in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True})
    )
    legacy += call_system("os") + pickle.dumps([], protocol=2)
    (out / "evil_legacy.pth").write_bytes(legacy)

    deep = b"\x80\x02" + b"(" * 100_000 + b"t" * 100_000 + b"."
    (out / "deep.pth").write_bytes(torch_zip("deep", deep, {}))

    huge = state_dict_pickle("conv_in.weight", 10**12, 10**12)
    (out / "huge_storage.pth").write_bytes(torch_zip("huge_storage", huge, {"0": bytes(16)}))

    small = torch_zip("small", state_dict_pickle("w", 4, 4), {"0": struct.pack("<4f", 1, 2, 3, 4)})
    (out / "truncated.pth").write_bytes(small[: len(small) // 2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "torch")
    ap.add_argument("--hostile-only", action="store_true", help="only the standard-library files")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.hostile_only:
        real(args.out)
    hostile(args.out)
    for p in sorted(args.out.iterdir()):
        print(f"{p.stat().st_size:>9}  {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}")


if __name__ == "__main__":
    sys.exit(main())
