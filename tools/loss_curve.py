#!/usr/bin/env python3
"""The training record for a model card: a binned loss table and an SVG loss curve.

Reads the per-step log that tools/train.py appends (loss.csv: step, loss, lr, grad norm,
seconds) and writes
  OUT.csv  one row per --bin steps: last step, mean loss, mean seconds per step
  OUT.svg  that mean loss against the step, log scale, no plotting library needed
and prints the step count and the summed step time. Standard library only.

Usage: python tools/loss_curve.py --log /work/train/loss.csv --out models/emoji32_loss
"""

import argparse
import csv
import math


def read_log(path):
    rows = {}
    with open(path) as f:
        for r in csv.reader(f):
            if not r or not r[0].strip().isdigit():
                continue
            # A resumed run may repeat steps after its last checkpoint; keep the latest.
            rows[int(r[0])] = (float(r[1]), float(r[4]))
    return [(s, *rows[s]) for s in sorted(rows)]


def binned(rows, size):
    out = []
    for i in range(0, len(rows), size):
        chunk = rows[i:i + size]
        out.append((chunk[-1][0], sum(r[1] for r in chunk) / len(chunk), sum(r[2] for r in chunk) / len(chunk)))
    return out


def svg(points, title, w=640, h=320, pad=48):
    xs = [p[0] for p in points]
    ys = [math.log10(p[1]) for p in points]
    x0, x1 = 0, max(xs)
    y0, y1 = math.floor(min(ys) * 10) / 10, math.ceil(max(ys) * 10) / 10
    sx = lambda x: pad + (x - x0) / max(1, x1 - x0) * (w - 2 * pad)  # noqa: E731
    sy = lambda y: h - pad - (y - y0) / max(1e-9, y1 - y0) * (h - 2 * pad)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             f'font-size="11"><rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>']
    for k in range(int(math.floor(y0)), int(math.ceil(y1)) + 1):
        for m in (1, 2, 5):
            v = math.log10(m * 10.0 ** k)
            if y0 <= v <= y1:
                parts.append(f'<line x1="{pad}" x2="{w - pad}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#ddd"/>'
                             f'<text x="{pad - 4}" y="{sy(v) + 4:.1f}" text-anchor="end">{m * 10.0 ** k:g}</text>')
    step = 10 ** max(0, int(math.log10(max(1, x1))))
    if x1 / step < 4:
        step //= 2 if step >= 2 else 1
    for x in range(0, x1 + 1, max(1, step)):
        parts.append(f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{pad}" y2="{h - pad}" stroke="#eee"/>'
                     f'<text x="{sx(x):.1f}" y="{h - pad + 14}" text-anchor="middle">{x}</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(zip(xs, ys)))
    parts.append(f'<path d="{path}" fill="none" stroke="#1f6feb" stroke-width="1.5"/>')
    parts.append(f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">training step</text>')
    parts.append(f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" text-anchor="middle">'
                 f'ε-MSE (mean per bin, log scale)</text></svg>')
    return "\n".join(parts) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log", default="/work/train/loss.csv")
    p.add_argument("--out", required=True, help="OUT (writes OUT.csv and OUT.svg)")
    p.add_argument("--bin", type=int, default=50, help="steps per point")
    a = p.parse_args()
    rows = read_log(a.log)
    if not rows:
        raise SystemExit(f"{a.log}: no training steps")
    pts = binned(rows, a.bin)
    with open(a.out + ".csv", "w") as f:
        f.write("step,loss_mean,seconds_per_step\n")
        for s, l, t in pts:
            f.write(f"{s},{l:.5f},{t:.3f}\n")
    with open(a.out + ".svg", "w") as f:
        f.write(svg(pts, f"training loss, {rows[-1][0]} steps of batch 64"))
    hours = sum(r[2] for r in rows) / 3600
    print(f"{len(rows)} steps (last {rows[-1][0]}), {hours:.2f} h of step time, "
          f"last {a.bin}-step mean loss {pts[-1][1]:.4f}; wrote {a.out}.csv and {a.out}.svg")


if __name__ == "__main__":
    main()
