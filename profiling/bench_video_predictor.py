"""Benchmark of the video prediction layer's fused kernels (issue 6). Not a test.

    python -m profiling.bench_video_predictor [--quick] [--threads 2]
        [--compile-timeout 600] [--no-compile] [--no-sweeps] [--out DIR]

The directional layer, C = 32, k = 3, T = 16; ``fwd`` (no grad) and
``fwdbwd`` (forward, then the backward of Σ y into x and every parameter).

- Shapes: 64² (and 128² on a GPU), B = 1 and 4; ``--quick``: 64², B = 1;
  ``--sizes`` replaces the frame sizes.
- dtypes: fp32 (TF32 off everywhere); bf16 too on a GPU.
- Implementations: ``eager`` (``VideoPredictor(backend='eager')``, SPEC §5 in
  PyTorch ops); ``compile`` (``torch.compile`` of that module, default
  inductor mode, in a child process with a time limit; B = 1 only); the fused backend of
  the device (``cpu``: C++ in s2v._C; ``triton`` on a GPU); on a GPU also
  ``eager_cuda_graph`` (eager captured in a CUDA graph) and, for bf16,
  ``eager_autocast`` (fp32 module under ``torch.autocast(bfloat16)``).
- Scaling sweeps (not with ``--quick``): time vs T (8 → 256), resolution
  (32 → 256) and batch (1 → 16) for eager and the fused backend. GPU: around
  128², T = 16, both passes; CPU: around 32², T = 8, forward only (the CPU
  full run stays within minutes).

Timing and JSON: see profiling/timing.py (median of ≥ 20 repetitions; 5 with
``--quick``) and profiling/common.py. FLOPs from SPEC §9 (backward = 2 ×
forward); ``floor_ms`` = FLOPs over the matmul rate measured in the same run
(the layer is compute-bound: its minimal traffic, x and y once, is far below
the compute time). The op's tests run first; if any fails, the script exits
non-zero before timing anything.
"""
from __future__ import annotations

import os
import sys

import torch

from profiling import peaks as peaks_mod
from profiling.common import (
    round_times,
    time_backends,
    child_main,
    fused_backend_here,
    op_bench_parser,
    positive_int,
    start_run,
    finish_row,
    write_results,
)
from profiling.timing import cuda_graph, resolve_reps, time_with_memory
from s2v.nn import VideoPredictor
from s2v.ops.video_predictor import video_predictor_backends

C, K, T = 32, 3, 16
PASSES = ("fwd", "fwdbwd")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TESTS = ["tests/ops/test_video_predictor_cpu.py", "tests/ops/test_video_predictor_triton.py",
         "tests/ops/test_dirconv_gru.py"]


def flops(S: int, B: int, T_: int, pas: str) -> float:
    """SPEC §9: gates 2·3·τ·(C_in + C_hid)·C_hid·H·W + blend 2·5C·(C+1)·H·W per frame."""
    taps = K * K + 4 * ((K + 1) // 2) ** 2
    frame = 2 * 3 * taps * (2 * C) * C * S * S + 2 * 5 * C * (C + 1) * S * S
    return frame * T_ * B * (1 if pas == "fwd" else 3)


def min_bytes(S: int, B: int, T_: int, pas: str, elt: int) -> float:
    """x read and y written once; fwdbwd adds dy read, dx written, and the saved
    hidden states of the five flows written once and read once."""
    frame = C * S * S * elt
    fwd = 2 * frame * T_ * B
    return fwd if pas == "fwd" else 2 * fwd + 2 * 5 * frame * T_ * B


def make_step(impl: str, case: dict):
    """The callable timed for ``impl`` on ``case`` (S, B, T, pass, dtype, device)."""
    S, B, T_, pas, device = case["S"], case["B"], case["T"], case["pass"], case["device"]
    dtype = DTYPES[case["dtype"]]
    torch.manual_seed(0)
    base = VideoPredictor(C, K, backend="eager").to(device)
    fused = impl in ("cpu", "triton")
    model = VideoPredictor(C, K, backend=impl).to(device) if fused else base
    if fused:
        model.load_state_dict(base.state_dict())
    autocast = impl == "eager_autocast"
    if not autocast:
        model = model.to(dtype)
    fn = torch.compile(model) if impl == "compile" else model
    x = torch.randn(B, T_, C, S, S, device=device, dtype=torch.float32 if autocast else dtype,
                    requires_grad=(pas == "fwdbwd"))

    def run():
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                            enabled=autocast):
            y = fn(x)[0]
        return y

    if pas == "fwd":
        def step():
            with torch.no_grad():
                run()
    else:
        def step():
            run().float().sum().backward()
    if impl == "eager_cuda_graph":
        return cuda_graph(step)
    return step


def time_case(impl: str, case: dict, reps: int) -> dict:
    return time_with_memory(lambda: make_step(impl, case), case["device"], reps)


def row_for(case: dict, impls, args, peaks, on_gpu, sweep=None) -> dict:
    S, B, T_, pas, dt = case["S"], case["B"], case["T"], case["pass"], case["dtype"]
    def skip(impl):
        # Each compilation takes minutes (fwd+bwd: ~4 on 2 cores); the B = 1
        # shapes are the ones the targets name.
        if impl == "compile" and B != 1:
            return "skipped: torch.compile is timed at B = 1 only (minutes per compilation)"
        return None

    times, reps, gflops, mem, notes = time_backends(
        impls, case, args, "bench_video_predictor", time_case, flops(S, B, T_, pas),
        skip=skip)
    elt = 2 if dt == "bf16" else 4
    row = {"name": f"vp_dir_k{K}_c{C}_s{S}_t{T_}_b{B}", "pass": pas, "dtype": dt,
           "shape": {"B": B, "T": T_, "C": C, "H": S, "W": S, "k": K},
           "times_ms": round_times(times), "reps": reps,
           "floor_ms": peaks_mod.floor_ms(peaks, dt, flops(S, B, T_, pas),
                                          min_bytes(S, B, T_, pas, elt)),
           "gflops": gflops, "peak_mem_mb": mem, "flops": flops(S, B, T_, pas)}
    return finish_row(row, times, notes, "video_predictor", sweep, f"{row['name']} {pas} {dt}")


def sweep_cases(on_gpu: bool):
    """(axis, case) pairs of the scaling sweeps."""
    base = dict(S=128, T=16, B=1) if on_gpu else dict(S=32, T=8, B=1)
    passes = PASSES if on_gpu else ("fwd",)
    axes = {"T": [8, 16, 32, 64, 128, 256], "resolution": [32, 64, 128, 256],
            "batch": [1, 2, 4, 8, 16]}
    key = {"T": "T", "resolution": "S", "batch": "B"}
    for axis, values in axes.items():
        for pas in passes:
            for v in values:
                yield axis, dict(base, **{key[axis]: v}, **{"pass": pas})


def kernel_rows() -> list:
    """Registers/spills of every Triton kernel, compiled offline for sm_90."""
    try:
        from s2v.kernels import video_predictor as vp
        usage = vp.kernel_resource_usage()
    except Exception as exc:  # noqa: BLE001 - a report, not a requirement
        return [{"name": "video_predictor", "error": str(exc).splitlines()[0][:200]}]
    return [{"name": name, "arch": "sm_90 (triton.compile offline)", "registers": u["n_regs"],
             "spills": u["n_spills"], "shared_mem_bytes": u["shared"]}
            for name, u in usage.items()]


def main(argv=None) -> int:
    ap = op_bench_parser(__doc__, "64², B = 1, 5 repetitions, no sweeps", 600.0)
    ap.add_argument("--sizes", type=positive_int, nargs="+", default=None,
                    help="frame sizes to time instead of the default ones (e.g. 128 for "
                         "the shape the GPU targets name)")
    ap.add_argument("--dtypes", nargs="+", choices=("fp32", "bf16"), default=None,
                    help="dtypes to time (default: fp32 and bf16 on a GPU, fp32 on a CPU)")
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args.child, time_case)
    args.reps = resolve_reps(ap, args.reps, args.quick)

    tests = start_run(args.threads, TESTS)
    if tests is None:
        return 1

    here = fused_backend_here(video_predictor_backends, "triton")
    if here is None:
        return 1
    device, fused = here
    on_gpu = device == "cuda"
    dtypes = ("fp32", "bf16") if on_gpu else ("fp32",)
    if args.dtypes:
        dtypes = tuple(dict.fromkeys(args.dtypes))
    peaks = peaks_mod.measure(device, dtypes)
    print(f"peaks: fp32 {peaks['fp32_gflops']:.0f} GFLOP/s, copy {peaks['dram_gbs']:.0f} GB/s",
          flush=True)

    sizes = (64,) if args.quick else ((64, 128) if on_gpu else (64,))
    if args.sizes:
        sizes = tuple(args.sizes)
    batches = (1,) if args.quick else (1, 4)
    rows = []
    for dt in dtypes:
        impls = ["eager", "compile", fused]
        if on_gpu:
            impls.insert(1, "eager_cuda_graph")
            if dt == "bf16":
                impls.insert(1, "eager_autocast")
        for S in sizes:
            for B in batches:
                for pas in PASSES:
                    case = dict(S=S, B=B, T=T, dtype=dt, device=device, **{"pass": pas})
                    rows.append(row_for(case, impls, args, peaks, on_gpu))
    if not (args.quick or args.no_sweeps):
        for axis, case in sweep_cases(on_gpu):
            case.update(dtype="fp32", device=device)
            rows.append(row_for(case, ["eager", fused], args, peaks, on_gpu, sweep=axis))

    path = write_results("video_predictor", rows, tests, device=device,
                         kernels=kernel_rows(), out_dir=args.out,
                         extra={"peaks": peaks, "threads": args.threads,
                                "notes": {"flops": "SPEC §9 cost model, fwdbwd = 3 x fwd",
                                          "compile": "torch.compile(module), default mode",
                                          "tf32": "off"}})
    print(f"wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
