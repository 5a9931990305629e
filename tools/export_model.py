#!/usr/bin/env python3
"""Export a tools/train.py checkpoint as safetensors in the official ddim naming.

Writes
  OUT.safetensors  EMA weights (default) with the official state-dict names
                   (conv_in.weight, temb.dense.0.weight, down.0.block.0.conv1.weight,
                   mid.attn_1.q.weight, up.3.upsample.conv.weight, ...), no
                   "module." prefix; float32, or float16 with --half.
                   Metadata: step, ema_rate, n_params, data sha256, licence and
                   attribution, and the YAML text under "config".
  OUT.yml          the run's official-layout YAML config (copied next to it).
  OUT_preview.png  (unless --preview none) an 8x8 grid of samples drawn with
                   ddim_model.generalized_steps: 50 uniform DDIM steps, eta 0,
                   fixed seed, each 32x32 sample shown at 2x with a 2px gutter.

Usage
  python tools/export_model.py --ckpt /work/train/ckpt.pth --out models/emoji32.safetensors
  python tools/export_model.py --ckpt /work/train/ckpt.pth --out /tmp/m.safetensors --half --preview /tmp/p.png
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)

from ddim_model import Model, generalized_steps, get_beta_schedule, uniform_seq  # noqa: E402


def _stem(out):
    return out[:-len(".safetensors")] if out.endswith(".safetensors") else out


def load_checkpoint_model(ckpt_path, which="ema"):
    import yaml

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    cfg = yaml.safe_load(ckpt["config_text"])
    model = Model(cfg)
    sd = ckpt["ema"] if which == "ema" else ckpt["model"]
    model.load_state_dict(sd, strict=True)
    model.eval()
    return model, cfg, ckpt


@torch.no_grad()
def sample_grid(model, cfg, path, n=64, steps=50, eta=0.0, seed=0, scale=2, gutter=2):
    from PIL import Image

    d = cfg["diffusion"]
    betas = get_beta_schedule(d["beta_schedule"], float(d["beta_start"]), float(d["beta_end"]),
                              int(d["num_diffusion_timesteps"]))
    size = int(cfg["data"]["image_size"])
    ch = int(cfg["data"].get("channels", 3))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, ch, size, size, generator=g)
    seq = uniform_seq(len(betas), steps)
    t0 = time.time()
    xs, _ = generalized_steps(x, seq, model, betas, eta=eta, generator=g)
    img = ((xs[-1] + 1.0) / 2.0).clamp(0.0, 1.0)  # official inverse transform for rescaled data
    img = (img * 255.0 + 0.5).floor().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if ch == 1:
        img = np.repeat(img, 3, axis=3)
    cols = int(np.ceil(np.sqrt(n)))
    rows = (n + cols - 1) // cols
    cell = size * scale + gutter
    canvas = np.full((rows * cell + gutter, cols * cell + gutter, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        tile = img[i].repeat(scale, axis=0).repeat(scale, axis=1)
        y, xx = gutter + r * cell, gutter + c * cell
        canvas[y:y + size * scale, xx:xx + size * scale] = tile
    Image.fromarray(canvas).save(path)
    return time.time() - t0


def export(ckpt_path, out, half=False, preview=None, which="ema", threads=2, samples=64, steps=50, seed=0,
           license=None, attribution=None):
    from safetensors.torch import save_file

    torch.set_num_threads(threads)
    model, cfg, ckpt = load_checkpoint_model(ckpt_path, which)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": "pt",
        "producer": "ddim-webgpu tools/train.py",
        "weights": which,
        "step": str(int(ckpt["step"])),
        "ema_rate": str(ckpt["args"].get("ema_rate")),
        "n_params": str(sum(p.numel() for p in model.parameters())),
        "dtype": "float16" if half else "float32",
        "data_sha256": str(ckpt.get("data_sha256")),
        # The key both loaders read when no config file is given.
        "config": ckpt["config_text"],
    }
    if license is None and cfg["data"].get("dataset") == "EMOJI32":
        license = "Apache-2.0 (weights trained on Noto Emoji, (c) Google LLC, Apache-2.0)"
        attribution = attribution or (
            "Trained on Noto Emoji (c) Google LLC from emoji-datasource-google@16.0.0, "
            "composited on white and resized to 32x32; see data/NOTICE.md")
    for k, v in (("license", license), ("attribution", attribution)):
        if v:
            meta[k] = v
    stem = _stem(out)
    os.makedirs(os.path.dirname(os.path.abspath(out)) or ".", exist_ok=True)
    tmp = out + ".tmp"
    save_file(tensors, tmp, metadata=meta)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    yml = stem + ".yml"
    if not (os.path.exists(yml) and open(yml).read() == ckpt["config_text"]):
        with open(yml + ".tmp", "w") as f:
            f.write(ckpt["config_text"])
        os.replace(yml + ".tmp", yml)
    print(f"wrote {out} ({os.path.getsize(out)} bytes, {len(tensors)} tensors, {meta['dtype']}, "
          f"{which} weights of step {meta['step']}) and {yml}", file=sys.stderr)
    if preview is None:
        preview = stem + "_preview.png"
    if preview != "none":
        secs = sample_grid(model, cfg, preview, n=samples, steps=steps, seed=seed)
        print(f"wrote {preview} ({samples} samples, {steps} DDIM steps, eta 0, seed {seed}, {secs:.1f} s)",
              file=sys.stderr)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="/work/train/ckpt.pth")
    p.add_argument("--out", required=True, help="OUT.safetensors")
    p.add_argument("--half", action="store_true", help="store float16 instead of float32")
    p.add_argument("--which", choices=("ema", "model"), default="ema", help="EMA (default) or raw weights")
    p.add_argument("--preview", default=None, help="preview PNG path (default OUT_preview.png; 'none' to skip)")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--steps", type=int, default=50, help="DDIM steps for the preview")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--license", default=None,
                   help="licence metadata (default: Noto's Apache-2.0 for the EMOJI32 dataset, else none)")
    p.add_argument("--attribution", default=None, help="attribution metadata for your training data")
    a = p.parse_args()
    export(a.ckpt, a.out, half=a.half, preview=a.preview, which=a.which, threads=a.threads,
           samples=a.samples, steps=a.steps, seed=a.seed, license=a.license, attribution=a.attribution)


if __name__ == "__main__":
    main()
