#!/usr/bin/env bash
# The whole GPU story in one command, for a Linux machine with a GPU: the adapters, the GPU
# test suite on the real adapter, `ddim bench` on emoji32 and CIFAR-10 (JSON, then once more
# with --profile for the per-kernel tables) and, where python3 has torch with CUDA, PyTorch on
# the same configs right after ours. One Markdown report, OUT_DIR/report.md, links every log.
#
# Usage: bash tools/gpu_check.sh [OUT_DIR]            (default OUT_DIR: gpu-check-out)
#
# Environment:
#   DDIM_BIN          a prebuilt ddim (default target/release/ddim, built with cargo if missing)
#   DDIM_GPU_TESTS    a prebuilt GPU test binary (cargo test --release --test gpu); without it
#                     and without cargo the tests step is reported as skipped
#   DDIM_NO_CARGO=1   never call cargo, even where it is installed
#   DDIM_TUNE         --tune value for ddim bench (default quick; off in quick mode), if the
#                     binary knows --tune
#   DDIM_PRECISIONS   precisions to bench, space- or comma-separated (default "f32 mixed";
#                     f32 in quick mode), passed as --precision P if the binary knows it
#   DDIM_CHECK_QUICK=1  tiny run for a software adapter (lavapipe): batch 1,2, 3 sample steps,
#                     2 iterations, emoji32 and tests/fixtures/tiny only
#   DDIM_CONFIGS      override the configs (space-separated paths)
#   DDIM_PROFILE_BATCHES  batches of the --profile run (default: the same; the kernel table is
#                     for the first one)
#   DDIM_CHECK_BUDGET seconds all timed steps may take together (default 440, so the whole
#                     run stays under 8 minutes; quick 900); a step is cut to what is left
#   DDIM_TORCH_DEVICE device for tools/bench_torch.py (default cuda; cpu to try the path)
#   DDIM_TORCH_TF32   on, off or default (default): bench_torch.py's --tf32
#   PYTHON            the Python with torch (default python3)
#
# Every step runs under `timeout` and the script carries on after a failure; the report says
# which steps failed. Exit status 0 whenever a report was written, 2 when nothing could run.
# Build time (cargo, only where no prebuilt binary is given) is not part of the budget.
set -u

start_epoch=$(date +%s)
out_arg=${1:-gpu-check-out}
mkdir -p "$out_arg" || { echo "gpu_check: cannot create $out_arg" >&2; exit 2; }
OUT=$(cd "$out_arg" && pwd)
# Binaries given by relative path or by name resolve from the caller's directory and PATH.
caller=$PWD
resolve() {
  case $1 in
    "") echo "" ;;
    /*) echo "$1" ;;
    */*) echo "$caller/$1" ;;
    *) command -v "$1" 2>/dev/null || echo "$caller/$1" ;;
  esac
}
DDIM_BIN=$(resolve "${DDIM_BIN:-}")
DDIM_GPU_TESTS=$(resolve "${DDIM_GPU_TESTS:-}")
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
LOGS=$OUT/logs
rm -rf "$LOGS"
mkdir -p "$LOGS"
REPORT=$OUT/report.md
rm -f "$REPORT"
STEPS=$LOGS/steps.tsv
: > "$STEPS"
PY=${PYTHON:-python3}

case ${DDIM_CHECK_QUICK:-0} in ""|0) quick=0 ;; *) quick=1 ;; esac
if [ "$quick" = 1 ]; then
  batches=1,2; steps=3; iters=2; warmup=1; t_iters=2; t_warmup=1
  configs=${DDIM_CONFIGS:-"models/emoji32.yml tests/fixtures/tiny/config.yml"}
  to_info=60; to_tests=300; to_bench=240; to_profile=180; to_torch=120; to_probe=60
  budget=${DDIM_CHECK_BUDGET:-900}
else
  batches=1,8,64; steps=50; iters=10; warmup=2; t_iters=20; t_warmup=3
  configs=${DDIM_CONFIGS:-"models/emoji32.yml tools/configs/cifar10.yml"}
  to_info=20; to_tests=150; to_bench=90; to_profile=45; to_torch=60; to_probe=30
  budget=${DDIM_CHECK_BUDGET:-440}
fi
profile_batches=${DDIM_PROFILE_BATCHES:-$batches}
# Quick mode is for software adapters, where tuning costs minutes and means nothing.
if [ "$quick" = 1 ]; then tune=${DDIM_TUNE:-off}; else tune=${DDIM_TUNE:-quick}; fi
# Both precisions on a real GPU (mixed: tensor cores where the adapter has them; the bench's
# log says which mode ran); a software adapter has no tensor cores to show.
if [ "$quick" = 1 ]; then default_precisions=f32; else default_precisions="f32 mixed"; fi
precisions=$(echo "${DDIM_PRECISIONS:-$default_precisions}" | tr ',' ' ')
torch_device=${DDIM_TORCH_DEVICE:-cuda}
torch_tf32=${DDIM_TORCH_TF32:-default}

# wgpu's Vulkan and GL paths complain (and some drivers fail) without a runtime dir.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR:-}" ]; then
  XDG_RUNTIME_DIR=/tmp/xdg-$(id -u)
  export XDG_RUNTIME_DIR
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

hdr() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }
have() { command -v "$1" >/dev/null 2>&1; }
have_cargo=0
if [ "${DDIM_NO_CARGO:-0}" != 1 ] && have cargo; then have_cargo=1; fi
have_py=0
have "$PY" && have_py=1

# record NAME STATUS SECONDS LOG NOTE: one line of the steps table.
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$STEPS"; }

# step NAME LOGFILE TIMEOUT CMD...: runs CMD under timeout (capped by what is left of the
# budget), output to the terminal and LOGFILE; records ok / failed / timed out.
deadline=0
step() {
  local name=$1 log=$2 limit=$3; shift 3
  hdr "$name"
  local left=$(( deadline - $(date +%s) ))
  if [ "$deadline" -gt 0 ] && [ "$left" -lt 10 ]; then
    echo "skipped: the ${budget} s budget is spent"
    record "$name" "skipped" 0 "" "time budget spent"
    return 99
  fi
  if [ "$deadline" -gt 0 ] && [ "$limit" -gt "$left" ]; then limit=$left; fi
  printf '$ %s\n(timeout %s s, started %s)\n\n' "$*" "$limit" "$(date '+%F %T')" > "$log"
  local t0 rc secs status
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  secs=$(( $(date +%s) - t0 ))
  case $rc in
    0) status=ok ;;
    124|137) status="TIMED OUT after ${limit} s" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  printf '\n(exit %s after %s s)\n' "$rc" "$secs" >> "$log"
  echo "-> $status in ${secs} s (log: ${log#"$OUT"/})"
  record "$name" "$status" "$secs" "${log#"$OUT"/}" ""
  return "$rc"
}

skip() { hdr "$1"; echo "skipped: $2"; record "$1" "skipped" 0 "" "$2"; }

slug() { local s=${1%.*}; s=${s//[^A-Za-z0-9]/-}; echo "${s#-}"; }

# ---------------------------------------------------------------- the binaries
hdr "binaries"
if [ -n "${DDIM_BIN:-}" ]; then
  DDIM=$DDIM_BIN
else
  DDIM=$ROOT/target/release/ddim
  if [ ! -x "$DDIM" ] && [ "$have_cargo" = 1 ]; then
    step "build ddim (cargo build --release, not budgeted)" "$LOGS/build-ddim.log" 3600 \
      cargo build --release
  fi
fi
if [ ! -x "$DDIM" ]; then
  echo "gpu_check: no ddim binary at $DDIM (set DDIM_BIN, or install cargo)" >&2
  {
    echo "# ddim GPU check: could not run"
    echo
    echo "$(date -u '+%F %T UTC') on $(uname -n): no ddim binary at \`$DDIM\` (set DDIM_BIN, or install cargo)."
  } > "$REPORT"
  exit 2
fi
echo "ddim: $DDIM ($("$DDIM" --version 2>/dev/null || echo 'version unknown'))"

TESTS=${DDIM_GPU_TESTS:-}
tests_cmd=()
if [ -n "$TESTS" ]; then
  tests_cmd=("$TESTS" --test-threads=1)
elif [ "$have_cargo" = 1 ]; then
  # Compile first, outside the budget, so the timed step only runs the tests.
  step "build GPU tests (cargo test --no-run, not budgeted)" "$LOGS/build-tests.log" 3600 \
    cargo test --release --test gpu --no-run && tests_cmd=(cargo test --release --test gpu -- --test-threads=1)
fi

# Flags today's binary may not know yet: probe its help and leave out what it lacks.
bench_help=$("$DDIM" bench --help 2>&1)
tune_args=(); knows_precision=0; notes=()
if grep -q -- '--tune' <<< "$bench_help"; then
  tune_args=(--tune "$tune")
else
  notes+=("\`ddim bench\` has no \`--tune\`: ran without it.")
fi
if grep -q -- '--precision' <<< "$bench_help"; then
  knows_precision=1
else
  if [ "$precisions" != f32 ]; then
    notes+=("\`ddim bench\` has no \`--precision\`: ran its default (f32) once; DDIM_PRECISIONS=\`$precisions\` not applied.")
  else
    notes+=("\`ddim bench\` has no \`--precision\`: ran its default, f32.")
  fi
  precisions=f32
fi
echo "bench flags: ${tune_args[*]:-(no --tune)}; precisions: $precisions$([ $knows_precision = 1 ] || echo ' (binary default, no --precision)')"

deadline=$(( $(date +%s) + budget ))
budget_start=$(date +%s)

# ---------------------------------------------------------------- GPU and driver
nv_name=""; nv_driver=""
if have nvidia-smi; then
  step "nvidia-smi" "$LOGS/nvidia-smi.log" 20 nvidia-smi
  nv=$(timeout 20 nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
  nv_name=$(echo "$nv" | cut -d, -f1 | sed 's/^ *//;s/ *$//')
  nv_driver=$(echo "$nv" | cut -d, -f2 | sed 's/^ *//;s/ *$//')
  nv_all=$(timeout 20 nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader 2>/dev/null)
else
  skip "nvidia-smi" "no nvidia-smi on PATH"
  nv_all=""
fi

step "ddim info --devices" "$LOGS/info-devices.log" "$to_info" "$DDIM" info --devices
adapters=$(grep -E '^gpu: ' "$LOGS/info-devices.log" 2>/dev/null | sed 's/^gpu: //')
ad_name=$(echo "$adapters" | head -1 | sed 's/ (software:.*$/ (software adapter)/')
ad_driver=$(grep -E '^gpu: ' -A1 "$LOGS/info-devices.log" 2>/dev/null | grep -m1 -E '^ +driver:' | sed 's/^ *driver: *//')
gpu_name=${nv_name:-$ad_name}

# ---------------------------------------------------------------- the GPU test suite
if [ ${#tests_cmd[@]} -gt 0 ]; then
  step "GPU tests (DDIM_REQUIRE_GPU=1, --test-threads=1)" "$LOGS/gpu-tests.log" "$to_tests" \
    env DDIM_REQUIRE_GPU=1 "${tests_cmd[@]}"
elif [ "$have_cargo" = 1 ]; then
  skip "GPU tests" "the test binary did not build (see logs/build-tests.log)"
else
  skip "GPU tests" "no DDIM_GPU_TESTS and no cargo$([ "${DDIM_NO_CARGO:-0}" = 1 ] && echo ' (DDIM_NO_CARGO=1)')"
fi

# ---------------------------------------------------------------- PyTorch available?
torch_ok=0; torch_info=""
if [ "$have_py" = 1 ]; then
  hdr "PyTorch probe ($PY, device $torch_device)"
  torch_info=$(timeout "$to_probe" "$PY" - "$torch_device" 2>&1 <<'PY'
import sys
import torch
dev = sys.argv[1]
cuda = torch.cuda.is_available()
name = torch.cuda.get_device_name(0) if cuda else "-"
print(f"torch {torch.__version__}, CUDA available: {cuda}, device 0: {name}")
sys.exit(0 if (cuda or not dev.startswith("cuda")) else 3)
PY
  )
  probe_rc=$?
  torch_info=$(echo "$torch_info" | tail -1)
  echo "$torch_info"
  [ "$probe_rc" = 0 ] && torch_ok=1
  if [ "$torch_ok" = 1 ]; then
    record "PyTorch probe" ok 0 "" "$torch_info"
  else
    record "PyTorch probe" "skipped" 0 "" "no torch with $torch_device (exit $probe_rc): $torch_info"
  fi
else
  torch_info="no $PY"
fi

# ---------------------------------------------------------------- benchmarks, per config
manifest=$LOGS/manifest.tsv   # config, precision, ddim JSON log, torch log
: > "$manifest"
profiles=()
for cfg in $configs; do
  s=$(slug "$cfg")
  if [ ! -f "$cfg" ]; then skip "bench $cfg" "no such config"; continue; fi
  jlogs=()
  for p in $precisions; do
    prec_args=()
    [ "$knows_precision" = 1 ] && prec_args=(--precision "$p")
    jl=$LOGS/bench-$s-$p.log
    step "ddim bench $cfg ($p, JSON)" "$jl" "$to_bench" \
      "$DDIM" bench --config "$cfg" --backends gpu --batch "$batches" --iters "$iters" \
      --warmup "$warmup" --sample-steps "$steps" ${tune_args[@]+"${tune_args[@]}"} ${prec_args[@]+"${prec_args[@]}"} --json
    jlogs+=("$p=$jl")
  done
  tl=""
  if [ "$torch_ok" = 1 ]; then
    tl=$LOGS/torch-$s.log
    step "PyTorch $torch_device $cfg" "$tl" "$to_torch" \
      env OMP_WAIT_POLICY=PASSIVE "$PY" tools/bench_torch.py --device "$torch_device" \
      --config "$cfg" --batch "$batches" --iters "$t_iters" --warmup "$t_warmup" \
      --sample-steps "$steps" --tf32 "$torch_tf32"
  else
    skip "PyTorch $torch_device $cfg" "no torch with $torch_device ($torch_info)"
  fi
  for j in ${jlogs[@]+"${jlogs[@]}"}; do
    printf '%s\t%s\t%s\t%s\n' "$cfg" "${j%%=*}" "${j#*=}" "$tl" >> "$manifest"
  done
  # The human-readable run: per-kernel (and, where the binary has them, per-layer) tables.
  # The sample timings are in the JSON run above; this one leaves --sample-steps out to stay
  # inside the budget.
  for p in $precisions; do
    prec_args=()
    [ "$knows_precision" = 1 ] && prec_args=(--precision "$p")
    pl=$LOGS/profile-$s-$p.log
    step "ddim bench $cfg ($p, --profile)" "$pl" "$to_profile" \
      "$DDIM" bench --config "$cfg" --backends gpu --batch "$profile_batches" --iters "$iters" \
      --warmup "$warmup" ${tune_args[@]+"${tune_args[@]}"} ${prec_args[@]+"${prec_args[@]}"} --profile
    profiles+=("$cfg ($p)=$pl")
  done
done
budget_used=$(( $(date +%s) - budget_start ))

# ---------------------------------------------------------------- the report
hdr "report"
failed=$(awk -F'\t' '$2 != "ok" && $2 != "skipped" {print $1 " — " $2}' "$STEPS")
skipped=$(awk -F'\t' '$2 == "skipped" {print $1 " — " $5}' "$STEPS")

{
  echo "# ddim GPU check"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date | $(date -u '+%F %T UTC') |"
  echo "| host | $(uname -n) ($(uname -srm)) |"
  echo "| CPU | $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//') ($(nproc 2>/dev/null) threads) |"
  echo "| GPU (nvidia-smi) | ${nv_name:-n/a} |"
  echo "| driver (nvidia-smi) | ${nv_driver:-n/a} |"
  echo "| wgpu adapter (first of \`ddim info --devices\`) | ${ad_name:-none found} |"
  echo "| adapter driver | ${ad_driver:-n/a} |"
  echo "| ddim | \`$DDIM\` ($("$DDIM" --version 2>/dev/null || echo '?')) |"
  if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    echo "| commit | $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes') |"
  fi
  echo "| PyTorch | ${torch_info:-n/a} |"
  echo "| mode | $([ "$quick" = 1 ] && echo 'QUICK (DDIM_CHECK_QUICK=1: tiny sizes, not a benchmark)' || echo full): batch $batches, $steps-step samples, ddim --iters $iters --warmup $warmup, torch --iters $t_iters --warmup $t_warmup |"
  echo "| bench flags | ${tune_args[*]:-no --tune}; precisions: $precisions |"
  echo "| timed steps | ${budget_used} s of a ${budget} s budget |"
  echo
  echo "## Result"
  echo
  if [ -n "$failed" ]; then
    echo "**Failed steps:**"
    echo
    awk '{print "- " $0}' <<< "$failed"
  else
    echo "**No step failed.**"
  fi
  echo
  if [ -f "$LOGS/gpu-tests.log" ]; then
    res=$(grep -E '^test result:' "$LOGS/gpu-tests.log")
    fails=$(grep -E '^test .* \.\.\. FAILED$' "$LOGS/gpu-tests.log" | sed 's/^test //;s/ \.\.\. FAILED$//' | paste -sd, - | sed 's/,/, /g')
    echo "GPU tests: ${res:-no \`test result\` line (the suite did not finish)}${fails:+ — failing: $fails}"
    echo
  fi
  if [ -n "$skipped" ]; then
    echo "Skipped:"
    echo
    awk '{print "- " $0}' <<< "$skipped"
    echo
  fi
  for n in ${notes[@]+"${notes[@]}"}; do echo "- $n"; done
  [ ${#notes[@]} -gt 0 ] && echo
  echo "| step | status | seconds | log |"
  echo "|---|---|---|---|"
  awk -F'\t' '{ log_ = ($4 == "" ? "—" : "[" $4 "](" $4 ")"); st = $2; if ($5 != "" && $2 == "skipped") st = st ": " $5;
               if (st != "ok" && st !~ /^skipped/) st = "**" st "**"; print "| " $1 " | " st " | " $3 " | " log_ " |" }' "$STEPS"
  echo
  echo "## Adapters"
  echo
  if [ -n "$nv_all" ]; then
    echo "nvidia-smi (index, name, driver, memory):"
    echo
    echo '```'
    echo "$nv_all"
    echo '```'
    echo
  fi
  echo "\`ddim info --devices\`:"
  echo
  echo '```'
  sed '1,3d;/^(exit [0-9]* after/d' "$LOGS/info-devices.log" 2>/dev/null | sed '/^$/d'
  echo '```'
  echo
  echo "## GPU test suite"
  echo
  if [ -f "$LOGS/gpu-tests.log" ]; then
    echo '```'
    grep -E '^test .* \.\.\. |^test result:|^running [0-9]+ tests?' "$LOGS/gpu-tests.log" || echo "(no test output; see the log)"
    echo '```'
    echo
    echo "Full output: [logs/gpu-tests.log](logs/gpu-tests.log)"
  else
    awk -F'\t' '$1 ~ /^GPU tests/ {print "Not run: " $5}' "$STEPS"
  fi
  echo
  echo "## Forward pass and ${steps}-step sample, per config"
  echo
} > "$REPORT"

# Any python3 makes the tables (the one with torch may be elsewhere, or missing).
tables_py=$PY
have python3 && tables_py=python3
tables_done=0
if have "$tables_py"; then
  "$tables_py" - "$manifest" "$gpu_name" >> "$REPORT" <<'PY' && tables_done=1
import json, os, re, sys

manifest, gpu = sys.argv[1], sys.argv[2]

# Dense fp32 (non-tensor-core) peaks from NVIDIA's datasheets, matched against the GPU name.
PEAKS = [
    (r"H100.*PCIe", "H100 PCIe", 51.0),
    (r"H100.*NVL", "H100 NVL", 60.0),
    (r"H200.*NVL", "H200 NVL", 60.0),
    (r"H100", "H100 (SXM)", 67.0),
    (r"H200", "H200 (SXM)", 67.0),
]
peak = next(((label, tf) for pat, label, tf in PEAKS if re.search(pat, gpu or "")), None)


def lines(path):
    out = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for l in fh:
                l = l.strip()
                if l.startswith("{"):
                    try:
                        out.append(json.loads(l))
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


def num(v, fmt):
    return "–" if v is None else format(v, fmt)


def ratio(a, b):
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}"


rows = [l.rstrip("\n").split("\t") for l in open(manifest, encoding="utf-8") if l.strip()]
if not rows:
    print("No benchmark ran.\n")
tf32_seen = set()
for cfg, prec, dlog, tlog in rows:
    ours = {d["batch"]: d for d in lines(dlog) if "batch" in d}
    theirs = {d["batch"]: d for d in lines(tlog) if "batch" in d} if tlog else {}
    adapter = next((d.get("backend") for d in ours.values()), None)
    print(f"### {cfg} — {prec}\n")
    if adapter:
        print(f"ddim: `{adapter}`" + (f"; PyTorch: `{next(iter(theirs.values())).get('device')}`" if theirs else "") + "\n")
    if not ours and not theirs:
        rel = "/".join(dlog.split("/")[-2:])
        ran = os.path.exists(dlog)
        print(f"No measurements (see [{rel}]({rel})).\n" if ran else "No measurements: the step did not run.\n")
        continue
    steps = next((d.get("sample_steps") for d in list(ours.values()) + list(theirs.values()) if d.get("sample_steps")), None)
    s = f"{steps}-step " if steps else ""
    head = ["batch", "ddim GPU forward ms", "GFLOP/s"]
    if peak:
        head.append("% fp32 peak")
    head += [f"ddim {s}sample s", "PyTorch forward ms", f"PyTorch {s}sample s",
             "ratio forward (ddim/torch)", "ratio sample (ddim/torch)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for b in sorted(set(ours) | set(theirs)):
        o, t = ours.get(b, {}), theirs.get(b, {})
        if t.get("tf32") is not None:
            tf32_seen.add(json.dumps(t["tf32"], sort_keys=True))
        row = [str(b), num(o.get("forward_ms"), ".2f"), num(o.get("gflops"), ".1f")]
        if peak:
            g = o.get("gflops")
            row.append("–" if g is None else f"{100 * g / (peak[1] * 1e3):.2f}%")
        row += [num(o.get("sample_s"), ".3f"), num(t.get("median_ms"), ".2f"), num(t.get("sample_s"), ".3f"),
                ratio(o.get("forward_ms"), t.get("median_ms")), ratio(o.get("sample_s"), t.get("sample_s"))]
        print("| " + " | ".join(row) + " |")
    print()

print("Ratios above 1 mean ddim is slower than PyTorch. Forward times are medians; a sample is one timed run.")
print()
for t in sorted(tf32_seen):
    flags = json.loads(t)
    on = [k for k, v in flags.items() if v]
    print(f"PyTorch TF32 flags: {t}" + (f" — {' and '.join(on)} ran in TF32, not strict fp32." if on else " (strict fp32)."))
print()
print("### fp32 peak\n")
print("| GPU (name contains) | fp32 peak TFLOP/s (dense, no tensor cores) |")
print("|---|---|")
for _, label, tf in PEAKS:
    print(f"| {label} | {tf:g} |")
print()
if peak:
    print(f"This GPU ({gpu}) counts as {peak[0]}: {peak[1]:g} TFLOP/s; the `% fp32 peak` column is ddim's GFLOP/s against it.\n")
else:
    print(f"This GPU ({gpu or 'name unknown'}): unknown peak, so no `% fp32 peak` column.\n")
PY
fi
if [ "$tables_done" != 1 ]; then
  {
    echo "(no python3 for the tables: the raw JSON lines follow)"
    echo
    while IFS=$'\t' read -r cfg p dl tl; do
      echo "### $cfg — $p"
      echo
      echo '```'
      grep -h '^{' "$dl" ${tl:+"$tl"} 2>/dev/null
      echo '```'
      echo
    done < "$manifest"
  } >> "$REPORT"
fi

{
  echo "## Kernel profiles (\`ddim bench --profile\`)"
  echo
  echo "Same flags as the JSON runs, batches $profile_batches, without \`--sample-steps\` (the sample times are in the tables above) to stay inside the budget. The kernel table is for the first batch."
  echo
  for pr in ${profiles[@]+"${profiles[@]}"}; do
    label=${pr%%=*}; f=${pr#*=}
    echo "### $label"
    echo
    echo '```'
    sed '1,3d;/^(exit [0-9]* after/d' "$f"
    echo '```'
    echo
  done
  echo "## Logs"
  echo
  for f in "$LOGS"/*; do
    r=${f#"$OUT"/}
    echo "- [$r]($r)"
  done
} >> "$REPORT"

total=$(( $(date +%s) - start_epoch ))
echo "report: $REPORT (${total} s in all)"
if [ -n "$failed" ]; then
  echo "failed steps:"
  awk '{print "  " $0}' <<< "$failed"
fi
exit 0
