"""PyTorch reference for the DDIM noise-prediction network and sampler.

This is an independent re-statement of the network used by the official DDIM
release (the DDPM "simple" UNet) and of its generalized (DDIM) sampler. It is
the oracle the Rust/WGSL implementation is tested against, so parameter names
follow the official checkpoints exactly (``conv_in``, ``temb.dense.0``,
``down.{i}.block.{j}.conv1``, ``mid.attn_1.q``, ``up.{i}.upsample.conv``, ...)
and checkpoints load with ``strict=True``.

Importable from the other tools in this folder:

    from ddim_model import DDIMUNet, load_config, get_beta_schedule, generalized_steps

Only torch, numpy and (for ``load_config``) pyyaml are needed.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "DDIMUNet",
    "Model",
    "model_fields",
    "load_config",
    "timestep_embedding",
    "get_beta_schedule",
    "alphas_cumprod_f32",
    "compute_alpha",
    "uniform_seq",
    "quad_seq",
    "generalized_steps",
]


# --------------------------------------------------------------------------
# config handling
# --------------------------------------------------------------------------

def load_config(path: str) -> dict:
    """Read an official-layout YAML (sections ``model:``, ``data:``, ``diffusion:``)."""
    import yaml

    with open(path, "r", encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise ValueError(f"{path}: not an official-layout config (no 'model:' section)")
    return cfg


def _get(section: Any, key: str, default: Any = None) -> Any:
    # Configs arrive either as plain dicts or as argparse-style namespaces.
    if section is None:
        return default
    if isinstance(section, Mapping):
        return section.get(key, default)
    return getattr(section, key, default)


def model_fields(config: Any) -> dict:
    """Normalise a config into the flat set of fields the network needs.

    Accepts the full official layout (``{"model": {...}, "data": {...}}``) or
    just the ``model:`` section. The resolution comes from ``data.image_size``
    when present, otherwise ``model.resolution`` / ``model.image_size``.
    """
    model = _get(config, "model", None)
    data = _get(config, "data", None)
    if model is None:  # a bare model section was passed
        model = config
    resolution = _get(data, "image_size", None)
    if resolution is None:
        resolution = _get(model, "resolution", _get(model, "image_size", None))
    if resolution is None:
        raise ValueError("config gives no data.image_size / model.resolution")
    in_channels = _get(model, "in_channels", _get(data, "channels", 3))
    return {
        "ch": int(_get(model, "ch")),
        "out_ch": int(_get(model, "out_ch", in_channels)),
        "ch_mult": tuple(int(m) for m in _get(model, "ch_mult")),
        "num_res_blocks": int(_get(model, "num_res_blocks")),
        "attn_resolutions": tuple(int(r) for r in _get(model, "attn_resolutions", ())),
        "dropout": float(_get(model, "dropout", 0.0)),
        "in_channels": int(in_channels),
        "resamp_with_conv": bool(_get(model, "resamp_with_conv", True)),
        "resolution": int(resolution),
    }


# --------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------

def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding, [sin | cos] with sin first, divisor (half - 1).

    ``t`` is the raw (float) diffusion step, one per batch element. The
    frequency table is built in float32 the same way the official code does so
    fixtures are bit-comparable with it.
    """
    if t.dim() != 1:
        raise ValueError("timesteps must be a 1-D tensor")
    half = dim // 2
    scale = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -scale)
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, temb_ch: int, dropout: float):
        super().__init__()
        self.in_ch, self.out_ch = in_ch, out_ch
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb_proj = nn.Linear(temb_ch, out_ch)
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        # Official checkpoints only ever carry the 1x1 shortcut; the 3x3
        # "conv_shortcut" variant is never instantiated, so it is not offered.
        if in_ch != out_ch:
            self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = h + self.temb_proj(swish(temb))[:, :, None, None]
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        skip = self.nin_shortcut(x) if self.in_ch != self.out_ch else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1-conv projections."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = group_norm(ch)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        n = self.norm(x)
        q = self.q(n).reshape(b, c, hh * ww)
        k = self.k(n).reshape(b, c, hh * ww)
        v = self.v(n).reshape(b, c, hh * ww)
        # scores[b, i, j]: query position i against key position j
        scores = torch.bmm(q.transpose(1, 2), k) * (int(c) ** -0.5)
        weights = torch.softmax(scores, dim=2)
        # out[b, c, i] = sum_j v[b, c, j] * weights[b, i, j]
        out = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, ch: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_conv:
            # Asymmetric zero pad (right and bottom only); this is what the
            # checkpoints were trained with and what diffusers' padding=0 mimics.
            return self.conv(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class Upsample(nn.Module):
    def __init__(self, ch: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


class _Level(nn.Module):
    """Container so that state-dict names come out as ``down.{i}.block.{j}``."""

    def __init__(self):
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Bag(nn.Module):
    """Plain attribute holder (``temb.dense``, ``mid.block_1``)."""


# --------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------

class DDIMUNet(nn.Module):
    def __init__(self, config: Any):
        super().__init__()
        f = model_fields(config)
        self.fields = f
        ch, ch_mult, nrb = f["ch"], f["ch_mult"], f["num_res_blocks"]
        attn_res, dropout, conv_resample = f["attn_resolutions"], f["dropout"], f["resamp_with_conv"]
        self.ch = ch
        self.temb_ch = 4 * ch
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = nrb
        self.resolution = f["resolution"]
        self.in_channels = f["in_channels"]
        self.out_ch = f["out_ch"]

        self.temb = _Bag()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, self.temb_ch), nn.Linear(self.temb_ch, self.temb_ch)])

        self.conv_in = nn.Conv2d(self.in_channels, ch, 3, padding=1)

        # Down path. Channel widths per level are ch*mult; each level's first
        # block widens from the previous level's width.
        res = self.resolution
        self.down = nn.ModuleList()
        skip_chs = [ch]  # channel counts of the tensors pushed on the skip stack
        cur = ch
        for lvl in range(self.num_resolutions):
            level = _Level()
            out = ch * ch_mult[lvl]
            for _ in range(nrb):
                level.block.append(ResnetBlock(cur, out, self.temb_ch, dropout))
                cur = out
                if res in attn_res:
                    level.attn.append(AttnBlock(cur))
                skip_chs.append(cur)
            if lvl != self.num_resolutions - 1:
                level.downsample = Downsample(cur, conv_resample)
                res //= 2
                skip_chs.append(cur)
            self.down.append(level)

        self.mid = _Bag()
        self.mid.block_1 = ResnetBlock(cur, cur, self.temb_ch, dropout)
        self.mid.attn_1 = AttnBlock(cur)
        self.mid.block_2 = ResnetBlock(cur, cur, self.temb_ch, dropout)

        # Up path, built from the lowest resolution upwards but stored so that
        # up[0] is the highest resolution (matches official key indices).
        ups: list[_Level] = []
        for lvl in reversed(range(self.num_resolutions)):
            level = _Level()
            out = ch * ch_mult[lvl]
            for _ in range(nrb + 1):
                level.block.append(ResnetBlock(cur + skip_chs.pop(), out, self.temb_ch, dropout))
                cur = out
                if res in attn_res:
                    level.attn.append(AttnBlock(cur))
            if lvl != 0:
                level.upsample = Upsample(cur, conv_resample)
                res *= 2
            ups.insert(0, level)
        assert not skip_chs
        self.up = nn.ModuleList(ups)

        self.norm_out = group_norm(cur)
        self.conv_out = nn.Conv2d(cur, self.out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float | int) -> torch.Tensor:
        if not torch.is_tensor(t):
            t = torch.full((x.shape[0],), float(t))
        elif t.dim() == 0:
            t = t.reshape(1).expand(x.shape[0])
        temb = timestep_embedding(t.to(x.device), self.ch)
        temb = self.temb.dense[1](swish(self.temb.dense[0](temb)))

        hs = [self.conv_in(x)]
        for lvl, level in enumerate(self.down):
            for j, block in enumerate(level.block):
                h = block(hs[-1], temb)
                if len(level.attn) > 0:
                    h = level.attn[j](h)
                hs.append(h)
            if lvl != self.num_resolutions - 1:
                hs.append(level.downsample(hs[-1]))

        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(hs[-1], temb)), temb)

        for lvl in reversed(range(self.num_resolutions)):
            level = self.up[lvl]
            for j, block in enumerate(level.block):
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
                if len(level.attn) > 0:
                    h = level.attn[j](h)
            if lvl != 0:
                h = level.upsample(h)

        return self.conv_out(swish(self.norm_out(h)))


# Alias under the official class name, for readers coming from that code base.
Model = DDIMUNet


# --------------------------------------------------------------------------
# schedules and sampler
# --------------------------------------------------------------------------

def get_beta_schedule(kind: str, beta_start: float, beta_end: float, T: int) -> np.ndarray:
    """Beta schedules of the official code, as float64 numpy arrays of length T."""
    if kind == "linear":
        betas = np.linspace(beta_start, beta_end, T, dtype=np.float64)
    elif kind == "quad":
        # linear in sqrt(beta), then squared
        betas = np.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=np.float64) ** 2
    elif kind == "const":
        betas = beta_end * np.ones(T, dtype=np.float64)
    elif kind == "jsd":
        # 1/T, 1/(T-1), ..., 1
        betas = 1.0 / np.linspace(T, 1, T, dtype=np.float64)
    elif kind == "sigmoid":
        s = np.linspace(-6, 6, T)
        betas = 1.0 / (np.exp(-s) + 1.0) * (beta_end - beta_start) + beta_start
    else:
        raise NotImplementedError(f"beta schedule {kind!r}")
    assert betas.shape == (T,)
    return betas


def alphas_cumprod_f32(betas: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Cumulative product of (1 - beta) in float32, as the sampler sees it."""
    b = torch.as_tensor(betas).float()
    return (1 - b).cumprod(dim=0)


def compute_alpha(betas: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """alpha_bar at integer steps t (t = -1 gives exactly 1), shaped [N,1,1,1].

    The sampler prepends beta=0 and recomputes the float32 cumprod every call;
    index t+1 then yields alpha_bar_t.
    """
    b = torch.cat([torch.zeros(1, dtype=betas.dtype, device=betas.device), betas], dim=0)
    return (1 - b).cumprod(dim=0).index_select(0, t + 1).view(-1, 1, 1, 1)


def uniform_seq(T: int, S: int) -> list[int]:
    """Official 'uniform' skip: range(0, T, T // S) (may give more than S steps)."""
    return list(range(0, T, T // S))


def quad_seq(T: int, S: int) -> list[int]:
    """Official 'quad' skip: int(linspace(0, sqrt(0.8 T), S)^2), duplicates kept."""
    return [int(s) for s in list(np.linspace(0, np.sqrt(T * 0.8), S) ** 2)]


@torch.no_grad()
def generalized_steps(
    x: torch.Tensor,
    seq: Sequence[int] | Iterable[int],
    model: nn.Module,
    betas: np.ndarray | torch.Tensor,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
):
    """DDIM sampler with the official semantics; returns (xs, x0_preds).

    ``xs`` starts with the input and has one entry per step; ``xs[-1]`` is the
    sample. No clipping of x0. Fresh noise is drawn every step even at eta=0,
    so the RNG stream does not depend on eta (``generator`` defaults to the
    global torch RNG, as in the official code).
    """
    seq = list(seq)
    b = torch.as_tensor(betas).float().to(x.device)
    n = x.shape[0]
    seq_next = [-1] + seq[:-1]
    xs = [x]
    x0_preds = []
    for i, j in zip(reversed(seq), reversed(seq_next)):
        t = torch.ones(n, device=x.device) * i
        t_next = torch.ones(n, device=x.device) * j
        a = compute_alpha(b, t.long())
        a_next = compute_alpha(b, t_next.long())
        xt = xs[-1]
        e = model(xt, t)
        x0 = (xt - e * (1 - a).sqrt()) / a.sqrt()
        x0_preds.append(x0)
        c1 = eta * ((1 - a / a_next) * (1 - a_next) / (1 - a)).sqrt()
        c2 = ((1 - a_next) - c1 ** 2).sqrt()
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        xs.append(a_next.sqrt() * x0 + c1 * z + c2 * e)
    return xs, x0_preds
