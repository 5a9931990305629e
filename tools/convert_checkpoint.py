"""Convert an official DDIM/DDPM PyTorch checkpoint to safetensors.

The Rust route needs no Python: every ``ddim`` command reads .pth/.ckpt files
directly (``--ckpt-entry N`` picks an item of a training checkpoint), and
``ddim convert IN OUT.safetensors [--config CFG] [--half]`` does what this
script does, with the same rules for finding and naming the weights (see
src/torch/). This script remains for environments that have torch anyway.

Usage:

    python tools/convert_checkpoint.py INPUT OUTPUT.safetensors [options]

    INPUT   a .pth / .ckpt file written by torch.save (or a .safetensors file)

Options:

    --half          store float16 instead of float32
    --no-ema        from a training checkpoint, take the raw model weights
                    (states[0]) instead of the EMA shadow (states[-1])
    --config YAML   check the result against an official-layout config: every
                    key and shape must match the network it describes
    --unsafe-pickle allow full pickle loading (only for files you trust) when the
                    restricted weights-only loader refuses the file

Accepted inputs:

  * a plain state_dict (the pretrained ``model-790000.ckpt`` style files);
  * a dict holding the weights under ``state_dict`` or ``model``;
  * the official training checkpoint ``ckpt.pth``, a list
    ``[model_sd, optimizer_sd, epoch, step, ema_shadow]``. The EMA shadow is the
    one to sample with (the raw weights give far worse FID), so it is the
    default.

Names are normalised to the official ones used by tools/ddim_model.py and the
Rust loader: a leading ``module.`` (DataParallel) is stripped, and
``down.N.downsample.op.*`` (the spelling one conversion script expects) becomes
``down.N.downsample.conv.*``.

Examples:

    python tools/convert_checkpoint.py model-790000.ckpt cifar10.safetensors \\
        --config tools/configs/cifar10.yml
    python tools/convert_checkpoint.py ckpt.pth celeba.safetensors --half

Exit status: 0 on success, 2 for unreadable or unrecognised input, 1 when
--config validation fails.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import torch

EXIT_BAD_INPUT = 2
EXIT_MISMATCH = 1

_DOWNSAMPLE_OP = re.compile(r"^(down\.\d+\.downsample)\.op\.")


class InputError(Exception):
    """The input file cannot be read or is not a recognised checkpoint."""


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) for k in obj) and any(torch.is_tensor(v) for v in obj.values())


def load_any(path: Path, unsafe_pickle: bool = False) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises several error types
            raise InputError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        # The weights-only loader refuses arbitrary pickled objects, which is
        # what makes converting a downloaded checkpoint safe. Official files
        # hold only tensors, dicts, lists and numbers, so it suffices.
        return torch.load(str(path), map_location="cpu", weights_only=not unsafe_pickle)
    except Exception as e:
        hint = "" if unsafe_pickle else " (if you trust the file, retry with --unsafe-pickle)"
        # torch's own message runs to a paragraph; its first line says enough.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: cannot be read as a torch checkpoint: {first}{hint}") from e


def select_state_dict(obj: Any, use_ema: bool = True) -> tuple[Mapping[str, Any], str]:
    """Find the weights inside whatever torch.save wrote; also say where."""
    if isinstance(obj, (list, tuple)):
        # Training checkpoint: [model_sd, optimizer_sd, epoch, step, (ema_shadow)].
        if not obj:
            raise InputError("checkpoint is an empty list")
        has_ema = len(obj) >= 5 and _is_state_dict(obj[-1])
        if use_ema and has_ema:
            return obj[-1], "states[-1] (EMA shadow)"
        if use_ema and not has_ema:
            print("warning: training checkpoint has no EMA shadow; using states[0]", file=sys.stderr)
        if not _is_state_dict(obj[0]):
            raise InputError("list checkpoint whose first element is not a state_dict")
        return obj[0], "states[0] (raw model weights)"
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "ema", "model_state_dict"):
            if key in obj and _is_state_dict(obj[key]):
                return obj[key], f"['{key}']"
        if _is_state_dict(obj):
            return obj, "top-level state_dict"
    raise InputError(f"no state_dict found in a checkpoint of type {type(obj).__name__}")


def normalise_names(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    skipped = []
    for key, value in sd.items():
        if not torch.is_tensor(value):
            skipped.append(key)
            continue
        name = key[len("module."):] if key.startswith("module.") else key
        name = _DOWNSAMPLE_OP.sub(r"\1.conv.", name)
        if name in out:
            raise InputError(f"two entries map to the same name {name!r}")
        out[name] = value
    if skipped:
        print(f"warning: ignored {len(skipped)} non-tensor entries (e.g. {skipped[0]!r})", file=sys.stderr)
    return out


def cast(sd: dict[str, torch.Tensor], half: bool) -> dict[str, torch.Tensor]:
    dtype = torch.float16 if half else torch.float32
    out = {}
    for name, t in sd.items():
        if t.is_floating_point():
            if half:
                big = t.float().abs().max().item() if t.numel() else 0.0
                if big > torch.finfo(torch.float16).max:
                    raise InputError(f"{name}: value {big:g} does not fit float16")
            t = t.to(dtype)
        out[name] = t.detach().cpu().contiguous()
    return out


def check_against_config(sd: Mapping[str, torch.Tensor], config_path: Path) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ddim_model import DDIMUNet, load_config

    expected = {k: tuple(v.shape) for k, v in DDIMUNet(load_config(str(config_path))).state_dict().items()}
    problems = [f"missing: {k}" for k in sorted(set(expected) - set(sd))]
    problems += [f"unexpected: {k}" for k in sorted(set(sd) - set(expected))]
    problems += [
        f"shape {k}: file {tuple(sd[k].shape)} vs config {expected[k]}"
        for k in sorted(set(sd) & set(expected)) if tuple(sd[k].shape) != expected[k]
    ]
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Convert an official DDIM/DDPM checkpoint to safetensors (official key names).",
        epilog="See the module docstring for accepted layouts.")
    ap.add_argument("input", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("--half", action="store_true", help="write float16 (default float32)")
    ap.add_argument("--no-ema", action="store_true", help="training checkpoints: use states[0], not the EMA")
    ap.add_argument("--config", type=Path, help="official YAML to validate names and shapes against")
    ap.add_argument("--unsafe-pickle", action="store_true", help="allow full unpickling of trusted files")
    args = ap.parse_args(argv)

    try:
        obj = load_any(args.input, args.unsafe_pickle)
        raw, where = select_state_dict(obj, use_ema=not args.no_ema)
        sd = cast(normalise_names(raw), args.half)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT

    if args.config is not None:
        try:
            problems = check_against_config(sd, args.config)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"error: cannot use config {args.config}: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if problems:
            print(f"error: weights do not match {args.config}:", file=sys.stderr)
            for p in problems[:20]:
                print(f"  {p}", file=sys.stderr)
            if len(problems) > 20:
                print(f"  ... and {len(problems) - 20} more", file=sys.stderr)
            return EXIT_MISMATCH

    from safetensors.torch import save_file

    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(args.output), metadata={"format": "pt"})
    n_params = sum(t.numel() for t in sd.values())
    dtype = "float16" if args.half else "float32"
    print(f"{args.input} [{where}] -> {args.output}: {len(sd)} tensors, {n_params} parameters ({dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
