#!/usr/bin/env bash
# Interleaved CPU benchmark: our forward pass against PyTorch's on the same config and batch,
# alternating so both see the same machine load. Prints one line per run and the ratios.
# Usage: tools/bench_cpu_vs_torch.sh [config] [batch] [rounds]   (needs python with torch)
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=${1:-tools/configs/cifar10.yml}; batch=${2:-8}; rounds=${3:-3}
py=${PYTHON:-python3}
cargo build --release -q
for r in $(seq "$rounds"); do
  for th in 1 2; do
    echo "round $r threads $th load $(cut -d' ' -f1 /proc/loadavg)"
    t=$(OMP_WAIT_POLICY=PASSIVE "$py" tools/bench_torch.py --config "$cfg" --batch "$batch" --threads "$th" --iters 5 2>/dev/null | tail -1)
    o=$(RAYON_NUM_THREADS=$th ./target/release/ddim bench --config "$cfg" --batch "$batch" --iters 5 --json)
    python3 - "$t" "$o" <<'PY'
import json, sys
t, o = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"  torch {t['median_ms']:8.1f} ms   ddim {o['median_ms']:8.1f} ms   ratio {o['median_ms'] / t['median_ms']:.2f}")
PY
  done
done
