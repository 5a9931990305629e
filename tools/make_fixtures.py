"""Generate the small, committed test fixtures under tests/fixtures/.

Usage (from the repository root, with a Python env holding torch, diffusers,
safetensors, numpy and pyyaml):

    python tools/make_fixtures.py            # writes tests/fixtures/
    python tools/make_fixtures.py --out DIR  # somewhere else

The script is deterministic for a given torch/diffusers install: every random
draw comes from a seeded torch.Generator or numpy RandomState, and the output
is rewritten from scratch on each run.

What it writes (see also the summary it prints):

    tests/fixtures/<model>/config.yml             official-layout YAML
    tests/fixtures/<model>/model.safetensors      official key names, float32
    tests/fixtures/<model>/ref.safetensors        reference inputs and outputs
    tests/fixtures/<model>/xT.npy                 the sampler's initial noise
    tests/fixtures/tiny/diffusers/                same weights as a diffusers UNet2DModel
    tests/fixtures/schedules.safetensors          beta / alpha_bar tables
    tests/fixtures/timesteps.json                 timestep lists (official and diffusers)

All parameters are rounded to float16-representable float32 values, so a
float16 weight export of these fixtures is lossless (handy for testing the f16
loading path without conflating weight and arithmetic rounding).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ddim_model import (  # noqa: E402
    DDIMUNet,
    alphas_cumprod_f32,
    generalized_steps,
    get_beta_schedule,
    model_fields,
    quad_seq,
    uniform_seq,
)

T = 1000
BETA_START, BETA_END = 1e-4, 0.02
BATCH = 2

DIFFUSION = {
    "beta_schedule": "linear",
    "beta_start": BETA_START,
    "beta_end": BETA_END,
    "num_diffusion_timesteps": T,
}

MODELS = {
    # Two levels, conv resampling, attention at the lower level only.
    "tiny": {
        "seed": 1001,
        "dataset": "FIXTURE_TINY",
        "resolution": 16,
        "model": {
            "in_channels": 3, "out_ch": 3, "ch": 32, "ch_mult": [1, 2],
            "num_res_blocks": 1, "attn_resolutions": [8], "dropout": 0.0,
            "resamp_with_conv": True,
        },
    },
    # Three levels ending at an odd 3x3 map, single channel, avg-pool/nearest
    # resampling without convs, two blocks per level.
    "tiny_odd": {
        "seed": 2002,
        "dataset": "FIXTURE_TINY_ODD",
        "resolution": 12,
        "model": {
            "in_channels": 1, "out_ch": 1, "ch": 32, "ch_mult": [1, 1, 2],
            "num_res_blocks": 2, "attn_resolutions": [6], "dropout": 0.0,
            "resamp_with_conv": False,
        },
    },
}

UNIFORM_QUAD_S = [1, 7, 10, 30, 50, 100, 300, 1000]
DIFFUSERS_S = [1, 7, 10, 30, 50, 100, 1000]
DIFFUSERS_OFFSET1_S = [10, 50]


# --------------------------------------------------------------------------
# model construction
# --------------------------------------------------------------------------

def official_config(spec: dict) -> dict:
    m = spec["model"]
    return {
        "data": {
            "dataset": spec["dataset"],
            "image_size": spec["resolution"],
            "channels": m["in_channels"],
            "logit_transform": False,
            "uniform_dequantization": False,
            "gaussian_dequantization": False,
            "random_flip": True,
            "rescaled": True,
            "num_workers": 4,
        },
        "model": {
            "type": "simple",
            "in_channels": m["in_channels"],
            "out_ch": m["out_ch"],
            "ch": m["ch"],
            "ch_mult": list(m["ch_mult"]),
            "num_res_blocks": m["num_res_blocks"],
            "attn_resolutions": list(m["attn_resolutions"]),
            "dropout": m["dropout"],
            "var_type": "fixedlarge",
            "ema_rate": 0.9999,
            "ema": True,
            "resamp_with_conv": m["resamp_with_conv"],
        },
        "diffusion": dict(DIFFUSION),
        "sampling": {"batch_size": BATCH, "last_only": True},
    }


def f16_exact(t: torch.Tensor) -> torch.Tensor:
    return t.half().float()


@torch.no_grad()
def build_model(cfg: dict, seed: int) -> DDIMUNet:
    """Random model whose every parameter is non-trivial.

    Default (Kaiming-uniform) init for conv/linear weights keeps activations
    O(1); biases and GroupNorm affines are randomised too so that a port that
    drops a bias or ignores gamma/beta cannot pass by accident.
    """
    torch.manual_seed(seed)
    model = DDIMUNet(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.GroupNorm):
            mod.weight.copy_(1.0 + 0.2 * torch.randn(mod.weight.shape, generator=g))
            mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=g))
        elif isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and mod.bias is not None:
            mod.bias.copy_(0.05 * torch.randn(mod.bias.shape, generator=g))
    # Default init leaves the timestep with a weak grip on the output; a
    # stronger time projection makes a wrong embedding visible in eps_t*.
    for name, mod in model.named_modules():
        if name.endswith("temb_proj"):
            mod.weight.mul_(2.0)
    for p in model.parameters():
        p.copy_(f16_exact(p))
    return model.eval()


@torch.no_grad()
def normalise_output_scale(model: DDIMUNet, x: torch.Tensor) -> float:
    """Rescale conv_out so the predicted noise has roughly unit std.

    An untrained eps-net's output scale is arbitrary; unit scale keeps the
    samplers' intermediate values in the range a trained model produces.
    Returns the factor applied (rounded to a power-of-two-friendly value so the
    f16-exact property of the weights is preserved).
    """
    ts = torch.tensor([0.0, 999.0])
    std = model(x, ts).std().item()
    # A power of two keeps already-f16-exact weights exact.
    factor = 2.0 ** round(np.log2(1.0 / std))
    model.conv_out.weight.mul_(factor)
    model.conv_out.bias.mul_(factor)
    return factor


# --------------------------------------------------------------------------
# diffusers export (tiny only)
# --------------------------------------------------------------------------

def diffusers_unet_config(f: dict) -> dict:
    """UNet2DModel config reproducing the official network (DDPM layout)."""
    res = f["resolution"]
    down_types = []
    for lvl in range(len(f["ch_mult"])):
        down_types.append("AttnDownBlock2D" if res in f["attn_resolutions"] else "DownBlock2D")
        res //= 2
    up_types = [d.replace("Down", "Up") for d in reversed(down_types)]
    return {
        "sample_size": f["resolution"],
        "in_channels": f["in_channels"],
        "out_channels": f["out_ch"],
        "block_out_channels": [f["ch"] * m for m in f["ch_mult"]],
        "layers_per_block": f["num_res_blocks"],
        "down_block_types": down_types,
        "up_block_types": up_types,
        # The three fields below are what make diffusers match the official
        # net: asymmetric (0,1,0,1) pad, sin-first embedding with divisor
        # half-1, and one attention head spanning all channels.
        "downsample_padding": 0,
        "flip_sin_to_cos": False,
        "freq_shift": 1,
        "attention_head_dim": None,
        "norm_eps": 1e-6,
        "norm_num_groups": 32,
        "act_fn": "silu",
        "dropout": f["dropout"],
    }


_RESNET_RENAME = {"temb_proj": "time_emb_proj", "nin_shortcut": "conv_shortcut"}
_ATTN_RENAME = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def official_to_diffusers_key(key: str, num_levels: int) -> tuple[str, bool]:
    """Map one official key to its diffusers name; also say if it is an attention
    projection weight that must be squeezed from a 1x1 conv to a Linear."""
    parts = key.split(".")
    leaf = parts[-1]
    if parts[0] == "temb":
        return f"time_embedding.linear_{int(parts[2]) + 1}.{leaf}", False
    if parts[0] == "norm_out":
        return f"conv_norm_out.{leaf}", False
    if parts[0] in ("conv_in", "conv_out"):
        return key, False
    if parts[0] == "mid":
        sub = parts[1]
        if sub.startswith("block_"):
            idx = int(sub.split("_")[1]) - 1
            return f"mid_block.resnets.{idx}.{_RESNET_RENAME.get(parts[2], parts[2])}.{leaf}", False
        name = _ATTN_RENAME[parts[2]]
        return f"mid_block.attentions.0.{name}.{leaf}", leaf == "weight" and parts[2] != "norm"
    if parts[0] in ("down", "up"):
        lvl = int(parts[1])
        prefix = f"down_blocks.{lvl}" if parts[0] == "down" else f"up_blocks.{num_levels - 1 - lvl}"
        kind = parts[2]
        if kind == "block":
            return f"{prefix}.resnets.{parts[3]}.{_RESNET_RENAME.get(parts[4], parts[4])}.{leaf}", False
        if kind == "attn":
            name = _ATTN_RENAME[parts[4]]
            return f"{prefix}.attentions.{parts[3]}.{name}.{leaf}", leaf == "weight" and parts[4] != "norm"
        if kind == "downsample":
            return f"{prefix}.downsamplers.0.conv.{leaf}", False
        if kind == "upsample":
            return f"{prefix}.upsamplers.0.conv.{leaf}", False
    raise KeyError(f"no diffusers name for {key}")


@torch.no_grad()
def export_diffusers(model: DDIMUNet, x: torch.Tensor, out_dir: Path) -> list[str]:
    from diffusers import DDIMScheduler, UNet2DModel

    f = model.fields
    unet = UNet2DModel(**diffusers_unet_config(f)).eval()
    target = unet.state_dict()
    mapped = {}
    for k, v in model.state_dict().items():
        dk, squeeze = official_to_diffusers_key(k, len(f["ch_mult"]))
        mapped[dk] = v.reshape(v.shape[0], v.shape[1]) if squeeze else v
    missing = sorted(set(target) - set(mapped))
    extra = sorted(set(mapped) - set(target))
    if missing or extra:
        raise SystemExit(f"diffusers key mismatch: missing={missing} extra={extra}")
    for k, v in mapped.items():
        if target[k].shape != v.shape:
            raise SystemExit(f"diffusers shape mismatch at {k}: {tuple(target[k].shape)} vs {tuple(v.shape)}")
    unet.load_state_dict(mapped, strict=True)

    for tv in (0.0, 1.0, 17.0, 500.0, 999.0):
        ts = torch.full((x.shape[0],), tv)
        diff = (unet(x, ts).sample - model(x, ts)).abs().max().item()
        print(f"  diffusers vs official module, t={tv:g}: max|diff| = {diff:.2e}")
        assert diff < 1e-5, f"diffusers export disagrees at t={tv}: {diff}"

    if out_dir.exists():
        shutil.rmtree(out_dir)
    unet.save_pretrained(out_dir, safe_serialization=True)
    # Same scheduler as the sample_leading_clip_s10 reference (diffusers defaults).
    DDIMScheduler(**scheduler_kwargs()).save_config(out_dir)
    return sorted(target)


def scheduler_kwargs(**over) -> dict:
    kw = dict(
        num_train_timesteps=T,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule="linear",
        clip_sample=True,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="leading",
    )
    kw.update(over)
    return kw


# --------------------------------------------------------------------------
# reference outputs
# --------------------------------------------------------------------------

@torch.no_grad()
def diffusers_ddim_sample(model: DDIMUNet, xT: torch.Tensor, steps: int, **sched_over) -> torch.Tensor:
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(**scheduler_kwargs(**sched_over))
    sched.set_timesteps(steps)
    x = xT.clone()
    for t in sched.timesteps:
        eps = model(x, torch.full((x.shape[0],), float(t)))
        x = sched.step(eps, t, x, eta=0.0).prev_sample
    return x


@torch.no_grad()
def make_model_fixtures(name: str, spec: dict, root: Path) -> dict:
    cfg = official_config(spec)
    f = model_fields(cfg)
    c, r = f["in_channels"], f["resolution"]
    seed = spec["seed"]

    model = build_model(cfg, seed)
    gin = torch.Generator().manual_seed(seed + 2)
    x = torch.randn(BATCH, c, r, r, generator=gin)
    xT = torch.randn(BATCH, c, r, r, generator=gin)
    factor = normalise_output_scale(model, x)

    betas = get_beta_schedule("linear", BETA_START, BETA_END, T)
    ref: dict[str, torch.Tensor] = {"x": x, "xT": xT}
    for tv in (0, 1, 500, 999):
        ref[f"eps_t{tv}"] = model(x, torch.full((BATCH,), float(tv)))
    ref["eps_mixed"] = model(x, torch.tensor([17.0, 903.0]))

    # eta=0 makes the per-step noise irrelevant; a private generator keeps
    # the global RNG untouched anyway.
    gz = torch.Generator().manual_seed(seed + 3)
    xs, _ = generalized_steps(xT, uniform_seq(T, 1), model, betas, eta=0.0, generator=gz)
    ref["sample_uniform_s1"] = xs[-1]
    xs, x0s = generalized_steps(xT, uniform_seq(T, 10), model, betas, eta=0.0, generator=gz)
    ref["sample_uniform_s10"] = xs[-1]
    ref["x0_preds_uniform_s10"] = torch.stack(x0s)
    xs, _ = generalized_steps(xT, quad_seq(T, 10), model, betas, eta=0.0, generator=gz)
    ref["sample_quad_s10"] = xs[-1]
    ref["sample_leading_clip_s10"] = diffusers_ddim_sample(model, xT, 10, clip_sample=True)
    xs, _ = generalized_steps(xT, quad_seq(T, 1), model, betas, eta=0.0, generator=gz)
    ref["sample_quad_s1"] = xs[-1]
    ref["sample_leading_clip_s1"] = diffusers_ddim_sample(model, xT, 1, clip_sample=True)

    ref = {k: v.float().contiguous() for k, v in ref.items()}
    for k, v in ref.items():
        assert torch.isfinite(v).all(), f"{name}/{k} is not finite"

    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "config.yml", "w", encoding="utf-8") as fh:
        fh.write(f"# Test fixture '{name}': random weights, official ermongroup/ddim layout.\n")
        fh.write("# Regenerate with: python tools/make_fixtures.py\n")
        yaml.safe_dump(cfg, fh, sort_keys=False, default_flow_style=None)
    sd = {k: v.float().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(d / "model.safetensors"), metadata={"format": "pt"})
    # One metadata key only: safetensors writes the metadata map in hash
    # order, so several keys would make the file bytes differ between runs.
    save_file(ref, str(d / "ref.safetensors"), metadata={
        "note": f"fixture {name}; eps_tN: model(x, t=N) for both batch items; eps_mixed: t=[17,903]; "
                "sample_*: final x of the official eta=0 DDIM sampler from xT; "
                "sample_leading_clip_sN: diffusers DDIMScheduler(clip_sample=True, leading) from xT",
    })
    np.save(d / "xT.npy", xT.numpy().astype(np.float32))

    info = {
        "params": sum(v.numel() for v in sd.values()),
        "tensors": len(sd),
        "conv_out_scale": factor,
        "ref": {k: (tuple(v.shape), float(v.abs().max()), float(v.std())) for k, v in ref.items()},
    }
    if name == "tiny":
        info["diffusers_keys"] = export_diffusers(model, x, d / "diffusers")
    return info


# --------------------------------------------------------------------------
# schedules and timestep lists
# --------------------------------------------------------------------------

def make_schedules(root: Path) -> None:
    from diffusers import DDIMScheduler

    tables = {
        f"betas_{kind}": torch.from_numpy(get_beta_schedule(kind, BETA_START, BETA_END, T))
        for kind in ("linear", "quad", "const", "jsd", "sigmoid")
    }
    tables["betas_linear_T100"] = torch.from_numpy(get_beta_schedule("linear", BETA_START, BETA_END, 100))
    tables["abar_f32_linear"] = alphas_cumprod_f32(get_beta_schedule("linear", BETA_START, BETA_END, T))
    tables["betas_cosine_diffusers"] = DDIMScheduler(
        num_train_timesteps=T, beta_schedule="squaredcos_cap_v2").betas.float()
    tables["betas_linear_zsnr_diffusers"] = DDIMScheduler(
        num_train_timesteps=T, beta_start=BETA_START, beta_end=BETA_END,
        beta_schedule="linear", rescale_betas_zero_snr=True).betas.float()
    tables = {k: v.contiguous() for k, v in tables.items()}
    save_file(tables, str(root / "schedules.safetensors"))


def make_timesteps(root: Path) -> dict:
    from diffusers import DDIMScheduler

    out: dict[str, dict[str, list[int]]] = {
        "uniform": {str(s): uniform_seq(T, s) for s in UNIFORM_QUAD_S},
        "quad": {str(s): quad_seq(T, s) for s in UNIFORM_QUAD_S},
    }

    def diffusers_list(spacing: str, s: int, offset: int) -> list[int]:
        sched = DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=offset)
        sched.set_timesteps(s)
        return [int(t) for t in sched.timesteps.tolist()]

    for spacing in ("leading", "trailing", "linspace"):
        out[spacing] = {str(s): diffusers_list(spacing, s, 0) for s in DIFFUSERS_S}
    out["leading_offset1"] = {str(s): diffusers_list("leading", s, 1) for s in DIFFUSERS_OFFSET1_S}
    out["_about"] = {
        "T": [T],
        "uniform/quad": "official ermongroup sequences, ascending, duplicates kept",
        "leading/trailing/linspace": "diffusers DDIMScheduler.set_timesteps(S).timesteps, descending, steps_offset=0",
        "leading_offset1": "same with steps_offset=1",
    }
    with open(root / "timesteps.json", "w", encoding="utf-8") as fh:
        # One list per line keeps diffs of this file readable.
        fh.write("{\n")
        groups = list(out.items())
        for gi, (group, lists) in enumerate(groups):
            fh.write(f"  {json.dumps(group)}: {{\n")
            items = list(lists.items())
            for li, (k, v) in enumerate(items):
                sep = "," if li < len(items) - 1 else ""
                fh.write(f"    {json.dumps(k)}: {json.dumps(v)}{sep}\n")
            fh.write("  }" + ("," if gi < len(groups) - 1 else "") + "\n")
        fh.write("}\n")
    return out


# --------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_out = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
    ap.add_argument("--out", type=Path, default=default_out, help="fixture root (default: tests/fixtures)")
    args = ap.parse_args()

    # Single-threaded, deterministic kernels: fixtures must not depend on the
    # machine's core count.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    root: Path = args.out
    root.mkdir(parents=True, exist_ok=True)
    for name, spec in MODELS.items():
        print(f"[{name}]")
        info = make_model_fixtures(name, spec, root)
        print(f"  params={info['params']} tensors={info['tensors']} conv_out scale={info['conv_out_scale']}")
        for k, (shape, amax, std) in info["ref"].items():
            print(f"  {k:26s} {str(list(shape)):18s} max|.|={amax:9.4f} std={std:8.4f}")
        if "diffusers_keys" in info:
            print(f"  diffusers keys: {len(info['diffusers_keys'])}")
    make_schedules(root)
    make_timesteps(root)

    total = 0
    for dirpath, _, files in os.walk(root):
        for fn in files:
            total += os.path.getsize(os.path.join(dirpath, fn))
    print(f"wrote {root} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
