#!/usr/bin/env python3
"""Fixture for the exporter/loader parity test (tests/export_parity.rs).

It runs the real pipeline that produced the shipped model, on a small network:
tools/train.py trains a few steps on data/emoji32.png, tools/export_model.py
exports the checkpoint's EMA weights (float32 and float16), and the exporter's
own PyTorch module computes eps on fixed inputs. The Rust loader must give the
same eps from the exported files.

Writes tests/fixtures/export/:
  model.safetensors, model.yml          float32 export (config also in metadata)
  model_f16.safetensors                 float16 export (config only in metadata)
  ref.safetensors                       x [3,3,32,32], t [3], eps, eps_f16

Usage: python tools/make_export_fixture.py   (needs torch, safetensors, pyyaml, pillow)
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import torch  # noqa: E402

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

import export_model  # noqa: E402

# Small enough to commit, but with every layer kind of the default model: two levels,
# a downsample and an upsample, attention at 16x16, dropout in training.
CONFIG = """\
data:
    dataset: "EMOJI32"
    image_size: 32
    channels: 3
    logit_transform: false
    uniform_dequantization: false
    gaussian_dequantization: false
    random_flip: false
    rescaled: true
    num_workers: 0
model:
    type: "simple"
    in_channels: 3
    out_ch: 3
    ch: 32
    ch_mult: [1, 2]
    num_res_blocks: 1
    attn_resolutions: [16]
    dropout: 0.1
    var_type: fixedlarge
    ema_rate: 0.9
    ema: true
    resamp_with_conv: true
diffusion:
    beta_schedule: linear
    beta_start: 0.0001
    beta_end: 0.02
    num_diffusion_timesteps: 1000
training:
    batch_size: 8
    n_iters: 4
    snapshot_freq: 4
    warmup: 2
    loss: "mse_mean"
optim:
    weight_decay: 0.0
    optimizer: "Adam"
    lr: 0.001
    beta1: 0.9
    amsgrad: false
    eps: 0.00000001
    grad_clip: 1.0
"""


def main():
    out = os.path.join(ROOT, "tests", "fixtures", "export")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work:
        cfg = os.path.join(work, "export.yml")
        with open(cfg, "w") as f:
            f.write(CONFIG)
        # A larger lr and a fast EMA so a few steps move the weights well away from init.
        subprocess.run([sys.executable, os.path.join(TOOLS, "train.py"), "--config", cfg, "--workdir", work,
                        "--fresh", "--threads", "1", "--ckpt-every", "4", "--keep-every", "0"], check=True)
        ckpt = os.path.join(work, "ckpt.pth")
        f32 = os.path.join(out, "model.safetensors")
        f16 = os.path.join(out, "model_f16.safetensors")
        export_model.export(ckpt, f32, preview="none", threads=1)
        export_model.export(ckpt, f16, half=True, preview="none", threads=1)
        os.remove(os.path.join(out, "model_f16.yml"))  # the f16 file must find its config in metadata
        model, _, ck = export_model.load_checkpoint_model(ckpt)

    from safetensors.torch import load_file, save_file

    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 3, 32, 32, generator=g)
    t = torch.tensor([0.0, 437.0, 999.0])
    with torch.no_grad():
        eps = model(x, t)
        # float16 weights, float32 arithmetic: what the loaders do with an f16 file.
        half = {k: v.float() for k, v in load_file(f16).items()}
        model.load_state_dict(half, strict=True)
        eps16 = model(x, t)
    save_file({"x": x, "t": t, "eps": eps.contiguous(), "eps_f16": eps16.contiguous()},
              os.path.join(out, "ref.safetensors"))
    print(f"wrote {out}: EMA weights of step {int(ck['step'])}, "
          f"max|eps| {float(eps.abs().max()):.3f}, max|eps - eps_f16| {float((eps - eps16).abs().max()):.2e}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
