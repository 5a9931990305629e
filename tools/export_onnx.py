#!/usr/bin/env python3
"""Export the DDIM noise-prediction network to ONNX, and check it with onnxruntime.

Usage
  python3 tools/export_onnx.py --model models/emoji32.safetensors --out /tmp/emoji32.onnx
  python3 tools/export_onnx.py --model cifar10.safetensors --config tools/configs/cifar10.yml --out c.onnx
  python3 tools/export_onnx.py --config tools/configs/cifar10.yml --random-weights --out /tmp/c10.onnx

  --model M          weights with the official names: .safetensors, or an official .pth/.ckpt
                     (read as tools/convert_checkpoint.py reads them, EMA shadow first)
  --config C         official-layout YAML; `cifar10` names tools/configs/cifar10.yml. Without it
                     a .safetensors file's config is M's sibling .yml, else its "config"
                     metadata (as tools/eps_by_t.py finds it)
  --random-weights   seeded default initialisation instead of --model (needs --config)
  --batch N          batch of the example input (default 1); the batch axis is dynamic anyway
  --opset K          ONNX opset (default 17)
  --seed S           seed of the random weights and of the check's input (default 0)

The graph has inputs x [N,C,H,W] float32 and t [N] float32 (the raw diffusion step, one per
image) and one output eps [N,C,H,W]. It is written by the TorchScript exporter (dynamo=False),
whose output needs no onnxscript at run time.

After writing it, the file is run by onnxruntime (CPUExecutionProvider) beside the PyTorch
model (tools/ddim_model.py) on one seeded input at t = 17 and t = 999, at batch N and N + 1,
the second to exercise the dynamic axis. Exit 1 unless max|d| <= 1e-4 * max|ref| everywhere;
the measured error is printed either way. Exit 2 for unreadable inputs (missing file, bad
config, weights that do not fit the config), with the file named.
"""

from __future__ import annotations

import os

# torch's OpenMP threads must not spin on this shared machine; set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from convert_checkpoint import (  # noqa: E402
    InputError,
    check_against_config,
    load_any,
    normalise_names,
    select_state_dict,
)
from ddim_model import DDIMUNet, load_config, model_fields  # noqa: E402

NAMED_CONFIGS = {"cifar10": HERE / "configs" / "cifar10.yml"}
TOLERANCE = 1e-4
CHECK_TIMESTEPS = (17, 999)


def config_path(name: str) -> Path:
    return NAMED_CONFIGS.get(name, Path(name))


def read_config(path: Path) -> dict:
    """load_config, with every failure turned into an InputError that names the file."""
    import yaml

    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    try:
        cfg = load_config(str(path))
        model_fields(cfg)  # the fields the network needs are all there and well typed
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        raise InputError(f"{path}: bad config: {e}") from e
    return cfg


def load_model(model: str | None, config: str | None, random_weights: bool = False,
               seed: int = 0) -> tuple[DDIMUNet, dict, str]:
    """(network in eval mode, config, a label) from weights and/or a config."""
    if random_weights:
        if config is None:
            raise InputError("--random-weights needs --config")
        cfg = read_config(config_path(config))
        torch.manual_seed(seed)
        return DDIMUNet(cfg).eval(), cfg, f"{config} (random weights, seed {seed})"
    if model is None:
        raise InputError("give --model, or --random-weights with --config")
    path = Path(model)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    if config is None:
        if path.suffix != ".safetensors":
            raise InputError(f"{path}: only a .safetensors file can carry its config; give --config")
        from eps_by_t import load

        try:
            net, cfg, _ = load(str(path), "ema")
        except SystemExit as e:  # load() exits with a message when it finds no config
            raise InputError(str(e.code)) from e
        except Exception as e:
            raise InputError(f"{path}: cannot load with its own config: {e}") from e
        return net, cfg, str(path)
    cpath = config_path(config)
    cfg = read_config(cpath)
    sd = normalise_names(select_state_dict(load_any(path))[0])
    problems = check_against_config(sd, cpath)
    if problems:
        raise InputError(f"{path} does not fit {cpath}: " + "; ".join(problems[:5])
                         + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
    net = DDIMUNet(cfg)
    net.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return net.eval(), cfg, str(path)


def export(net: DDIMUNet, out: str | Path, batch: int = 1, opset: int = 17) -> Path:
    f = net.fields
    x = torch.zeros(batch, f["in_channels"], f["resolution"], f["resolution"])
    t = torch.full((batch,), 500.0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns that int(c) ** -0.5 in the attention becomes a constant: it is one.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # dynamo=False is deliberate (see the docstring), and the pad's reversed Slice is not
        # folded, which costs nothing: neither warning calls for action.
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript", DeprecationWarning)
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        torch.onnx.export(
            net, (x, t), str(out), dynamo=False, opset_version=opset,
            input_names=["x", "t"], output_names=["eps"],
            dynamic_axes={"x": {0: "N"}, "t": {0: "N"}, "eps": {0: "N"}},
        )
    return out


def check(net: DDIMUNet, onnx_path: str | Path, batch: int = 1, seed: int = 0) -> list[dict]:
    """onnxruntime against PyTorch; one row per (batch, t) with the measured error."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    f = net.fields
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in (batch, batch + 1):
        x = torch.randn(n, f["in_channels"], f["resolution"], f["resolution"], generator=g)
        for step in CHECK_TIMESTEPS:
            t = torch.full((n,), float(step))
            with torch.inference_mode():
                ref = net(x, t).numpy()
            got = sess.run(["eps"], {"x": x.numpy(), "t": t.numpy()})[0]
            if got.shape != ref.shape:
                raise AssertionError(f"onnxruntime gave shape {got.shape}, PyTorch {ref.shape}")
            d = float(np.abs(got.astype(np.float64) - ref).max())
            r = float(np.abs(ref).max())
            rows.append({"batch": n, "t": step, "max_abs_diff": d, "max_abs_ref": r, "rel": d / r,
                         "ok": d <= TOLERANCE * r})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="weights (.safetensors, or an official .pth/.ckpt with --config)")
    ap.add_argument("--config", help="official-layout YAML, or: " + ", ".join(NAMED_CONFIGS))
    ap.add_argument("--random-weights", action="store_true", help="seeded random weights instead of --model")
    ap.add_argument("--out", required=True, help="ONNX file to write")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.batch < 1:
        ap.error("--batch must be at least 1")
    if a.random_weights and a.model:
        ap.error("--model and --random-weights exclude each other")
    try:
        net, _, label = load_model(a.model, a.config, a.random_weights, a.seed)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = export(net, a.out, a.batch, a.opset)
    print(f"wrote {out} ({out.stat().st_size} bytes, opset {a.opset}) from {label}", file=sys.stderr)
    rows = check(net, out, a.batch, a.seed)
    for r in rows:
        print(f"batch {r['batch']} t {r['t']:>3}: max|d| {r['max_abs_diff']:.3e}, max|ref| "
              f"{r['max_abs_ref']:.3e}, ratio {r['rel']:.2e} ({'ok' if r['ok'] else 'FAIL'})")
    worst = max(rows, key=lambda r: r["rel"])
    verdict = "ok" if all(r["ok"] for r in rows) else "FAIL"
    print(f"{verdict}: worst max|d| / max|ref| = {worst['rel']:.2e} (limit {TOLERANCE:g})")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
