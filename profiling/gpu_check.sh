#!/usr/bin/env bash
# GPU validation of s2v (issue 9): build, tests, golden vectors, benchmarks, Nsight Compute.
#
#   bash profiling/gpu_check.sh [options] OUTDIR [STAGE ...]
#
# Stages, in order: build test golden bench ncu. With no STAGE, every stage runs
# in order and stages that already succeeded into OUTDIR (stamp OUTDIR/<stage>.ok)
# are skipped unless --force; a STAGE named on the command line always runs again.
# Each stage logs to OUTDIR/<stage>.log and prints one summary line; a failed stage
# does not stop the next one, the exit status is 1 when any stage failed, and a
# table of stages closes the output (also in OUTDIR/summary.txt). OUTDIR/env.txt
# records versions and the GPU (nvidia-smi queries only: no setting is changed).
#
#   build   S2V_BUILD_CUDA=1 S2V_CUDA_ARCHS=<90a on Hopper> pip install
#           --no-build-isolation --no-deps -e . ; `python -m s2v doctor` into
#           OUTDIR/doctor.txt; fails unless s2v._C has its CUDA part.
#   test    the whole pytest suite (TRITON_INTERPRET unset), junit XML in
#           OUTDIR/test-junit.xml; warns when GPU tests were skipped.
#   golden  python -m s2v.testing.golden on tests/golden{,_extra}/vp_*.npz with
#           --backend triton and me_*.npz with --backend cuda, fp32 and bf16, on
#           the GPU (through profiling/golden_device.py while the runner has no
#           --device option of its own).
#   bench   python -m profiling.run_all --out OUTDIR/bench  (+ $S2V_BENCH_ARGS)
#   ncu     python -m profiling.ncu --out OUTDIR/ncu        (+ $S2V_NCU_ARGS)
#
# Needs torch (a CUDA build) and triton already installed; nothing is downloaded
# (pip runs with --no-index). Missing Python packages (av, tqdm, pytest, ninja,
# numpy, setuptools>=77) are installed from a folder of wheels: --wheels DIR, or
# $S2V_WHEELS, or wheels/ at the repository root when present. A missing PyAV is
# a warning (the tests that need it skip). Without a GPU every stage says so in
# one line and is marked "skipped (no GPU)"; nothing is built or installed.
#
# Options:
#   --force           redo stages already stamped ok (when no STAGE is named)
#   --dry-run, -n     print what each stage would run; change nothing
#   --wheels DIR      folder of wheels for `pip install --no-index --find-links`
#   --tar FILE        pack OUTDIR into FILE (.tar.gz) at the end
#   --require-gpu     exit 3 when stages were skipped for want of a GPU
#   -h, --help        this text
# Environment: PYTHON (interpreter; default: the first of python3, ./.venv/bin/python,
#   python that imports torch), S2V_CUDA_ARCHS (build archs; default from the GPU's
#   compute capability, 9.0 -> 90a), S2V_PYTEST_ARGS, S2V_BENCH_ARGS, S2V_NCU_ARGS
#   (extra arguments), S2V_STAGE_TIMEOUT (seconds per stage, 0 = none; default
#   per stage below), S2V_DEADLINE (epoch seconds, shared by several invocations:
#   each stage's limit is cut to end 20 s before it, and a stage that would get
#   under 45 s is skipped), and S2V_PYTEST_ARGS also reaches the op tests that
#   each benchmark runs first. --tar FILE is refreshed after every stage, so a
#   command killed at its limit still leaves the finished stages packed.

set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ALL_STAGES=(build test golden bench ncu)
declare -A TIMEOUT=([build]=1800 [test]=2400 [golden]=1200 [bench]=3600 [ncu]=2400)
declare -A STATUS=() SECS=() NOTE=()
SKIP_RC=3  # a stage function returns this for "skipped (reason in SUMMARY)"
# Skip reasons of tests/ that mean the GPU side did not run (see the test stage).
GPU_SKIP_RE="needs a CUDA GPU|backend 'cuda' unavailable|triton is not installed|nvcc not found|needs nvcc|TRITON_INTERPRET is set"

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

die_usage() {
    echo "gpu_check.sh: $1" >&2
    echo "usage: bash profiling/gpu_check.sh [--force] [--dry-run] [--wheels DIR] [--tar FILE] OUTDIR [STAGE ...]" >&2
    exit 2
}

# --------------------------------------------------------------------------- arguments
FORCE=0 DRY=0 REQUIRE_GPU=0
WHEELS="${S2V_WHEELS:-}" TAR="" OUTDIR=""
STAGES=()
while (($#)); do
    case "$1" in
        --force) FORCE=1 ;;
        -n | --dry-run) DRY=1 ;;
        --require-gpu) REQUIRE_GPU=1 ;;
        --wheels) (($# >= 2)) || die_usage "--wheels needs a folder"; WHEELS="$2"; shift ;;
        --wheels=*) WHEELS="${1#*=}" ;;
        --tar) (($# >= 2)) || die_usage "--tar needs a file name"; TAR="$2"; shift ;;
        --tar=*) TAR="${1#*=}" ;;
        -h | --help) usage; exit 0 ;;
        -*) die_usage "unknown option $1" ;;
        *) if [[ -z $OUTDIR ]]; then OUTDIR="$1"; else STAGES+=("$1"); fi ;;
    esac
    shift
done
[[ -n $OUTDIR ]] || die_usage "OUTDIR is required"
EXPLICIT=0
if ((${#STAGES[@]})); then
    EXPLICIT=1
    for s in "${STAGES[@]}"; do
        [[ " ${ALL_STAGES[*]} " == *" $s "* ]] || die_usage "unknown stage '$s' (stages: ${ALL_STAGES[*]})"
    done
else
    STAGES=("${ALL_STAGES[@]}")
fi
if [[ -z $WHEELS && -d "$ROOT/wheels" ]]; then WHEELS="$ROOT/wheels"; fi
if [[ -n $WHEELS && ! -d $WHEELS ]]; then
    echo "gpu_check.sh: warning: wheels folder '$WHEELS' does not exist; ignored" >&2
    WHEELS=""
fi
OUTDIR="$(realpath -m -- "$OUTDIR")"
[[ -z $TAR ]] || TAR="$(realpath -m -- "$TAR")"

cd "$ROOT" || exit 2
export PYTHONUNBUFFERED=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
INTERPRET_WAS="${TRITON_INTERPRET:-}"
unset TRITON_INTERPRET  # the GPU stages need compiled Triton kernels

# --------------------------------------------------------------------------- helpers
pick_python() {
    if [[ -n ${PYTHON:-} ]]; then
        echo "$PYTHON"
        return
    fi
    local c
    for c in python3 "$ROOT/.venv/bin/python" python; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import torch' >/dev/null 2>&1; then
            echo "$c"
            return
        fi
    done
    echo python3
}
PY="$(pick_python)"

# Empty when torch sees a CUDA GPU, else why not.
gpu_reason() {
    "$PY" - 2>/dev/null <<'EOF' || echo "$PY could not run"
try:
    import torch
except Exception as exc:
    print(f"torch is not importable ({type(exc).__name__}: {exc})")
else:
    if torch.version.cuda is None:
        print(f"torch {torch.__version__} is a CPU-only build")
    elif not torch.cuda.is_available():
        print("torch sees no CUDA GPU (torch.cuda.is_available() is False)")
EOF
}

# run_logged LOG TIMEOUT CMD...: the command line and its output go to LOG.
run_logged() {
    local log="$1" limit="$2"
    shift 2
    printf '$ %s\n' "$*" >>"$log"
    timeout --kill-after=30 "$limit" "$@" >>"$log" 2>&1
    local rc=$?
    if ((rc == 124)); then echo "# timed out after ${limit}s" >>"$log"; fi
    echo "# exit $rc" >>"$log"
    return "$rc"
}

# The stage's own limit, cut to what is left before $S2V_DEADLINE (if set).
stage_timeout() {
    local limit="${S2V_STAGE_TIMEOUT:-${TIMEOUT[$1]}}" left
    if [[ -n ${S2V_DEADLINE:-} ]]; then
        left=$((S2V_DEADLINE - $(date +%s) - 20))
        if ((limit == 0 || left < limit)); then limit=$left; fi
    fi
    echo "$limit"
}

# Seconds left before $S2V_DEADLINE, or a large number when none is set.
deadline_left() {
    if [[ -n ${S2V_DEADLINE:-} ]]; then echo $((S2V_DEADLINE - $(date +%s))); else echo 999999; fi
}

pack_tar() {
    [[ -n $TAR ]] || return 0
    if tar -czf "$TAR" -C "$(dirname "$OUTDIR")" "$(basename "$OUTDIR")"; then
        echo "packed $OUTDIR into $TAR"
    else
        echo "could not pack $OUTDIR into $TAR"
    fi
}

py_has() { "$PY" -c "import $1" >/dev/null 2>&1; }

# Install what is missing from the wheels folder; once per invocation.
DEPS_DONE=0 DEPS_MISSING="" DEPS_WARN=""
ensure_deps() {
    ((DEPS_DONE)) && return 0
    DEPS_DONE=1
    local log="$OUTDIR/deps.log" pkg
    : >"$log"
    for pkg in numpy tqdm pytest ninja av; do
        py_has "$pkg" && continue
        if [[ -n $WHEELS ]] && run_logged "$log" 600 "$PY" -m pip install --no-index \
            --find-links "$WHEELS" "$pkg" && py_has "$pkg"; then
            echo "installed $pkg from $WHEELS" >>"$log"
            continue
        fi
        case "$pkg" in
            av) DEPS_WARN+="PyAV (av) missing: media/product tests skip; " ;;
            ninja) DEPS_WARN+="ninja missing: slow compile; " ;;
            *) DEPS_MISSING+="$pkg " ;;
        esac
    done
    local st_ok
    st_ok="$("$PY" -c 'import setuptools; print(int(int(setuptools.__version__.split(".")[0]) >= 77))' 2>/dev/null)"
    if [[ $st_ok != 1 && -n $WHEELS ]]; then
        run_logged "$log" 600 "$PY" -m pip install --no-index --find-links "$WHEELS" \
            'setuptools>=77' || true
        st_ok="$("$PY" -c 'import setuptools; print(int(int(setuptools.__version__.split(".")[0]) >= 77))' 2>/dev/null)"
    fi
    [[ $st_ok == 1 ]] || DEPS_WARN+="setuptools < 77 (pyproject's SPDX license needs >= 77; the build may fail); "
    local where="${WHEELS:-no wheels folder (--wheels DIR)}"
    if [[ -n $DEPS_MISSING ]]; then
        echo "deps: MISSING ${DEPS_MISSING}(not installed, not in $where)"
    fi
    if [[ -n $DEPS_WARN ]]; then echo "deps: warning: ${DEPS_WARN%; }"; fi
    return 0
}

need_deps() {  # need_deps PKG...: fail the stage when a required package is missing
    local pkg
    for pkg in "$@"; do
        if [[ " $DEPS_MISSING " == *" $pkg "* ]]; then
            SUMMARY="$pkg is not installed and no wheel for it was found (--wheels DIR)"
            return 1
        fi
    done
}

# Fails (with SUMMARY) unless s2v imports from this checkout with a CUDA s2v._C.
require_cuda_ext() {
    local out
    if ! out="$("$PY" - 2>&1 <<'EOF'
import os, sys
import s2v
from s2v._extension import build_info
info = build_info()
where = os.path.dirname(os.path.abspath(s2v.__file__))
if not info.get("available"):
    sys.exit(f"s2v._C is not importable ({info.get('error')}); run the build stage first")
if not info.get("with_cuda"):
    sys.exit("s2v._C was built without its CUDA part; run the build stage first")
print(f"s2v from {where}, s2v._C with CUDA (archs {info.get('cuda_archs')})")
EOF
    )"; then
        SUMMARY="$(tail -n 1 <<<"$out")"
        echo "$out" >>"$1"
        return 1
    fi
    echo "$out" >>"$1"
}

cuda_archs() {
    if [[ -n ${S2V_CUDA_ARCHS:-} ]]; then
        echo "$S2V_CUDA_ARCHS"
        return
    fi
    local cap
    cap="$("$PY" -c 'import torch; m, n = torch.cuda.get_device_capability(); print(f"{m}{n}")' 2>/dev/null)"
    case "$cap" in
        90) echo 90a ;;
        "") echo 90a ;;
        *) echo "$cap" ;;
    esac
}

# --------------------------------------------------------------------------- stages
# Each stage_X LOG runs the stage, sets SUMMARY, returns 0 / non-zero / SKIP_RC.

stage_build() {
    local log="$1" archs limit
    limit="$(stage_timeout build)"
    need_deps numpy || return 1
    archs="$(cuda_archs)"
    if ! run_logged "$log" "$limit" env S2V_BUILD_CUDA=1 S2V_CUDA_ARCHS="$archs" \
        "$PY" -m pip install --no-build-isolation --no-deps -e "$ROOT"; then
        SUMMARY="pip install -e . failed (S2V_BUILD_CUDA=1 S2V_CUDA_ARCHS=$archs)"
        return 1
    fi
    run_logged "$log" 300 "$PY" -m s2v doctor
    "$PY" -m s2v doctor >"$OUTDIR/doctor.txt" 2>&1
    if ! require_cuda_ext "$log"; then
        SUMMARY="BUILT WITHOUT CUDA: $SUMMARY"
        return 1
    fi
    SUMMARY="s2v._C built with CUDA for $archs; doctor in doctor.txt"
}

stage_test() {
    local log="$1" limit rc line gpu_skips extra=()
    limit="$(stage_timeout test)"
    need_deps pytest numpy tqdm || return 1
    require_cuda_ext "$log" || return 1
    read -r -a extra <<<"${S2V_PYTEST_ARGS:-}"
    # The slowest tests are listed, and a hung one fails alone (pytest-timeout).
    extra+=(--durations=25)
    if py_has pytest_timeout; then extra+=(--timeout=300); fi
    # pytest-xdist workers each start torch's full thread pool: with 12 workers x 16
    # OpenMP threads on 16 cores the first H100 run got through under half the
    # suite in 160 s (oversubscription is the likely cause; measured nothing finer).
    local omp="${OMP_NUM_THREADS:-}"
    if [[ " ${extra[*]} " == *" -n "* && -z $omp ]]; then omp=2; fi
    run_logged "$log" "$limit" env -u TRITON_INTERPRET ${omp:+OMP_NUM_THREADS=$omp} \
        "$PY" -m pytest "$ROOT/tests" -q -rs \
        -p no:cacheprovider --junitxml="$OUTDIR/test-junit.xml" "${extra[@]}"
    rc=$?
    line="$(grep -E '[0-9]+ (passed|failed|errors?|skipped)' "$log" | tail -n 1 | tr -d '=' | sed 's/^ *//;s/ *$//')"
    # Skips that mean "no GPU / no toolkit / interpreter forced": none should happen here.
    gpu_skips="$(grep -E '^SKIPPED \[[0-9]+\]' "$log" | grep -E "$GPU_SKIP_RE" \
        | sed -E 's/^SKIPPED \[([0-9]+)\].*/\1/' | awk '{n += $1} END {print n + 0}')"
    SUMMARY="${line:-no pytest summary line (exit $rc)}"
    if ((gpu_skips > 0)); then
        SUMMARY+="; WARNING: $gpu_skips tests skipped for want of GPU/Triton/nvcc (grep SKIPPED in the log)"
    fi
    return "$rc"
}

# The golden runner on the GPU: its own --device when it has one, else the wrapper.
golden_runner() {
    if "$PY" -m s2v.testing.golden --help 2>/dev/null | grep -q -- '--device'; then
        GOLDEN_RUNNER=("$PY" -m s2v.testing.golden --device cuda)
    else
        GOLDEN_RUNNER=("$PY" -m profiling.golden_device --device cuda)
    fi
}

stage_golden() {
    local log="$1" limit rc=0 prec runner=() vp=() me=() pass fail err
    limit="$(stage_timeout golden)"
    need_deps numpy || return 1
    require_cuda_ext "$log" || return 1
    shopt -s nullglob
    vp=("$ROOT"/tests/golden/vp_*.npz "$ROOT"/tests/golden_extra/vp_*.npz)
    me=("$ROOT"/tests/golden/me_*.npz "$ROOT"/tests/golden_extra/me_*.npz)
    shopt -u nullglob
    if ((${#vp[@]} == 0 || ${#me[@]} == 0)); then
        SUMMARY="no golden files found under tests/golden{,_extra}"
        return 1
    fi
    golden_runner
    runner=("${GOLDEN_RUNNER[@]}")
    for prec in fp32 bf16; do
        run_logged "$log" "$limit" "${runner[@]}" "${vp[@]}" --backend triton --precision "$prec" || rc=1
        run_logged "$log" "$limit" "${runner[@]}" "${me[@]}" --backend cuda --precision "$prec" || rc=1
    done
    pass="$(grep -c '^PASS ' "$log" || true)"
    fail="$(grep -c '^FAIL ' "$log" || true)"
    err="$(grep -c '^ERROR ' "$log" || true)"
    SUMMARY="$pass PASS, $fail FAIL, $err ERROR (${#vp[@]} vp files x triton, ${#me[@]} me files x cuda; fp32 + bf16)"
    return "$rc"
}

stage_bench() {
    local log="$1" limit rc extra=() wrote
    limit="$(stage_timeout bench)"
    need_deps numpy || return 1
    require_cuda_ext "$log" || return 1
    read -r -a extra <<<"${S2V_BENCH_ARGS:-}"
    run_logged "$log" "$limit" "$PY" -m profiling.run_all --out "$OUTDIR/bench" "${extra[@]}"
    rc=$?
    wrote="$(grep -E '^wrote ' "$log" | tail -n 1)"
    SUMMARY="${wrote:-no JSON written} (exit $rc)"
    return "$rc"
}

stage_ncu() {
    local log="$1" limit rc extra=()
    limit="$(stage_timeout ncu)"
    require_cuda_ext "$log" || return 1
    read -r -a extra <<<"${S2V_NCU_ARGS:-}"
    run_logged "$log" "$limit" "$PY" -m profiling.ncu --out "$OUTDIR/ncu" "${extra[@]}"
    rc=$?
    if ((rc == 2)) && grep -q 'cannot profile here' "$log"; then
        SUMMARY="$(grep 'cannot profile here' "$log" | tail -n 1 | sed 's/^profiling\/ncu.py: //')"
        return "$SKIP_RC"
    fi
    SUMMARY="$(grep -E '^wrote ' "$log" | tail -n 1)"
    SUMMARY="${SUMMARY:-no summary written} (exit $rc)"
    return "$rc"
}

dry_stage() {
    local st="$1"
    case "$st" in
        build) echo "  env S2V_BUILD_CUDA=1 S2V_CUDA_ARCHS=${S2V_CUDA_ARCHS:-<90a on a 9.0 GPU>} $PY -m pip install --no-build-isolation --no-deps -e $ROOT"
               echo "  $PY -m s2v doctor > $OUTDIR/doctor.txt; check s2v._C has CUDA" ;;
        test) echo "  env -u TRITON_INTERPRET $PY -m pytest $ROOT/tests -q -rs -p no:cacheprovider --junitxml=$OUTDIR/test-junit.xml ${S2V_PYTEST_ARGS:-}" ;;
        golden) golden_runner
                echo "  ${GOLDEN_RUNNER[*]} tests/golden{,_extra}/vp_*.npz --backend triton --precision {fp32,bf16}"
                echo "  ${GOLDEN_RUNNER[*]} tests/golden{,_extra}/me_*.npz --backend cuda --precision {fp32,bf16}" ;;
        bench) echo "  $PY -m profiling.run_all --out $OUTDIR/bench ${S2V_BENCH_ARGS:-}" ;;
        ncu) echo "  $PY -m profiling.ncu --out $OUTDIR/ncu ${S2V_NCU_ARGS:-}" ;;
    esac
}

print_table() {
    local st out
    out="$(
        printf '%-7s %-22s %7s  %s\n' stage status seconds summary
        for st in "${STAGES[@]}"; do
            printf '%-7s %-22s %7s  %s\n' "$st" "${STATUS[$st]:-not run}" "${SECS[$st]:--}" \
                "${NOTE[$st]:-}"
        done
    )"
    echo "$out"
    if ((!DRY)) && [[ -d $OUTDIR ]]; then echo "$out" >"$OUTDIR/summary.txt"; fi
}

CURRENT=""
# shellcheck disable=SC2329  # invoked by the trap below
on_signal() {
    [[ -z $CURRENT ]] || STATUS[$CURRENT]="INTERRUPTED"
    echo "gpu_check.sh: interrupted" >&2
    print_table
    exit 130
}
trap on_signal INT TERM

write_env() {
    {
        echo "# s2v gpu_check environment, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "host: $(hostname 2>/dev/null) | $(uname -srm)"
        echo "repo: $ROOT @ $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo '?')" \
            "($(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) paths modified/untracked)"
        echo "python: $PY -> $(command -v "$PY" 2>/dev/null) ($("$PY" --version 2>&1))"
        echo "wheels: ${WHEELS:-none}"
        if [[ -n $INTERPRET_WAS ]]; then echo "TRITON_INTERPRET=$INTERPRET_WAS was set; unset for every stage"; fi
        "$PY" - <<'EOF' 2>&1
import importlib, platform
def version(name):
    try:
        return getattr(importlib.import_module(name), "__version__", "?")
    except Exception as exc:  # noqa: BLE001
        return f"not importable ({type(exc).__name__})"
print("platform:", platform.platform())
for name in ("torch", "triton", "numpy", "av", "pytest", "tqdm", "ninja", "setuptools"):
    print(f"{name}: {version(name)}")
try:
    import torch
    print("torch.version.cuda:", torch.version.cuda, "| cudnn:", torch.backends.cudnn.version())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print(f"device 0: {p.name}, capability {p.major}.{p.minor}, {p.multi_processor_count} SMs, "
              f"{p.total_memory / 2**30:.1f} GiB")
    else:
        print("torch.cuda.is_available(): False")
except Exception as exc:  # noqa: BLE001
    print("torch:", exc)
try:
    from s2v._extension import build_info
    print("s2v._C:", build_info())
except Exception as exc:  # noqa: BLE001
    print("s2v:", exc)
EOF
        echo "--- nvcc"
        if command -v nvcc >/dev/null 2>&1; then nvcc --version | tail -n 2; else echo "nvcc: not found"; fi
        echo "--- ncu"
        local ncu
        ncu="$("$PY" -c 'from profiling.ncu import find_ncu; print(find_ncu() or "")' 2>/dev/null)"
        if [[ -n $ncu ]]; then echo "$ncu: $("$ncu" --version 2>&1 | tail -n 1)"; else echo "ncu: not found"; fi
        echo "--- nvidia-smi (queries only)"
        if command -v nvidia-smi >/dev/null 2>&1; then
            nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,persistence_mode,temperature.gpu,utilization.gpu \
                --format=csv 2>&1
            nvidia-smi 2>&1
        else
            echo "nvidia-smi: not found"
        fi
    } >"$OUTDIR/env.txt" 2>&1
}

# --------------------------------------------------------------------------- main
GPU_REASON="$(gpu_reason)"
GPU_DESC="yes"
[[ -z $GPU_REASON ]] || GPU_DESC="none ($GPU_REASON)"
echo "gpu_check: OUTDIR=$OUTDIR python=$PY stages=${STAGES[*]} GPU=$GPU_DESC wheels=${WHEELS:-none}"

if ((DRY)); then
    for st in "${STAGES[@]}"; do
        stamp="$OUTDIR/$st.ok"
        if [[ -n $GPU_REASON ]]; then
            STATUS[$st]="skipped (no GPU)"
        elif ((!EXPLICIT && !FORCE)) && [[ -f $stamp ]]; then
            STATUS[$st]="ok (earlier run)"
        else
            STATUS[$st]="would run"
        fi
        if [[ ${STATUS[$st]} == "would run" ]]; then
            echo "$st: would run:"
        else
            echo "$st: ${STATUS[$st]}; otherwise it would run:"
        fi
        dry_stage "$st"
    done
    print_table
    exit 0
fi

mkdir -p "$OUTDIR" || exit 2
write_env
FAILED=0 NOGPU=0
for st in "${STAGES[@]}"; do
    log="$OUTDIR/$st.log"
    stamp="$OUTDIR/$st.ok"
    if [[ -n $GPU_REASON ]]; then
        STATUS[$st]="skipped (no GPU)"
        NOTE[$st]="$GPU_REASON"
        NOGPU=1
        echo "$st: skipped (no GPU): $GPU_REASON"
        continue
    fi
    if ((!EXPLICIT && !FORCE)) && [[ -f $stamp ]]; then
        STATUS[$st]="ok (earlier run)"
        NOTE[$st]="$(head -n 1 "$stamp")"
        echo "$st: already ok ($(head -n 1 "$stamp")); --force redoes it"
        continue
    fi
    if (($(deadline_left) < 65)); then
        STATUS[$st]="skipped (deadline)"
        NOTE[$st]="under 65 s left before S2V_DEADLINE"
        echo "$st: skipped: under 65 s left before S2V_DEADLINE"
        continue
    fi
    ensure_deps
    rm -f "$stamp"
    : >"$log"
    CURRENT="$st"
    SUMMARY=""
    start=$SECONDS
    echo "== $st (log: $log)"
    case "$st" in
        build) stage_build "$log" ;;
        test) stage_test "$log" ;;
        golden) stage_golden "$log" ;;
        bench) stage_bench "$log" ;;
        ncu) stage_ncu "$log" ;;
    esac
    rc=$?
    CURRENT=""
    SECS[$st]=$((SECONDS - start))
    NOTE[$st]="$SUMMARY"
    if ((rc == 0)); then
        STATUS[$st]="ok"
        echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $SUMMARY" >"$stamp"
    elif ((rc == SKIP_RC)); then
        STATUS[$st]="skipped"
    else
        STATUS[$st]="FAILED (exit $rc)"
        FAILED=1
        echo "--- last lines of $log"
        grep -v '^\$ ' "$log" | tail -n 15
        echo "---"
    fi
    echo "$st: ${STATUS[$st]} in ${SECS[$st]}s: $SUMMARY"
    print_table >/dev/null
    pack_tar >/dev/null
done

echo
print_table
if ((NOGPU)); then echo "no GPU here: nothing was validated ($GPU_REASON)"; fi
pack_tar
if ((FAILED)); then exit 1; fi
if ((NOGPU && REQUIRE_GPU)); then exit 3; fi
exit 0
