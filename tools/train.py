#!/usr/bin/env python3
"""Train the ddim-webgpu noise-prediction UNet (DDPM epsilon objective) on CPU or CUDA.

The objective follows the DDPM / official ddim trainer:
  * x0 from the atlas, rescaled to [-1, 1] (x * 2 - 1), no augmentation
    (no horizontal flip: emoji contain text like "OK"/"NG"/"SOS" and
    directional glyphs; mirroring would teach mirrored text);
  * t antithetic: half the batch t ~ U{0..T-1}, the other half T-1-t;
  * e ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) e;
  * loss = plain MSE mean over pixels and batch. (The official trainer sums
    over pixels and averages over the batch, i.e. 3072x our loss at 32x32x3.
    With Adam this only matters through eps and the gradient clip, which is
    therefore looser here in relative terms.)
  * Adam(lr 2e-4, betas 0.9/0.999, eps 1e-8), linear lr warm-up, grad-norm
    clip 1.0, EMA of the weights (rate 0.9995 by default, with the usual
    min(rate, (1+n)/(10+n)) warm-up so early EMA weights are usable; disable
    with --no-ema-warmup to get the official constant-rate EMA).

Determinism / resume: all per-step randomness (batch indices, t, e, dropout)
is derived from (seed, step), so a resumed run sees exactly the data and
noise it would have seen without the interruption. Checkpoints hold weights,
EMA, optimizer state, step and the python/numpy/torch RNG states, and are
written atomically (tmp + rename) every --ckpt-every steps and on
SIGTERM/SIGINT. SIGSTOP/SIGCONT are harmless (the ETA uses a median of
recent step times).

Examples
  python tools/train.py --steps 30000 --batch 64                 # fresh run in /work/train
  python tools/train.py --resume                                 # continue it
  python tools/train.py --export models/emoji32.safetensors      # EMA weights + yml + preview
  python tools/train.py --bench 8 --batch 32                     # time 8 steps, write nothing
  python tools/train.py --resume --device cuda --time-limit 600  # ten minutes on a GPU, then checkpoint

On CUDA the batch indices, t and e are still drawn on the CPU from (seed, step),
so a run that moves between CPU and GPU sees the same data and noise; only the
arithmetic (cuDNN kernels, TF32 convolutions) differs.
"""

import os

# Must happen before torch is imported: with spin-waiting OpenMP threads a
# 2-thread torch collapses as soon as another process wants a core.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import collections  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

from ddim_model import Model, get_beta_schedule, load_config  # noqa: E402

DEFAULT_CONFIG = os.path.join(REPO_ROOT, "models", "emoji32.yml")
DEFAULT_DATA = os.path.join(REPO_ROOT, "data", "emoji32.png")
CKPT_NAME = "ckpt.pth"

# Hyper-parameters that define the run; on --resume they come from the
# checkpoint, and giving a different value on the command line is an error.
LOCKED = ("config", "data", "batch", "seed", "lr", "warmup", "ema_rate", "ema_warmup", "grad_clip")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------

def load_atlas(png_path):
    """Read an atlas written by prepare_emoji.py -> uint8 tensor [N, 3, tile, tile]."""
    from PIL import Image

    json_path = os.path.splitext(png_path)[0] + ".json"
    with open(json_path) as f:
        meta = json.load(f)
    tile, cols, n = int(meta["tile"]), int(meta["columns"]), int(meta["count"])
    img = np.asarray(Image.open(png_path).convert("RGB"))
    rows = (n + cols - 1) // cols
    if img.shape[0] < rows * tile or img.shape[1] != cols * tile:
        raise ValueError(f"{png_path}: size {img.shape[1]}x{img.shape[0]} does not fit "
                         f"{n} tiles of {tile}px in {cols} columns")
    grid = img[:rows * tile].reshape(rows, tile, cols, tile, 3).transpose(0, 2, 4, 1, 3)
    x = grid.reshape(rows * cols, 3, tile, tile)[:n]
    with open(png_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return torch.from_numpy(np.ascontiguousarray(x)), meta, digest


def step_seed(seed, step, stream):
    """A 63-bit seed for (run seed, step, stream) -- independent of history."""
    ss = np.random.SeedSequence([seed & 0xFFFFFFFF, step, stream])
    return int(ss.generate_state(1, dtype=np.uint64)[0]) & ((1 << 63) - 1)


class Sampler:
    """Epoch-wise shuffling without replacement; batch of step s is a pure
    function of (seed, s)."""

    def __init__(self, n, batch, seed):
        self.n, self.batch, self.seed = n, batch, seed
        self._cache = {}

    def _perm(self, epoch):
        if epoch not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, 0x5EED, epoch])))
            self._cache[epoch] = rng.permutation(self.n)
        return self._cache[epoch]

    def indices(self, step):
        start = step * self.batch
        out = []
        while len(out) < self.batch:
            epoch, off = divmod(start + len(out), self.n)
            take = min(self.batch - len(out), self.n - off)
            out.extend(self._perm(epoch)[off:off + take].tolist())
        return torch.tensor(out, dtype=torch.long)


# ----------------------------------------------------------------------------
# model helpers
# ----------------------------------------------------------------------------

class EMA:
    def __init__(self, model, rate, warmup):
        self.rate, self.warmup = rate, warmup
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    def decay(self, num_updates):
        if self.warmup:
            return min(self.rate, (1.0 + num_updates) / (10.0 + num_updates))
        return self.rate

    @torch.no_grad()
    def update(self, model, num_updates):
        d = self.decay(num_updates)
        floats, targets = [], []
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                floats.append(v.detach())
                targets.append(self.shadow[k])
            else:
                self.shadow[k].copy_(v)
        # One fused launch per op instead of two per tensor: on a GPU the per-tensor
        # loop cost more than the optimizer step.
        torch._foreach_mul_(targets, d)
        torch._foreach_add_(targets, floats, alpha=1.0 - d)

    def state_dict(self):
        return self.shadow

    def load_state_dict(self, sd):
        for k in self.shadow:
            self.shadow[k].copy_(sd[k])


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def build(cfg):
    model = Model(cfg)
    d = cfg["diffusion"]
    betas = get_beta_schedule(d["beta_schedule"], float(d["beta_start"]), float(d["beta_end"]),
                              int(d["num_diffusion_timesteps"]))
    return model, betas


def to_cpu(obj):
    """Checkpoints always hold CPU tensors, so they load anywhere without map_location."""
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def atomic_save(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fmt_time(s):
    if not math.isfinite(s):
        return "?"
    s = int(s)
    h, r = divmod(s, 3600)
    m, s = divmod(r, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


# ----------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=DEFAULT_CONFIG, help="official-layout YAML (default models/emoji32.yml)")
    p.add_argument("--data", default=DEFAULT_DATA, help="atlas PNG (its .json must sit next to it)")
    p.add_argument("--workdir", default="/work/train")
    p.add_argument("--steps", type=int, default=None, help="total steps (default: training.n_iters of the yml)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: training.batch_size)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--lr", type=float, default=None, help="default: optim.lr")
    p.add_argument("--warmup", type=int, default=None, help="linear lr warm-up steps (default: training.warmup or 500)")
    p.add_argument("--ema-rate", type=float, default=None, help="default: model.ema_rate")
    p.add_argument("--no-ema-warmup", dest="ema_warmup", action="store_false", default=True,
                   help="constant-rate EMA from step 0 (official behaviour)")
    p.add_argument("--grad-clip", type=float, default=None, help="default: optim.grad_clip")
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--keep-every", type=int, default=5000,
                   help="also keep a copy ckpt_<step>.pth every this many steps (0: never)")
    p.add_argument("--log-every", type=int, default=10, help="progress line period in steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="torch device to train on: cpu, cuda, cuda:1, ...")
    p.add_argument("--time-limit", type=float, default=None, metavar="SEC",
                   help="checkpoint and exit (resumable) once this many seconds have passed")
    p.add_argument("--low-priority", action="store_true",
                   help="nice 19, and if this process leads its own session (start it with `setsid`) also "
                        "set its scheduler autogroup to nice 19 -- with autogroups enabled plain nice only "
                        "ranks processes within one session, so it would not yield to compiles elsewhere")
    p.add_argument("--pidfile", default=None, help="write this process's PID here")
    p.add_argument("--resume", action="store_true", help="continue from WORKDIR/ckpt.pth")
    p.add_argument("--fresh", action="store_true", help="start over even if WORKDIR has a checkpoint")
    p.add_argument("--bench", type=int, default=0, metavar="N",
                   help="time N training steps (after 2 warm-up steps) and exit; writes nothing")
    p.add_argument("--export", default=None, metavar="OUT.safetensors",
                   help="export the EMA weights of WORKDIR/ckpt.pth and exit (see tools/export_model.py)")
    p.add_argument("--half", action="store_true", help="with --export: store float16")
    p.add_argument("--preview", default=None, metavar="PNG",
                   help="with --export: sample grid path (default OUT_preview.png; 'none' to skip)")
    args = p.parse_args(argv)
    # Which options were given explicitly (to detect conflicts on --resume).
    q = argparse.ArgumentParser(add_help=False)
    for a in p._actions:
        if a.option_strings and a.dest != "help":
            q.add_argument(*a.option_strings, dest=a.dest, default=argparse.SUPPRESS,
                           **({"action": a.__class__} if a.nargs == 0 else {"nargs": a.nargs}))
    args.explicit = set(vars(q.parse_known_args(argv)[0]).keys())
    return args


def fill_defaults(args, cfg):
    tr = cfg.get("training", {}) or {}
    op = cfg.get("optim", {}) or {}
    md = cfg.get("model", {}) or {}
    if args.steps is None:
        args.steps = int(tr.get("n_iters", 30000))
    if args.batch is None:
        args.batch = int(tr.get("batch_size", 64))
    if args.lr is None:
        args.lr = float(op.get("lr", 2e-4))
    if args.warmup is None:
        args.warmup = int(tr.get("warmup", 500))
    if args.ema_rate is None:
        args.ema_rate = float(md.get("ema_rate", 0.9995))
    if args.grad_clip is None:
        args.grad_clip = float(op.get("grad_clip", 1.0))


def lower_priority():
    try:
        os.nice(19 - os.nice(0))
    except OSError:
        pass
    if os.getsid(0) == os.getpid():  # own session => own autogroup, safe to renice it
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write("19")
        except OSError:
            pass
    try:
        with open("/proc/self/autogroup") as f:
            ag = f.read().strip()
    except OSError:
        ag = "n/a"
    log(f"priority: nice {os.nice(0)}, {ag}")


def train(args):
    if args.low_priority:
        lower_priority()
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest conv once
    t_start = time.time()
    os.makedirs(args.workdir, exist_ok=True)
    ckpt_path = os.path.join(args.workdir, CKPT_NAME)

    ckpt = None
    if args.resume:
        if not os.path.exists(ckpt_path):
            raise SystemExit(f"--resume: no checkpoint at {ckpt_path}")
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        saved = ckpt["args"]
        for k in LOCKED:
            if k in ("config", "data"):
                # a path may be given anew; the content is checked below
                if k not in args.explicit:
                    setattr(args, k, saved[k])
                continue
            if k in args.explicit and getattr(args, k) != saved[k]:
                raise SystemExit(f"--resume: --{k.replace('_', '-')} {getattr(args, k)} differs from "
                                 f"the checkpoint's {saved[k]}")
            setattr(args, k, saved[k])
        if "steps" not in args.explicit:
            args.steps = saved["steps"]
    elif os.path.exists(ckpt_path) and not args.fresh and not args.bench:
        raise SystemExit(f"{ckpt_path} exists: use --resume to continue or --fresh to start over")

    cfg = load_config(args.config)
    fill_defaults(args, cfg)
    if ckpt is not None and ckpt.get("config_text") is not None:
        with open(args.config) as f:
            if f.read() != ckpt["config_text"]:
                log(f"warning: {args.config} changed since the checkpoint was written; using the "
                    f"checkpoint's copy")
        import yaml
        cfg = yaml.safe_load(ckpt["config_text"])

    data, meta, data_sha = load_atlas(args.data)
    if ckpt is not None and ckpt.get("data_sha256") not in (None, data_sha):
        raise SystemExit(f"--resume: {args.data} differs from the atlas the run started with")
    n_img = data.shape[0]
    if data.shape[-1] != int(cfg["data"]["image_size"]):
        raise SystemExit(f"atlas tile {data.shape[-1]} != data.image_size {cfg['data']['image_size']}")

    # Initial weights depend on the seed only (overwritten on --resume).
    random.seed(args.seed)
    np.random.seed(args.seed & 0xFFFFFFFF)
    torch.manual_seed(args.seed)
    model, betas_np = build(cfg)
    model.to(device)
    betas = torch.from_numpy(betas_np).float()
    T = betas.shape[0]
    abar = (1.0 - betas).cumprod(dim=0)
    sqrt_abar, sqrt_1m_abar = abar.sqrt(), (1.0 - abar).sqrt()

    n_params = count_params(model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(float(cfg["optim"].get("beta1", 0.9)), 0.999),
                           eps=float(cfg["optim"].get("eps", 1e-8)),
                           weight_decay=float(cfg["optim"].get("weight_decay", 0.0)),
                           amsgrad=bool(cfg["optim"].get("amsgrad", False)))
    ema = EMA(model, args.ema_rate, args.ema_warmup)
    step = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        rs = ckpt.get("rng") or {}
        if "python" in rs:
            random.setstate(rs["python"])
        if "numpy" in rs:
            np.random.set_state(rs["numpy"])
        if "torch" in rs:
            torch.set_rng_state(rs["torch"])
    sampler = Sampler(n_img, args.batch, args.seed)
    log(f"model: {n_params:,} params | data: {n_img} images {tuple(data.shape[1:])} from {args.data} | "
        f"batch {args.batch} | T={T} | lr {args.lr} warm-up {args.warmup} | EMA {args.ema_rate}"
        f"{' (warm-up)' if args.ema_warmup else ''} | clip {args.grad_clip} | threads {torch.get_num_threads()} "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} | device {device}"
        f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''} | "
        f"start step {step} -> {args.steps}")

    config_text = open(args.config).read() if ckpt is None else ckpt.get("config_text")
    run_args = {k: getattr(args, k) for k in LOCKED + ("steps",)}

    def save(path=ckpt_path):
        atomic_save({
            "model": to_cpu(model.state_dict()),
            "ema": to_cpu(ema.state_dict()),
            "optimizer": to_cpu(opt.state_dict()),
            "step": step,
            "args": run_args,
            "config_text": config_text,
            "data_sha256": data_sha,
            "n_params": n_params,
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                    "torch": torch.get_rng_state()},
            "time": time.time(),
        }, path)

    stop = {"sig": None}

    def on_signal(signum, _frame):
        stop["sig"] = signum
        log(f"signal {signum}: will checkpoint after this step and exit")

    if not args.bench:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # loss.csv: drop rows past the checkpoint (they will be recomputed identically).
    csv_path = os.path.join(args.workdir, "loss.csv")
    csv = None
    if not args.bench:
        rows = []
        if ckpt is not None and os.path.exists(csv_path):
            with open(csv_path) as f:
                for line in f:
                    head = line.split(",", 1)[0]
                    if head.isdigit() and int(head) > step:
                        continue
                    rows.append(line)
        with open(csv_path + ".tmp", "w") as f:
            f.writelines(rows if rows else ["step,loss,lr,grad_norm,sec\n"])
        os.replace(csv_path + ".tmp", csv_path)
        csv = open(csv_path, "a", buffering=1)

    model.train()
    times = collections.deque(maxlen=50)
    run_loss = None
    bench_times = []
    end = args.steps if not args.bench else step + args.bench + 2
    t_last_ckpt = time.time()
    while step < end:
        t0 = time.perf_counter()
        idx = sampler.indices(step)
        gen = torch.Generator().manual_seed(step_seed(args.seed, step, 1))
        x0 = data[idx].float() / 127.5 - 1.0
        b = x0.shape[0]
        t = torch.randint(0, T, (b // 2 + 1,), generator=gen)
        t = torch.cat([t, T - 1 - t])[:b]
        e = torch.randn(x0.shape, generator=gen)
        xt = sqrt_abar[t].view(-1, 1, 1, 1) * x0 + sqrt_1m_abar[t].view(-1, 1, 1, 1) * e
        torch.manual_seed(step_seed(args.seed, step, 2))  # dropout masks
        xt, e = xt.to(device, non_blocking=True), e.to(device, non_blocking=True)
        out = model(xt, t.float().to(device))
        loss = (out - e).square().mean()

        lr = args.lr * min(1.0, (step + 1) / max(1, args.warmup))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip))
        opt.step()
        ema.update(model, step)
        step += 1
        dt = time.perf_counter() - t0
        lv = float(loss.detach())
        if not math.isfinite(lv):
            raise SystemExit(f"non-finite loss at step {step}")

        if args.bench:
            bench_times.append(dt)
            log(f"bench step {len(bench_times)}: {dt:.3f} s (loss {lv:.4f})")
            continue

        times.append(dt)
        run_loss = lv if run_loss is None else 0.98 * run_loss + 0.02 * lv
        csv.write(f"{step},{lv:.6f},{lr:.3e},{gnorm:.4f},{dt:.3f}\n")
        if step % args.log_every == 0 or step == end:
            sps = statistics.median(times)
            log(f"step {step}/{args.steps} loss {run_loss:.4f} (last {lv:.4f}) gnorm {gnorm:.3f} "
                f"lr {lr:.2e} | {1.0 / sps:.3f} it/s {sps:.2f} s/step | ETA {fmt_time((args.steps - step) * sps)}")
        if args.time_limit is not None and stop["sig"] is None and time.time() - t_start >= args.time_limit:
            stop["sig"] = "time limit"
            log(f"--time-limit {args.time_limit:g} s reached")
        if step % args.ckpt_every == 0 or step == end or stop["sig"] is not None:
            save()
            if args.keep_every and step % args.keep_every == 0:
                save(os.path.join(args.workdir, f"ckpt_{step:07d}.pth"))
            log(f"checkpoint step {step} -> {ckpt_path} ({time.time() - t_last_ckpt:.0f} s since last)")
            t_last_ckpt = time.time()
        if stop["sig"] is not None:
            log(f"stopped ({stop['sig']}) at step {step}; resume with --resume")
            csv.close()
            return 0

    if args.bench:
        m = bench_times[2:]
        log(f"bench batch {args.batch}: median {statistics.median(m):.3f} s/step over {len(m)} steps "
            f"(min {min(m):.3f}, max {max(m):.3f}); warm-up steps {bench_times[0]:.2f}, {bench_times[1]:.2f}; "
            f"loadavg {os.getloadavg()}")
        return 0
    csv.close()
    log(f"done: step {step}")
    return 0


def main():
    args = parse_args()
    if args.export:
        from export_model import export
        export(os.path.join(args.workdir, CKPT_NAME), args.export, half=args.half, preview=args.preview,
               threads=args.threads)
        return 0
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
