#!/usr/bin/env bash
# Build the fuzz targets with libFuzzer's coverage instrumentation on the stable toolchain,
# then run each for SECONDS (default 300), one at a time on one core, niced.
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]
#   bash fuzz/run.sh build          (only build)
#
# New inputs go to fuzz/work/TARGET (kept between runs, not committed; the seeds in
# fuzz/corpus/TARGET are only read), crashes to fuzz/artifacts/TARGET, each full log to
# fuzz/work/TARGET.log. Replay one input with: fuzz/target/<host>/release/TARGET FILE
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-300}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(safetensors npy config config_fields model png torch)
fi

host=$(rustc -vV | sed -n 's/^host: //p')
# Our own target folder: these flags must not touch the main build's cache.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
# What cargo-fuzz passes, less -Zsanitizer (nightly only): libFuzzer's edge counters, its
# PC table and comparison tracing. Naming --target keeps the flags off build scripts and
# proc macros, which must not be instrumented.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  -Cdebug-assertions -Coverflow-checks"
nice -n 19 cargo build --release --target "$host" --bins
if [ "$secs" = build ]; then exit 0; fi

# fuzz/src/lib.rs enforces the 512 MiB allocation cap itself; libFuzzer's own
# -malloc_limit_mb needs a sanitizer's malloc hooks, so here it is a record of the contract.
bin=$CARGO_TARGET_DIR/$host/release
printf '\n%-12s %8s %12s %8s %8s %7s  %s\n' target seconds executions cov ft corpus result
failed=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  start=$(date +%s)
  rc=0
  # Keys and edge numbers: byte mutation alone rarely writes a 12-digit count.
  dict=()
  if [ -f "dict/$t.dict" ]; then dict=(-dict="dict/$t.dict"); fi
  nice -n 19 "$bin/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=512 -print_final_stats=1 -artifact_prefix="artifacts/$t/" "${dict[@]}" \
    "work/$t" "corpus/$t" > "work/$t.log" 2>&1 || rc=$?
  took=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "work/$t.log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "work/$t.log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    failed=1
    found=$(ls -t "artifacts/$t" 2>/dev/null | head -1)
    result="FAILED (exit $rc): artifacts/$t/${found:-?}, log work/$t.log"
  fi
  line=$(printf '%-12s %8s %12s %8s %8s %7s  %s' "$t" "$took" "${execs:-?}" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}" "$result")
  echo "$line"
  summary+=("$line")
done
printf '\n%s\n' "${summary[@]}" > work/last-run.txt
exit $failed
