"""Benchmark of the video prediction layer's fused kernels (issue 6). Not a test.

    .venv/bin/python profiling/bench_video_predictor.py [--reps 20] [--threads 2]
        [--compile-timeout 300] [--no-compile] [--out profiling/results/]

Shapes: C = 32, k = 3, T = 16, 64×64 (and 128×128 on a GPU), B = 1 and 4, the
directional layer; passes ``fwd`` (no grad) and ``fwdbwd`` (forward, then the
backward of Σ y into x and every parameter). Implementations:

- ``eager``: ``VideoPredictor(backend='eager')``, the reference of SPEC §5.
- ``compile``: ``torch.compile`` of that eager layer, default (inductor) mode,
  in a child process with a time limit (it unrolls T × 5 flows); null with a
  note when it does not finish in time or fails.
- ``cpu``: the C++ kernels of s2v._C (CPU tensors); ``triton``: the Triton
  kernels (CUDA tensors).

Timing: median of ``--reps`` (>= 20) repetitions after warm-up with
``time.perf_counter`` (CUDA synchronised), with ``torch.set_num_threads``
fixed; a case whose single repetition takes longer than ``--slow-s`` runs
``--slow-reps`` repetitions instead, recorded per row under ``reps``. GFLOP/s
use SPEC §9's cost model (backward = 2 × forward) and are printed next to the
machine's sgemm rate (a 2048² matmul, fp32, TF32 off) measured in the same run.
The op's tests (tests/ops/test_video_predictor_cpu.py) run first; if any fails,
no speedup is reported and the script exits non-zero. JSON goes to
``profiling/results/<date>-<device-slug>-video_predictor.json``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from profiling.common import cpu_model, versions  # noqa: E402
from profiling.common import commit as git_commit  # noqa: E402
from profiling.common import run_tests as _run_tests  # noqa: E402

from s2v.nn import VideoPredictor  # noqa: E402
from s2v.ops.video_predictor import video_predictor_backends  # noqa: E402

C, K, T = 32, 3, 16
PASSES = ("fwd", "fwdbwd")
TESTS = os.path.join(ROOT, "tests", "ops", "test_video_predictor_cpu.py")










def run_tests() -> dict:
    """pytest on the op's tests (counts of passed/failed/skipped)."""
    return _run_tests([TESTS])


def flops(S: int, B: int, pas: str) -> float:
    """SPEC §9: gates 2·3·τ·(C_in + C_hid)·C_hid·H·W + blend 2·5C·(C+1)·H·W per frame."""
    taps = K * K + 4 * ((K + 1) // 2) ** 2
    frame = 2 * 3 * taps * (2 * C) * C * S * S + 2 * 5 * C * (C + 1) * S * S
    fwd = frame * T * B
    return fwd if pas == "fwd" else 3 * fwd


def sgemm_gflops(device: str, dtype=torch.float32, n: int = 2048, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def make_step(impl: str, S: int, B: int, pas: str, device: str, dtype):
    torch.manual_seed(0)
    base = VideoPredictor(C, K, backend="eager").to(device)
    if impl in ("eager", "compile"):
        model = base
    else:
        model = VideoPredictor(C, K, backend=impl).to(device)
        model.load_state_dict(base.state_dict())
    model = model.to(dtype)
    fn = torch.compile(model) if impl == "compile" else model
    x = torch.randn(B, T, C, S, S, device=device, dtype=dtype,
                    requires_grad=(pas == "fwdbwd"))
    if pas == "fwd":
        def step():
            with torch.no_grad():
                fn(x)
    else:
        def step():
            fn(x)[0].sum().backward()
    return step


def time_impl(impl, S, B, pas, device, dtype, reps, slow_s, slow_reps):
    """(median ms, reps used, peak MB or None)."""
    step = make_step(impl, S, B, pas, device, dtype)
    t0 = time.perf_counter()
    step()  # warm-up (compilation for 'compile')
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - t0
    n = slow_reps if first > slow_s else reps
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else None
    return statistics.median(times) * 1e3, n, peak


def child_main(args) -> None:
    """Time one case in this process and print a JSON line (used for 'compile')."""
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    ms, n, peak = time_impl(args.impl, args.size, args.batch, args.pass_, args.device, dtype,
                            args.reps, args.slow_s, args.slow_reps)
    print(json.dumps({"ms": ms, "reps": n, "peak": peak}))


def time_in_child(impl, S, B, pas, device, dtype_name, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--impl", impl,
           "--size", str(S), "--batch", str(B), "--pass", pas, "--device", device,
           "--dtype", dtype_name, "--threads", str(args.threads), "--reps", str(args.reps),
           "--slow-s", str(args.slow_s), "--slow-reps", str(args.slow_reps)]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=args.compile_timeout)
    except subprocess.TimeoutExpired:
        return None, f"did not finish within {args.compile_timeout} s (compile + timing)"
    if proc.returncode != 0:
        return None, "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
    return json.loads(proc.stdout.strip().splitlines()[-1]), None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--slow-s", type=float, default=3.0,
                    help="a case slower than this per repetition runs --slow-reps reps")
    ap.add_argument("--slow-reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile-timeout", type=float, default=300.0)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "profiling", "results"))
    # child mode (one case, JSON on stdout)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--pass", dest="pass_", help=argparse.SUPPRESS)
    ap.add_argument("--device", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args)
        return 0
    if args.reps < 20:
        ap.error("--reps: at least 20")

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(args.threads)
    tests = run_tests()
    print(f"tests: {tests['summary']}")
    if tests["failed"]:
        print("the op's tests fail: no speedup is reported", file=sys.stderr)
        return 1

    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    fused = "triton" if on_gpu else "cpu"
    if video_predictor_backends.why_unavailable(fused) is not None:
        print(f"backend {fused!r} unavailable: {video_predictor_backends.why_unavailable(fused)}",
              file=sys.stderr)
        return 1
    sizes = (64, 128) if on_gpu else (64,)
    dtypes = ("float32", "bfloat16") if on_gpu else ("float32",)
    if on_gpu:
        name = f"{torch.cuda.get_device_name()} (1 GPU)"
    else:
        name = f"{cpu_model()} ({args.threads} threads)"
    matmul = {d: sgemm_gflops(device, getattr(torch, d)) for d in dtypes}
    print(f"{name}: matmul {', '.join(f'{d} {v:.0f}' for d, v in matmul.items())} GFLOP/s")

    rows = []
    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        short = {"float32": "fp32", "bfloat16": "bf16"}[dtype_name]
        for S in sizes:
            for B in (1, 4):
                for pas in PASSES:
                    times, gflops, reps, notes, peak = {}, {}, {}, [], {}
                    for impl in ("eager", "compile", fused):
                        if impl == "compile":
                            if args.no_compile:
                                times[impl] = None
                                notes.append("compile: skipped (--no-compile)")
                                continue
                            res, why = time_in_child(impl, S, B, pas, device, dtype_name, args)
                            if res is None:
                                times[impl] = None
                                notes.append(f"compile (inductor, default mode): {why}")
                                continue
                            ms, n, pk = res["ms"], res["reps"], res["peak"]
                        else:
                            ms, n, pk = time_impl(impl, S, B, pas, device, dtype, args.reps,
                                                  args.slow_s, args.slow_reps)
                        times[impl] = ms
                        reps[impl] = n
                        gflops[impl] = flops(S, B, pas) / ms / 1e6
                        if pk is not None:
                            peak[impl] = pk
                    row = {"name": f"vp_dir_k{K}_c{C}_s{S}_t{T}_b{B}", "pass": pas,
                           "dtype": short,
                           "shape": {"B": B, "T": T, "C": C, "H": S, "W": S, "k": K},
                           "times_ms": times, "floor_ms": None, "gflops": gflops,
                           "matmul_gflops": matmul[dtype_name], "peak_mem_mb": peak,
                           "reps": reps, "threads": args.threads,
                           "speedup_vs_eager": {i: times["eager"] / t for i, t in times.items()
                                                if t and i != "eager"}}
                    if notes:
                        row["notes"] = notes
                    rows.append(row)
                    shown = "  ".join(f"{i} {t:.1f} ms ({gflops[i]:.0f} GF/s)" if t else f"{i} -"
                                      for i, t in times.items())
                    print(f"{row['name']} {pas} {short}: {shown}  "
                          f"[{fused} {row['speedup_vs_eager'].get(fused, 0):.2f}x eager]")

    kernels = []
    if on_gpu:
        try:
            from s2v.kernels import video_predictor as vp
            kernels = vp.kernel_resource_usage()
        except Exception as exc:  # noqa: BLE001 - a report, not a requirement
            kernels = [{"error": str(exc)}]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    date = datetime.date.today().isoformat()
    result = {"device": name, "commit": git_commit(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "versions": versions(), "benchmarks": rows, "kernels": kernels,
              "tests": {k: tests[k] for k in ("passed", "failed", "skipped")},
              "notes": ("times: median ms; gflops by SPEC §9 (fwdbwd = 3 x fwd FLOPs); "
                        "matmul_gflops: 2048^2 matmul in the same run; eager and cpu on the "
                        "same threads")}
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{date}-{slug}-video_predictor.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
