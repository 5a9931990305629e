"""Sample N images on a Ray cluster: one Ray task per shard, each running `ddim sample
--shard I/N` into one shared folder, then `ddim pack` into a single .npz.

Usage:

    # on any node of a running cluster (`ray start --head` / `ray start --address=...`):
    python tools/cluster/ray_sample.py --ddim /shared/bin/ddim --out /shared/cifar10-50k \\
        --shards 50 --cpus-per-shard 8 -- --model /shared/cifar10.safetensors --n 50000 \\
        --steps 100 --batch 64

    # on this machine alone, with a throwaway local cluster:
    python tools/cluster/ray_sample.py --local --ddim target/release/ddim --out /tmp/s \\
        --shards 2 --cpus-per-shard 1 -- --n 64 --steps 10 --batch 16

Everything after `--` goes to `ddim sample` unchanged; give --batch, so that every shard
uses the same batches whatever machine it lands on. The folder (and the binary) must be
visible at the same path on every node. A failed task is retried by Ray (max_retries); a
retried shard redoes only the batches it had not finished.

Needs `pip install ray`; nothing else in the project depends on it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ddim", default="ddim", help="the ddim binary, same path on every node")
    ap.add_argument("--out", required=True, help="shared folder for the PNGs")
    ap.add_argument("--shards", type=int, required=True)
    ap.add_argument("--cpus-per-shard", type=float, default=1.0)
    ap.add_argument("--gpus-per-shard", type=float, default=0.0)
    ap.add_argument("--local", action="store_true", help="start a local Ray instead of joining one")
    ap.add_argument("--no-pack", action="store_true", help="skip the final `ddim pack`")
    args = ap.parse_args(argv)
    if args.shards < 1:
        ap.error("--shards must be at least 1")
    if any(a == "--shard" or a.startswith("--shard=") for a in extra):
        ap.error("the script sets --shard itself")

    import ray  # imported late so --help works without Ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.local:
        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address="auto", log_to_driver=False)

    threads = str(max(1, int(args.cpus_per_shard)))

    @ray.remote(num_cpus=args.cpus_per_shard, num_gpus=args.gpus_per_shard, max_retries=2)
    def shard(i: int) -> tuple[int, float, int, str]:
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        cmd = [args.ddim, "sample", *extra, "--out", args.out, "--shard", f"{i}/{args.shards}"]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        return i, time.perf_counter() - t0, p.returncode, p.stderr[-2000:]

    t0 = time.perf_counter()
    pending = [shard.remote(i) for i in range(args.shards)]
    failed = []
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        i, secs, rc, err = ray.get(done[0])
        last = err.strip().splitlines()[-1] if err.strip() else ""
        print(f"shard {i}/{args.shards}: exit {rc} in {secs:.1f} s  {last}", flush=True)
        if rc != 0:
            failed.append(i)
            print(err, file=sys.stderr)
    wall = time.perf_counter() - t0
    print(f"{args.shards} shards in {wall:.1f} s wall", flush=True)
    ray.shutdown()
    if failed:
        print(f"failed shards: {failed}; rerun this command to redo only them", file=sys.stderr)
        return 1
    if not args.no_pack:
        p = subprocess.run([args.ddim, "pack", args.out, "--out", args.out.rstrip("/") + ".npz"])
        return p.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
