#!/usr/bin/env python3
"""onnxruntime (native, CPU) baseline for one forward pass of the DDIM noise-prediction net.

The onnxruntime twin of tools/bench_torch.py, with the same CLI shape:

    python3 tools/bench_ort.py --config models/emoji32.yml --model models/emoji32.safetensors \\
        --batch 1,8 --threads 1,2
    python3 tools/bench_ort.py --config cifar10 --batch 1 --threads 1,2,0

    --config   an official-layout YAML, or `cifar10` for tools/configs/cifar10.yml (the
               default, unless --model is a .safetensors file that carries its own)
    --model    weights (default: seeded random ones; timing does not depend on their values)
    --onnx     time this ONNX file (inputs x, t; output eps) instead of exporting one
    --batch    images per forward pass, comma-separated (default 8)
    --threads  intra-op threads, comma-separated (default 1); 0 is onnxruntime's default,
               one thread per physical core
    --spin     on (onnxruntime's default) or off: whether idle intra-op threads busy-wait
    --iters    timed passes (default 5)
    --warmup   untimed passes first (default 2)
    --seed     weight / input seed (default 0)

Without --onnx the network is exported by tools/export_onnx.py into a temporary folder and
checked against PyTorch there (exit 1 unless max|d| <= 1e-4 max|ref|), so what is timed is
known to be right.

Each session: intra_op_num_threads as given, inter_op_num_threads 1, ORT_SEQUENTIAL,
ORT_ENABLE_ALL graph optimizations, CPUExecutionProvider. Batches are the outer loop and
thread settings the inner one, so the settings compared for one batch run close in time.
Prints one JSON line per (batch, threads):

    {"impl": "onnxruntime", "config": ..., "threads": ..., "batch": ..., "median_ms": ...,
     "min_ms": ..., "times_ms": [...], "onnxruntime": "<version>", "providers": [...], "spin": ...}

and last {"best": {"<batch>": {"threads": ..., "median_ms": ...}, ...}}: the fastest setting
per batch by median, "onnxruntime at its best thread count".
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from export_onnx import TOLERANCE, InputError, check, export, load_model  # noqa: E402


def session(path: str, threads: int, spin: bool) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def input_shape(sess: ort.InferenceSession) -> tuple[int, int, int]:
    dims = sess.get_inputs()[0].shape  # ['N', C, H, W]
    if len(dims) != 4 or not all(isinstance(d, int) for d in dims[1:]):
        raise InputError(f"input x has shape {dims}; expected [N, C, H, W] with fixed C, H, W")
    return dims[1], dims[2], dims[3]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="default: --model's own config, else cifar10")
    ap.add_argument("--model", default=None)
    ap.add_argument("--onnx", default=None)
    ap.add_argument("--batch", default="8")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--spin", choices=("on", "off"), default="on")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        batches = [int(b) for b in a.batch.split(",")]
        threads = [int(t) for t in a.threads.split(",")]
    except ValueError:
        ap.error("--batch and --threads take comma-separated integers")
    if min(batches) < 1 or min(threads) < 0 or a.iters < 1:
        ap.error("batches and --iters must be >= 1, threads >= 0")
    config = a.config or (None if a.model or a.onnx else "cifar10")

    with tempfile.TemporaryDirectory(prefix="bench_ort_") as tmp:
        try:
            if a.onnx:
                if not Path(a.onnx).is_file():
                    raise InputError(f"{a.onnx}: no such ONNX file")
                path = a.onnx
            else:
                import torch

                net, _, label = load_model(a.model, config, a.model is None, a.seed)
                path = str(export(net, Path(tmp) / "model.onnx"))
                worst = max(r["rel"] for r in check(net, path, seed=a.seed))
                print(f"exported {label}: max|d| / max|ref| = {worst:.2e} against PyTorch "
                      f"{torch.__version__}", file=sys.stderr)
                if worst > TOLERANCE:
                    print("error: the export does not match PyTorch", file=sys.stderr)
                    return 1
                del net
            try:
                sessions = {t: session(path, t, a.spin == "on") for t in threads}
            except Exception as e:  # onnxruntime raises its own types for unreadable models
                raise InputError(f"{path}: onnxruntime cannot load it: {e}") from e
            c, h, w = input_shape(sessions[threads[0]])
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

        best: dict[str, dict] = {}
        rng = np.random.default_rng(a.seed)
        for batch in batches:
            feed = {"x": rng.standard_normal((batch, c, h, w), dtype=np.float32),
                    "t": np.linspace(0, 999, batch, dtype=np.float32)}
            for t in threads:
                sess, times = sessions[t], []
                for i in range(a.warmup + a.iters):
                    start = time.perf_counter()
                    sess.run(["eps"], feed)
                    if i >= a.warmup:
                        times.append((time.perf_counter() - start) * 1e3)
                row = {
                    "impl": "onnxruntime",
                    "config": config or a.model or a.onnx,
                    "threads": t,
                    "batch": batch,
                    "median_ms": round(statistics.median(times), 3),
                    "min_ms": round(min(times), 3),
                    "times_ms": [round(v, 3) for v in times],
                    "onnxruntime": ort.__version__,
                    "providers": sess.get_providers(),
                    "spin": a.spin == "on",
                }
                print(json.dumps(row), flush=True)
                if str(batch) not in best or row["median_ms"] < best[str(batch)]["median_ms"]:
                    best[str(batch)] = {"threads": t, "median_ms": row["median_ms"], "min_ms": row["min_ms"]}
        print(json.dumps({"best": best}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
