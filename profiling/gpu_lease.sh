#!/usr/bin/env bash
# A short GPU lease, spent in order of what matters most, under one deadline.
#
#   bash profiling/gpu_lease.sh WORKDIR TARBALL [SECONDS]
#
# Steps (each cut to the time left; a step with too little left is skipped):
#   1. build    gpu_check.sh build (s2v._C with its CUDA part)
#   2. golden   gpu_check.sh golden (vp_* on triton, me_* on cuda, fp32 and bf16)
#   3. gputest  the GPU tests of the fused ops (both CUDA kernel families of the
#               dilated GRU, the Triton video predictor), slowest listed
#   4. bench    the dilated GRU, video predictor and product benchmarks
#               (--quick --no-compile, plus 128 px; their op tests limited to
#               the GPU ones; one JSON per benchmark under WORKDIR/bench)
#   5. suite    the whole test suite (pytest-xdist when installed)
#   6. ncu      Nsight Compute over the fused ops, per-unit and grouped kernels
# Everything lands under WORKDIR; TARBALL (.tar.gz) is rewritten after every
# step, so a command killed at its limit still returns what finished.
# SECONDS (default 540) is the whole budget; the last step ends 20 s before.
# Extra wheels (PyAV, ...) are picked up from wheels/ as gpu_check.sh does.
set -u -o pipefail

if (($# < 2)); then
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
    exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(realpath -m -- "$1")"
TAR="$(realpath -m -- "$2")"
BUDGET="${3:-540}"
cd "$ROOT" || exit 2
mkdir -p "$WORK" || exit 2
export S2V_DEADLINE=$(($(date +%s) + BUDGET)) PYTHONUNBUFFERED=1
export MAX_JOBS="${MAX_JOBS:-16}"
PY="${PYTHON:-}"
if [[ -z $PY ]]; then  # as gpu_check.sh: the first interpreter that imports torch
    for c in python3 "$ROOT/.venv/bin/python" python; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import torch' >/dev/null 2>&1; then
            PY="$c"
            break
        fi
    done
fi
PY="${PY:-python3}"
export PYTHON="$PY"
CHECK=(bash profiling/gpu_check.sh --tar "$TAR" "$WORK")

left() { echo $((S2V_DEADLINE - $(date +%s) - 20)); }
pack() { tar -czf "$TAR" -C "$(dirname "$WORK")" "$(basename "$WORK")" 2>/dev/null; }

# run_step NAME MIN_SECONDS CAP_SECONDS CMD...: runs CMD (output to WORKDIR/NAME.log)
# with the smaller of CAP and the time left, unless under MIN seconds are left.
run_step() {
    local name="$1" min="$2" cap="$3" limit
    shift 3
    limit="$(left)"
    if ((limit < min)); then
        echo "$name: skipped ($limit s left)" | tee -a "$WORK/lease.txt"
        return 0
    fi
    ((limit > cap)) && limit="$cap"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - start)) s: $(grep -E 'passed|failed|PASS|FAIL|wrote|error' \
        "$WORK/$name.log" | tail -n 1 | cut -c1-200)" | tee -a "$WORK/lease.txt"
    pack
}

xdist=()
if "$PY" -c 'import xdist' >/dev/null 2>&1; then xdist=(-n 8); fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

S2V_STAGE_TIMEOUT=300 "${CHECK[@]}" build | tail -n 3 | tee -a "$WORK/lease.txt"
S2V_STAGE_TIMEOUT=120 "${CHECK[@]}" golden | tail -n 3 | tee -a "$WORK/lease.txt"
run_step gputest 60 150 "$PY" -m pytest -q -p no:cacheprovider "${xdist[@]}" --durations=15 \
    tests/ops tests/test_triton_compile.py -k "gpu or cuda"
# --quick, plus the 128-px shapes the GPU targets name (--quick alone is 64 px).
export S2V_PYTEST_ARGS="${xdist[*]} -k 'gpu or cuda'"
run_step bench_dilated_gru 60 240 "$PY" -m profiling.bench_dilated_gru --quick --no-compile \
    --out "$WORK/bench"
run_step bench_video_predictor 60 240 "$PY" -m profiling.bench_video_predictor --quick \
    --no-compile --sizes 64 128 --out "$WORK/bench"
run_step bench_product 60 240 "$PY" -m profiling.bench_product --quick --sizes 64 128 \
    --out "$WORK/bench"
unset S2V_PYTEST_ARGS
run_step suite 120 300 "$PY" -m pytest -q -p no:cacheprovider "${xdist[@]}" --durations=25 tests
run_step ncu 60 150 "$PY" -m profiling.ncu --out "$WORK/ncu" --dtypes fp32 --launch-count 4
S2V_DGRU_CUDA_KERNEL=grouped run_step ncu_grouped 45 120 "$PY" -m profiling.ncu \
    --out "$WORK/ncu_grouped" --ops dilated_gru --dtypes fp32 --launch-count 4
pack
cat "$WORK/lease.txt"
