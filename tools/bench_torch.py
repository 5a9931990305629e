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
    --tf32     on, off or default (default): set both torch.backends.cuda.matmul.allow_tf32
               and torch.backends.cudnn.allow_tf32, or leave PyTorch's defaults alone
               (matmul off, cuDNN convolutions on since torch 1.12)
    --sample-steps S
               after each batch's forward timing, also time a whole S-step DDIM sample
               (eta 0, uniform skip range(0, T, T // S), the config's diffusion section,
               else linear betas 1e-4..0.02 over T = 1000), synchronized at the end

Prints one JSON line per batch:

    {"impl": "torch", "config": ..., "threads": ..., "batch": ..., "params": ...,
     "device": ..., "median_ms": ..., "min_ms": ..., "times_ms": [...], "torch": "<version>",
     "tf32": {"matmul": bool, "cudnn": bool} or null off CUDA,
     "sample_s": ... or null, "sample_steps": S or null, "sample_evals": network calls or null}

The sample is the official generalized_steps loop (tools/ddim_model.py): seq_next =
[-1] + seq[:-1], alpha_bar(-1) = 1, no clipping, under torch.inference_mode. The uniform
skip may give more than S network calls (S = 3 gives 4); `ddim bench` uses the same
sequence, so the two sample times compare like for like.

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
from ddim_model import (  # noqa: E402
    DDIMUNet,
    generalized_steps,
    get_beta_schedule,
    load_config,
    model_fields,
    uniform_seq,
)

NAMED_CONFIGS = {"cifar10": HERE / "configs" / "cifar10.yml"}

# The official ermongroup/ddim defaults, used where a config has no diffusion section.
DIFFUSION_DEFAULTS = {
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "num_diffusion_timesteps": 1000,
}


def diffusion_betas(cfg: dict):
    """The config's beta schedule (float64 numpy), falling back to the official defaults."""
    d = dict(DIFFUSION_DEFAULTS)
    section = cfg.get("diffusion") if isinstance(cfg, dict) else None
    if isinstance(section, dict):
        d.update({k: v for k, v in section.items() if k in d and v is not None})
    return get_beta_schedule(
        str(d["beta_schedule"]),
        float(d["beta_start"]),
        float(d["beta_end"]),
        int(d["num_diffusion_timesteps"]),
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_sample(model, betas, steps: int, batch: int, f: dict, device: torch.device):
    """Seconds for one whole DDIM sample (eta 0, uniform skip), and its network calls."""
    seq = uniform_seq(len(betas), steps)
    x = torch.randn(batch, f["in_channels"], f["resolution"], f["resolution"], device=device)
    with torch.inference_mode():
        synchronize(device)
        start = time.perf_counter()
        xs, _ = generalized_steps(x, seq, model, betas, eta=0.0)
        synchronize(device)
        elapsed = time.perf_counter() - start
    float(xs[-1][0, 0, 0, 0])  # already finished; a cheap check that the sample exists
    return elapsed, len(seq)


def main() -> None:
    ap = argparse.ArgumentParser(description="PyTorch forward-pass benchmark (DDIM UNet).")
    ap.add_argument("--config", default="cifar10", help="YAML path or one of: " + ", ".join(NAMED_CONFIGS))
    ap.add_argument("--batch", default="8", help="comma-separated batch sizes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tf32", choices=("on", "off", "default"), default="default",
                    help="set both TF32 flags (matmul, cuDNN), or leave PyTorch's defaults")
    ap.add_argument("--sample-steps", type=int, default=None,
                    help="also time a whole DDIM sample of this many steps per batch")
    args = ap.parse_args()

    if args.tf32 != "default":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"
        torch.backends.cudnn.allow_tf32 = args.tf32 == "on"

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg_path = NAMED_CONFIGS.get(args.config, Path(args.config))
    cfg = load_config(str(cfg_path))
    f = model_fields(cfg)
    betas = diffusion_betas(cfg)
    if args.sample_steps is not None and not 1 <= args.sample_steps <= len(betas):
        ap.error(f"--sample-steps {args.sample_steps}: expected 1..{len(betas)}")

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
    tf32 = None
    if device.type == "cuda":
        tf32 = {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        }
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
        sample_s = sample_evals = None
        if args.sample_steps is not None:
            sample_s, sample_evals = time_sample(model, betas, args.sample_steps, batch, f, device)
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
            "tf32": tf32,
            "sample_s": None if sample_s is None else round(sample_s, 4),
            "sample_steps": args.sample_steps,
            "sample_evals": sample_evals,
        }), flush=True)


if __name__ == "__main__":
    main()
