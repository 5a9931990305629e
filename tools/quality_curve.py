#!/usr/bin/env python3
"""Sample quality against training step, for deciding when a run has trained enough.

The loss curve flattens long before samples stop improving, and the official DDIM step (no
x0 clipping) is the first thing an undertrained epsilon-model gets wrong. So this scores each
kept snapshot (ckpt_<step>.pth, written by tools/train.py --keep-every) with the same metric
as the evaluation table: `ddim eval` SWD x10^3 on Laplacian pyramids, N samples, at a small
step count, with and without x0 clipping.

For each snapshot it
  1. exports the EMA weights to OUT/emoji32_<step>.safetensors (float32) with export_model.py,
  2. runs `ddim eval --work OUT/<step>[-clip]` (resumable; finished rows are reused),
and then writes OUT/quality.csv (step, clip, skip, steps, eta, swd, swd per pyramid level,
seconds) and prints it as a Markdown table.

Needs torch for the export (the venv that trains) and a built `ddim` binary.

Usage
  python tools/quality_curve.py --workdir /work/train --out /work/train/quality
  python tools/quality_curve.py --steps 10,50 --eta 0,1 --every 2000
"""

import argparse
import csv
import glob
import json
import os
import re
import subprocess
import sys

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)


def snapshots(workdir, every):
    found = []
    for path in glob.glob(os.path.join(workdir, "ckpt_*.pth")):
        m = re.fullmatch(r"ckpt_(\d+)\.pth", os.path.basename(path))
        if m and int(m.group(1)) % every == 0:
            found.append((int(m.group(1)), path))
    return sorted(found)


def export(ckpt, out):
    if os.path.exists(out):
        return
    cmd = [sys.executable, os.path.join(TOOLS, "export_model.py"), "--ckpt", ckpt,
           "--out", out, "--preview", "none"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def evaluate(ddim, model, work, a, clip):
    # No --config: the exported .yml beside the weights (and their metadata) describe them.
    cmd = [ddim, "eval", "--model", model, "--data", a.data,
           "--n", str(a.n), "--steps", a.steps, "--eta", a.eta, "--skip", "uniform",
           "--seed", str(a.seed), "--work", work, "--backend", a.backend]
    if clip:
        cmd.append("--clip")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rows = []
    with open(os.path.join(work, "rows.jsonl")) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a cut-off last line from a killed run
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="/work/train", help="where train.py keeps ckpt_<step>.pth")
    p.add_argument("--out", default=None, help="default: WORKDIR/quality")
    p.add_argument("--data", default=os.path.join(REPO, "data", "emoji32.png"))
    p.add_argument("--ddim", default=os.path.join(REPO, "target", "release", "ddim"))
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--steps", default="10", help="comma list of S")
    p.add_argument("--eta", default="0", help="comma list of eta")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--every", type=int, default=1000, help="score snapshots whose step is a multiple of this")
    p.add_argument("--since", type=int, default=0, help="skip snapshots before this step")
    a = p.parse_args()
    out = a.out or os.path.join(a.workdir, "quality")
    os.makedirs(out, exist_ok=True)
    if not os.access(a.ddim, os.X_OK):
        sys.exit(f"{a.ddim}: no ddim binary (cargo build --release, or pass --ddim)")

    table = []
    for step, ckpt in snapshots(a.workdir, a.every):
        if step < a.since:
            continue
        model = os.path.join(out, f"emoji32_{step:07d}.safetensors")
        export(ckpt, model)
        for clip in (False, True):
            work = os.path.join(out, f"{step:07d}" + ("-clip" if clip else ""))
            for r in evaluate(a.ddim, model, work, a, clip):
                levels = r["swd"]
                table.append({
                    "step": step, "clip": int(clip), "skip": r["skip"], "steps": r["steps"],
                    "eta": r["eta"], "swd": sum(levels) / len(levels),
                    "swd_32": levels[0], "swd_16": levels[1], "swd_8": levels[2],
                    "secs": r["secs"],
                })
            print(f"step {step} clip={clip}: done", file=sys.stderr)

    table.sort(key=lambda r: (r["step"], r["clip"], r["steps"], r["eta"]))
    with open(os.path.join(out, "quality.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]) if table else ["step"])
        w.writeheader()
        for r in table:
            w.writerow({k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in r.items()})
    print("| step | x0 | S | η | SWD ×10³ | 32 px | 16 px | 8 px |")
    print("|---|---|---|---|---|---|---|---|")
    for r in table:
        x0 = "clipped" if r["clip"] else "official"
        print(f"| {r['step']:,} | {x0} | {r['steps']} | {r['eta']:g} | {r['swd']:.1f} | "
              f"{r['swd_32']:.1f} | {r['swd_16']:.1f} | {r['swd_8']:.1f} |")


if __name__ == "__main__":
    main()
