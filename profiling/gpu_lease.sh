#!/usr/bin/env bash
# A short GPU lease, spent in order of what matters most, under one deadline.
#
#   bash profiling/gpu_lease.sh WORKDIR TARBALL [SECONDS]
#
# Steps, in this order (each cut to the time left; one with too little left is
# skipped):
#   build      gpu_check.sh build (s2v._C with its CUDA part)
#   gputest    the GPU tests of the fused ops (both CUDA kernel families of the
#              dilated GRU, the Triton video predictor), slowest listed
#   golden     gpu_check.sh golden (vp_* on triton, me_* on cuda, fp32 and bf16)
#   bench_video_predictor, bench_dilated_gru, bench_product
#              --quick --no-compile, plus 128 px; their op tests limited to the
#              GPU ones; one JSON per benchmark under WORKDIR/bench
#   breakdown  profiling.breakdown: kernel time by category inside the video
#              predictor, the dilated GRU and one training iteration
#   ncu_dilated_gru  Nsight Compute of the dilated GRU (its default kernels)
#   suite      the whole test suite (pytest-xdist when installed)
#   ncu        Nsight Compute over every fused op
# Also available: ncu_per_unit (the dilated GRU's per-unit CUDA kernels),
# bench_vp_compile (the video predictor at 128 px, fp32, with its torch.compile
# baseline), and run_all (`python -m profiling.run_all --quick`, unchanged, as a user runs it:
# every benchmark with its op tests and the torch.compile baselines; minutes).
# S2V_LEASE_STEPS="build gputest ..." runs those steps, in that order, instead
# (a short second lease after a fix).
# Everything lands under WORKDIR; TARBALL (.tar.gz) is rewritten after every
# step, so a command killed at its limit still returns what finished.
# SECONDS (default 540) is the whole budget; the last step ends 20 s before.
# Extra wheels (PyAV, ...) are picked up from wheels/ as gpu_check.sh does.
# S2V_COMMIT=<sha> names the commit in the results JSON when the tree was copied
# without up-to-date git metadata (otherwise `git rev-parse HEAD` decides).

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

# step NAME: one step of the list above.
step() {
    case "$1" in
    build | golden)
        local cap=300
        [[ $1 == golden ]] && cap=120
        if (($(left) < 30)); then
            echo "$1: skipped ($(left) s left)" | tee -a "$WORK/lease.txt"
        else
            S2V_STAGE_TIMEOUT=$cap "${CHECK[@]}" "$1" | tail -n 3 | tee -a "$WORK/lease.txt"
        fi ;;
    gputest)
        run_step gputest 60 150 "$PY" -m pytest -q -p no:cacheprovider "${xdist[@]}" \
            --durations=15 tests/ops tests/test_triton_compile.py -k "gpu or cuda" ;;
    # --quick, plus the 128-px shapes the GPU targets name (--quick alone is 64 px);
    # the benchmarks' op tests are limited to the GPU ones.
    bench_dilated_gru)
        S2V_PYTEST_ARGS="${xdist[*]} -k 'gpu or cuda'" run_step bench_dilated_gru 60 240 \
            "$PY" -m profiling.bench_dilated_gru --quick --no-compile --out "$WORK/bench" ;;
    bench_video_predictor)
        S2V_PYTEST_ARGS="${xdist[*]} -k 'gpu or cuda'" run_step bench_video_predictor 60 240 \
            "$PY" -m profiling.bench_video_predictor --quick --no-compile --sizes 64 128 \
            --out "$WORK/bench" ;;
    bench_product)
        S2V_PYTEST_ARGS="${xdist[*]} -k 'gpu or cuda'" run_step bench_product 60 240 \
            "$PY" -m profiling.bench_product --quick --sizes 64 128 --out "$WORK/bench" ;;
    breakdown)  # where the time goes inside the fused ops and a training iteration
        run_step breakdown 60 180 "$PY" -m profiling.breakdown --out "$WORK/breakdown" \
            --targets video_predictor,dilated_gru,train --dtypes fp32,bf16 --top 15 ;;
    suite)
        run_step suite 120 300 "$PY" -m pytest -q -p no:cacheprovider "${xdist[@]}" \
            --durations=25 tests ;;
    ncu)
        run_step ncu 60 150 "$PY" -m profiling.ncu --out "$WORK/ncu" --dtypes fp32 \
            --launch-count 4 ;;
    ncu_dilated_gru)  # the dilated GRU alone (its default, grouped kernels)
        run_step ncu_dilated_gru 45 120 "$PY" -m profiling.ncu --out "$WORK/ncu_dilated_gru" \
            --ops dilated_gru --dtypes fp32 --launch-count 4 ;;
    bench_vp_compile)  # the torch.compile baseline of the video predictor's GPU target shape
        S2V_PYTEST_ARGS="${xdist[*]} -k 'gpu or cuda'" run_step bench_vp_compile 120 420 \
            "$PY" -m profiling.bench_video_predictor --quick --sizes 128 --dtypes fp32 \
            --compile-timeout 300 --out "$WORK/bench_vp_compile" ;;
    run_all)  # the one-command suite exactly as documented (issue: runs unchanged on a GPU)
        run_step run_all 120 420 "$PY" -m profiling.run_all --quick --out "$WORK/run_all" ;;
    ncu_per_unit)  # the dilated GRU's per-unit kernels (the default is the grouped ones)
        S2V_DGRU_CUDA_KERNEL=per_unit run_step ncu_per_unit 45 120 "$PY" -m profiling.ncu \
            --out "$WORK/ncu_per_unit" --ops dilated_gru --dtypes fp32 --launch-count 4 ;;
    *)
        echo "unknown step '$1' (steps: $ALL_STEPS)" | tee -a "$WORK/lease.txt" ;;
    esac
}

# Correctness first, then what the open questions need most (the video predictor's
# time and where it goes), then the rest; the whole suite passed on a GPU before.
ALL_STEPS="build gputest golden bench_video_predictor breakdown bench_dilated_gru bench_product ncu_dilated_gru suite ncu"
for name in ${S2V_LEASE_STEPS:-$ALL_STEPS}; do
    step "$name"
done
pack
cat "$WORK/lease.txt"
