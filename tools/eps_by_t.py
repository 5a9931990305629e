#!/usr/bin/env python3
"""How well an epsilon-model predicts the noise at each t, and what that does to x0.

The DDIM step computes x0 = (x_t - sqrt(1 - abar) * eps_hat) / sqrt(abar), so an error in
eps_hat reaches x0 multiplied by sqrt((1 - abar) / abar): about 160 at t = 999 on the linear
schedule. The loss curve hides this, because a tiny eps error at large t is a tiny loss.

For training images noised at each t, this prints
  eps-MSE      the training loss at that t
  x0-MSE       the error the DDIM step's x0 estimate has
  DC share     how much of the x0 error is each image's per-channel mean (a colour cast)
  DC std ratio std of the predicted noise's per-channel spatial mean over the true one's
               (1 is right; near 0 means the network cannot see that mean at all)
  DC corr      correlation of the two

A network whose last GroupNorm has one channel per group (ch = 32 with 32 groups) normalises
away each channel's spatial mean, so it cannot predict the noise's mean: the DC std ratio
stays near 0 however long it trains, and unclipped DDIM samples come out as flat, saturated
colours. This is the measurement that showed it.

Usage
  python tools/eps_by_t.py /work/train/ckpt.pth [more.pth ...] [--which ema|model]
  python tools/eps_by_t.py models/emoji32.safetensors
"""

import argparse
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

from ddim_model import Model, alphas_cumprod_f32, get_beta_schedule  # noqa: E402
from export_model import load_checkpoint_model  # noqa: E402
from train import load_atlas  # noqa: E402


def load(path, which):
    """A model and its config from a train.py checkpoint or an exported safetensors file."""
    if not path.endswith(".safetensors"):
        model, cfg, ckpt = load_checkpoint_model(path, which)
        return model, cfg, f"{os.path.basename(path)} {which} (step {ckpt['step']})"
    import yaml
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    yml = path[:-len(".safetensors")] + ".yml"
    text = open(yml).read() if os.path.exists(yml) else meta.get("config")
    if text is None:
        sys.exit(f"{path}: no {yml} and no 'config' metadata")
    cfg = yaml.safe_load(text)
    model = Model(cfg)
    model.load_state_dict({k: v.float() for k, v in load_file(path).items()}, strict=True)
    model.eval()
    return model, cfg, f"{os.path.basename(path)} (step {meta.get('step', '?')})"


@torch.no_grad()
def report(model, cfg, x0, ts, batch=64):
    d = cfg["diffusion"]
    betas = get_beta_schedule(d["beta_schedule"], float(d["beta_start"]), float(d["beta_end"]),
                              int(d["num_diffusion_timesteps"]))
    abar = alphas_cumprod_f32(betas)
    print("| t | ᾱ | ε-MSE | x0-MSE | DC share | DC std ratio | DC corr |")
    print("|---|---|---|---|---|---|---|")
    for t in ts:
        g = torch.Generator().manual_seed(t)
        e = torch.randn(x0.shape, generator=g)
        a = abar[t].float()
        xt = a.sqrt() * x0 + (1 - a).sqrt() * e
        out = torch.cat([model(xt[i:i + batch], torch.full((len(xt[i:i + batch]),), float(t)))
                         for i in range(0, len(xt), batch)])
        err = (out - e) * ((1 - a) / a).sqrt()
        dc = err.mean(dim=(2, 3), keepdim=True)
        true_dc = e.mean(dim=(2, 3)).flatten().numpy()
        pred_dc = out.mean(dim=(2, 3)).flatten().numpy()
        corr = np.corrcoef(true_dc, pred_dc)[0, 1]
        print(f"| {t} | {a:.2e} | {(out - e).square().mean():.5f} | {err.square().mean():.3f} | "
              f"{dc.square().mean() / err.square().mean():.2f} | {pred_dc.std() / true_dc.std():.3f} | "
              f"{corr:.2f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="train.py checkpoints (.pth) or exported .safetensors")
    p.add_argument("--which", choices=("ema", "model"), default="ema", help="for checkpoints")
    p.add_argument("--data", default=os.path.join(REPO, "data", "emoji32.png"))
    p.add_argument("--n", type=int, default=128, help="training images to noise")
    p.add_argument("--t", default="999,900,800,700,500,300,100,10")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data, _, _ = load_atlas(a.data)
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:a.n]
    x0 = data[idx].float() / 127.5 - 1.0
    ts = [int(t) for t in a.t.split(",")]
    for path in a.models:
        model, cfg, label = load(path, a.which)
        m = cfg["model"]
        print(f"\n{label}: ch {m['ch']}, ch_mult {m['ch_mult']}, {m['num_res_blocks']} res blocks\n")
        report(model, cfg, x0, ts)


if __name__ == "__main__":
    main()
