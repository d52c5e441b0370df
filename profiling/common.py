"""What every benchmark records: device, commit, versions, timing, and the JSON file.

Results follow one schema (keys kept exactly; more may be added)::

    {"device", "commit", "date", "versions": {"python", "torch", "triton", "cuda", "s2v"},
     "benchmarks": [{"name", "pass", "dtype", "shape", "times_ms", "floor_ms",
                     "gflops", "peak_mem_mb"}],
     "kernels": [{"name", "registers", "spills", "shared_mem_bytes"}],
     "tests": {"passed", "failed", "skipped"},
     "peaks": {"fp32_gflops", "bf16_gflops", "dram_gbs", ...}}

Optional row keys: ``sweep: {"op", "axis"}`` on scaling-sweep rows (axis T,
resolution or batch), ``notes: {backend: why it did not run}``, ``speedup``,
``reps``, ``flops``. Timing lives in profiling/timing.py, peaks and floors in
profiling/peaks.py.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys

import torch

from profiling.cli_types import out_dir, positive_float, positive_int  # noqa: F401 (re-exported)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "profiling", "results")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str = "cpu") -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


def device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


def commit() -> str:
    """The checked-out commit; ``S2V_COMMIT`` overrides it for a working tree copied
    without its git metadata (a remote GPU run of a tree whose .git is stale)."""
    if os.environ.get("S2V_COMMIT", "").strip():
        return os.environ["S2V_COMMIT"].strip()
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict[str, str | None]:
    import s2v

    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "triton": triton_version, "cuda": torch.version.cuda, "s2v": s2v.__version__}


# Environment variables that change which kernel path s2v._C takes.
PATH_OVERRIDES = ("S2V_VP_CPU_TAPS", "S2V_DGRU_TEAM", "S2V_DGRU_CUDA_KERNEL")


def extension_info() -> dict:
    """How s2v._C was built and which paths it takes on this machine (e.g.
    ``cpu_fused_taps``: the video predictor's AVX-512 tap loops), with any
    environment override of them: the figures of a run depend on both."""
    from s2v._extension import build_info

    info = dict(build_info())
    info["overrides"] = {k: os.environ[k] for k in PATH_OVERRIDES if k in os.environ}
    return info


def run_tests(paths: list[str]) -> dict[str, int]:
    """Run pytest on ``paths``; the counts go into the JSON, and a failure blocks claims.

    ``$S2V_PYTEST_ARGS`` (``-n 8`` with pytest-xdist, say) is passed on.
    """
    extra = shlex.split(os.environ.get("S2V_PYTEST_ARGS", ""))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *extra, *paths], cwd=ROOT, capture_output=True, text=True)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    for n, what in re.findall(r"(\d+) (passed|failed|skipped|errors?)", tail):
        counts["failed" if what.startswith("error") else what] += int(n)
    if proc.returncode not in (0, 5) and counts["failed"] == 0:
        counts["failed"] = 1  # pytest itself failed (collection error, crash)
    counts["summary"] = tail
    return counts


def write_results(topic: str, benchmarks: list, tests: dict[str, int], device: str = "cpu",
                  kernels: list | None = None, out_dir: str = RESULTS_DIR,
                  extra: dict | None = None) -> str:
    name = device_name(device)
    doc = {"device": name, "commit": commit(),
           "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "versions": versions(), "extension": extension_info(), "benchmarks": benchmarks,
           "kernels": kernels or [], "tests": tests}
    if extra:
        doc.update(extra)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{_dt.date.today().isoformat()}-{device_slug(name)}-"
                                 f"{topic}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    return path


def run_child(module: str, case: dict, timeout: float):
    """Run ``python -m profiling.<module> --child '<case json>'`` with a time limit.

    Used for torch.compile baselines: a compilation that hangs or crashes must not
    take the whole benchmark with it. Returns ``(result dict, None)`` or
    ``(None, why)``; the child prints its result as the last line of stdout.
    """
    cmd = [sys.executable, "-m", f"profiling.{module}", "--child", json.dumps(case)]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"did not finish within {timeout:.0f} s (compilation + timing)"
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["?"]
        return None, "failed: " + lines[-1][:300]
    return json.loads(proc.stdout.strip().splitlines()[-1]), None


def round_times(d: dict, digits: int = 4) -> dict:
    return {k: (None if v is None else round(v, digits)) for k, v in d.items()}


FUSED_BACKENDS = ("cpu", "triton", "cuda")


def time_backends(impls, case: dict, args, module: str, time_case, flops: float,
                  in_child=("compile",), skip=None):
    """Time every backend of ``impls`` on one benchmark ``case``.

    ``time_case(impl, case, reps)`` times in this process; the backends in
    ``in_child`` (torch.compile baselines) run in a child process of ``module``
    with ``args.compile_timeout``; ``skip(impl)`` may return why a backend is not
    run. A baseline that fails becomes a note; a fused backend that fails raises.
    Returns ``(times, reps, gflops, peak_mem_mb, notes)``, dicts keyed by backend.
    """
    times, reps, gflops, mem, notes = {}, {}, {}, {}, {}
    for impl in impls:
        why = skip(impl) if skip else None
        if why is None and impl in in_child and args.no_compile:
            why = "skipped (--no-compile)"
        if why:
            times[impl], notes[impl] = None, why
            continue
        if impl in in_child:
            res, why = run_child(module, dict(case, impl=impl, reps=args.reps,
                                              threads=args.threads), args.compile_timeout)
            if res is None:
                times[impl], notes[impl] = None, f"torch.compile (inductor, default mode): {why}"
                continue
        else:
            try:
                res = time_case(impl, case, args.reps)
            except Exception as exc:  # noqa: BLE001 - a baseline that cannot run is a note
                if impl in FUSED_BACKENDS:
                    raise
                times[impl], notes[impl] = None, f"failed: {str(exc).splitlines()[0][:200]}"
                continue
        times[impl], reps[impl] = res["median"], res["reps"]
        gflops[impl] = round(flops / res["median"] / 1e6, 4)
        if "peak_mb" in res:
            mem[impl] = round(res["peak_mb"], 1)
    return times, reps, gflops, mem, notes


def start_run(threads: int, test_paths: list[str]) -> dict | None:
    """Fix the thread count, turn TF32 off, and run the op's tests first.

    Returns the test counts, or None (after saying so) when a test fails: no
    speed-up is reported for an op whose tests fail."""
    torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tests = run_tests(test_paths)
    print(f"tests: {tests['summary']}", flush=True)
    if tests["failed"]:
        print("the tests fail: no speed-up is reported", file=sys.stderr)
        return None
    return tests


def finish_row(row: dict, times: dict, notes: dict, op: str, sweep: str | None,
               label: str, digits: int = 2) -> dict:
    """Add the notes, the sweep tag and the fused backend's speed-up over every other
    backend that ran to a benchmark row, and print it as one line."""
    if notes:
        row["notes"] = notes
    if sweep:
        row["sweep"] = {"op": op, "axis": sweep}
    fused = next((i for i in FUSED_BACKENDS if times.get(i)), None)
    if fused:
        row["speedup"] = {base: round(times[base] / times[fused], 3)
                          for base in times if base != fused and times[base]}
    shown = "  ".join(f"{i} {t:.{digits}f}" if t else f"{i} -" for i, t in times.items())
    print(f"{label}{' sweep ' + sweep if sweep else ''}: {shown} ms  "
          f"floor {row['floor_ms']:.{digits}f} ms", flush=True)
    return row


def child_main(case_json: str, time_case) -> int:
    """The child side of :func:`run_child`: time one case, print the result as JSON."""
    case = json.loads(case_json)
    torch.set_num_threads(case["threads"])
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(json.dumps(time_case(case["impl"], case, case["reps"])))
    return 0


def op_bench_parser(doc: str, quick_help: str, compile_timeout: float):
    """The command line the op benchmarks share (their own options are added after)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--compile-timeout", type=positive_float, default=compile_timeout)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-sweeps", action="store_true")
    ap.add_argument("--out", type=out_dir, default=RESULTS_DIR)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap


def fused_backend_here(registry, gpu_backend: str):
    """``(device, fused backend)`` of this machine, or None (said on stderr) when the
    fused backend of ``registry`` cannot run here."""
    on_gpu = torch.cuda.is_available()
    device, fused = ("cuda", gpu_backend) if on_gpu else ("cpu", "cpu")
    why = registry.why_unavailable(fused)
    if why is not None:
        print(f"backend {fused!r} unavailable: {why}", file=sys.stderr)
        return None
    return device, fused
