"""PyTorch baseline for one forward pass of the DDIM noise-prediction net.

Usage:

    OMP_WAIT_POLICY=PASSIVE python tools/bench_torch.py --config cifar10 --batch 8 --threads 1
    python tools/bench_torch.py --config cifar10 --batch 1,64 --device cuda --iters 50

    --config   an official-layout YAML, or `cifar10` for tools/configs/cifar10.yml
    --batch    images per forward pass, comma-separated (default 8); one line each
    --threads  torch intra-op threads (default 1)
    --device   cpu (default) or a CUDA device such as cuda
    --iters    timed passes (default 5)
    --warmup   untimed passes first (default 2)
    --seed     weight / input seed (default 0)

Prints one JSON line:

    {"impl": "torch", "config": ..., "threads": ..., "batch": ..., "params": ...,
     "device": ..., "median_ms": ..., "min_ms": ..., "times_ms": [...], "torch": "<version>"}

Weights are random (timing does not depend on their values). The model runs in
eval mode under torch.inference_mode, so dropout is off, as when sampling.

Set OMP_WAIT_POLICY=PASSIVE when the machine is shared (e.g. with a compiler
running): OpenMP's default busy-waiting makes idle worker threads spin and
steal cores from everything else, which also makes the numbers noisier. It has
to be in the environment before torch starts, hence not set from here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ddim_model import DDIMUNet, load_config, model_fields  # noqa: E402

NAMED_CONFIGS = {"cifar10": HERE / "configs" / "cifar10.yml"}


def main() -> None:
    ap = argparse.ArgumentParser(description="PyTorch forward-pass benchmark (DDIM UNet).")
    ap.add_argument("--config", default="cifar10", help="YAML path or one of: " + ", ".join(NAMED_CONFIGS))
    ap.add_argument("--batch", default="8", help="comma-separated batch sizes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg_path = NAMED_CONFIGS.get(args.config, Path(args.config))
    cfg = load_config(str(cfg_path))
    f = model_fields(cfg)

    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        ap.error(f"--batch {args.batch!r}: expected comma-separated integers")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    model = DDIMUNet(cfg).eval().to(device)
    n_params = sum(p.numel() for p in model.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for batch in batches:
        x = torch.randn(batch, f["in_channels"], f["resolution"], f["resolution"]).to(device)
        # Per-image timesteps cost the same as a shared one (sampling uses a shared t).
        t = torch.linspace(0, 999, batch).to(device)
        times = []
        with torch.inference_mode():
            for i in range(args.warmup + args.iters):
                start = time.perf_counter()
                out = model(x, t)
                float(out[0, 0, 0, 0])  # make sure the work has really finished
                elapsed = (time.perf_counter() - start) * 1e3
                if i >= args.warmup:
                    times.append(elapsed)
        print(json.dumps({
            "impl": "torch",
            "config": args.config,
            "threads": torch.get_num_threads(),
            "batch": batch,
            "params": n_params,
            "device": name,
            "median_ms": round(statistics.median(times), 3),
            "min_ms": round(min(times), 3),
            "times_ms": [round(v, 3) for v in times],
            "torch": torch.__version__,
        }), flush=True)


if __name__ == "__main__":
    main()
