"""Benchmark of the fused residual dilated GRU stack (issue 7). Not a test.

    python -m profiling.bench_dilated_gru [--quick] [--threads 2]
        [--compile-timeout 1500] [--no-compile] [--no-sweeps] [--out DIR]

D = 66, L = 3, dilation 2, fp32; ``fwd`` (no grad) and ``fwdbwd`` (forward +
backward of y.sum() into x and every parameter).

- Shapes: T = 256 and 2048, B = 1 and 16; ``--quick``: T = 256 only.
- Implementations: ``eager`` (``dilated_gru_ref``: one op per gate, a Python
  loop over T × L cells); ``compile`` (``torch.compile`` of the eager module,
  default inductor mode, which unrolls the T × L loop, in a child process with
  a time limit; only with ``--compile-full-module``, up to T = 256: it took 9.5
  minutes to compile the T = 256 forward on 2 cores); ``compile_cell`` (the eager loop with
  its cell function compiled once: regional compilation, the usual way to
  compile an RNN); ``gru_reshape`` (per layer, the dilation as a batch of
  interleaved subsequences through ``nn.GRU``, cuDNN on a GPU, residual between
  layers); ``cpu`` / ``cuda`` (the fused kernels of s2v._C); on a GPU also
  ``eager_cuda_graph`` (eager captured in one CUDA graph).
- Scaling sweeps (not with ``--quick``): time vs T (64 → 4096) and batch
  (1 → 16) for eager, gru_reshape and the fused backend.

Timing and JSON: profiling/timing.py (median of ≥ 20 repetitions; 5 with
``--quick``) and profiling/common.py. ``floor_ms`` is the dependency chain of
SPEC §9, (T + L) dependent cell steps (see profiling/peaks.py for the step
model), or the arithmetic at the measured matmul rate where that is larger.
The op's tests run first; if any fails, the script exits non-zero before
timing anything.
"""
from __future__ import annotations

import importlib
import math
import os
import re
import shutil
import subprocess
import sys

import torch
import torch.nn.functional as F

from profiling import peaks as peaks_mod
from profiling.common import (
    ROOT,
    round_times,
    time_backends,
    child_main,
    fused_backend_here,
    op_bench_parser,
    start_run,
    finish_row,
    write_results,
)
from profiling.timing import cuda_graph, resolve_reps, time_with_memory
from s2v.nn import DilatedResidualGRU

# s2v.ops re-exports the op function under the module's name, hence import_module.
dgru_ops = importlib.import_module("s2v.ops.dilated_gru")

D, L, DILATION = 66, 3, 2
PASSES = ("fwd", "fwdbwd")
TESTS = ["tests/ops/test_dilated_gru_cpu.py", "tests/ops/test_dilated_gru.py"]


class GruReshape(torch.nn.Module):
    """The usual composite: each layer's dilation as a batch of interleaved subsequences."""

    def __init__(self, ref: DilatedResidualGRU):
        super().__init__()
        self.grus = torch.nn.ModuleList()
        for l in range(ref.num_layers):
            gru = torch.nn.GRU(ref.input_size, ref.input_size, batch_first=True)
            with torch.no_grad():
                gru.weight_ih_l0.copy_(ref.weight_ih[l])
                gru.weight_hh_l0.copy_(ref.weight_hh[l])
                gru.bias_ih_l0.copy_(ref.bias_ih[l])
                gru.bias_hh_l0.copy_(ref.bias_hh[l])
            self.grus.append(gru)
        self.dilation = ref.dilation

    def forward(self, x):
        B, T, Dm = x.shape
        u = x
        for l, gru in enumerate(self.grus):
            span = self.dilation ** l
            Tp = -(-T // span) * span
            up = F.pad(u, (0, 0, 0, Tp - T)) if Tp != T else u
            # [B, Tp/span, span, D] -> [B*span, Tp/span, D]: subsequence i holds steps i, i+span, ...
            seq = up.view(B, Tp // span, span, Dm).transpose(1, 2).reshape(B * span, Tp // span, Dm)
            h, _ = gru(seq)
            h = h.view(B, span, Tp // span, Dm).transpose(1, 2).reshape(B, Tp, Dm)[:, :T]
            u = F.leaky_relu((h + u) / math.sqrt(2), 0.2) if len(self.grus) > 1 else h
        return u


def _kernel_name(mangled: str) -> str:
    """`forward_grouped_kernel<bf16, 4>` from a mangled kernel name."""
    m = re.search(r"(forward_grouped_kernel|backward_grouped_kernel|forward_kernel|"
                  r"backward_kernel)(.*)NS0_6Params", mangled)
    if not m:
        return mangled
    args = []
    tail = m.group(2) or ""
    if "13__nv_bfloat16" in tail:
        args.append("bf16")
    elif tail.startswith("If") or "IfLi" in tail:
        args.append("float")
    lanes = re.search(r"Li(\d+)E", tail)
    if lanes:
        args.append(lanes.group(1))
    return m.group(1) + (f"<{', '.join(args)}>" if args else "")


def ptxas_kernels() -> list:
    """Registers and spills of every CUDA kernel from `nvcc -Xptxas -v` (where nvcc exists)."""
    nvcc = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if os.path.exists("/usr/local/bin/nvcc")
                                    else None)
    if nvcc is None:
        return []
    out = []
    for source in ("dilated_gru_cuda.cu", "dilated_gru_cuda_grouped.cu"):
        src = os.path.join(ROOT, "csrc", "dilated_gru", source)
        for arch in ("sm_80", "sm_90a"):
            proc = subprocess.run([nvcc, "-std=c++17", f"-arch={arch}", "-O3", "-Xptxas", "-v",
                                   "-I", os.path.join(ROOT, "csrc"), "-cubin", "-o", os.devnull,
                                   src], capture_output=True, text=True)
            current = None
            for line in (proc.stdout + proc.stderr).splitlines():
                m = re.search(r"Function properties for (\S+)", line)
                if m:
                    current = {"name": _kernel_name(m.group(1)), "arch": arch, "registers": None,
                               "spills": None, "shared_mem_bytes": 0}
                    out.append(current)
                    continue
                m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
                if m and current is not None:
                    current["spill_stores"] = int(m.group(1))
                    current["spill_loads"] = int(m.group(2))
                    current["spills"] = int(m.group(1)) + int(m.group(2))  # schema key
                m = re.search(r"(\d+) bytes smem", line)
                if m and current is not None:
                    # Static shared memory; the grouped kernels' weights are dynamic,
                    # sized per problem at launch (see their Placement).
                    current["shared_mem_bytes"] = int(m.group(1))
                m = re.search(r"Used (\d+) registers", line)
                if m and current is not None:
                    current["registers"] = int(m.group(1))
    return out


def check_gru_reshape(device) -> float:
    """The composite computes the same function (else its time means nothing)."""
    torch.manual_seed(0)
    base = DilatedResidualGRU(D, L, DILATION, backend="eager").to(device)
    comp = GruReshape(base).to(device)
    x = torch.randn(2, 37, D, device=device)
    with torch.no_grad():
        a, b = comp(x), base(x)[0]
    return ((a - b).abs().max() / b.abs().max()).item()


def flops(T: int, B: int, pas: str) -> float:
    fwd = 2 * 3 * 2 * D * D * L * T * B  # SPEC §9 per step and layer
    return fwd if pas == "fwd" else 3 * fwd


def make_step(impl: str, case: dict):
    T, B, pas, device = case["T"], case["B"], case["pass"], case["device"]
    torch.manual_seed(0)
    base = DilatedResidualGRU(D, L, DILATION, backend="eager").to(device)
    if impl == "gru_reshape":
        model = GruReshape(base).to(device)
    elif impl in ("cpu", "cuda", "cuda_per_unit"):
        # cuda: the CUDA backend as shipped (grouped kernels where they fit);
        # cuda_per_unit: its per-unit kernels. S2V_DGRU_CUDA_KERNEL is read per
        # call, and the implementations are timed one after another.
        if impl == "cuda_per_unit":
            os.environ["S2V_DGRU_CUDA_KERNEL"] = "per_unit"
        else:
            os.environ.pop("S2V_DGRU_CUDA_KERNEL", None)
        model = DilatedResidualGRU(D, L, DILATION, backend=impl.split("_")[0]).to(device)
        model.load_state_dict(base.state_dict())
    else:
        model = base
    if impl == "compile_cell":
        # The eager loop looks the cell up in its module at every step.
        dgru_ops.gru_cell_ref = torch.compile(dgru_ops.gru_cell_ref, dynamic=False)
    fn = torch.compile(model) if impl == "compile" else model
    x = torch.randn(B, T, D, device=device, requires_grad=(pas == "fwdbwd"))

    def out_of(res):
        return res[0] if isinstance(res, tuple) else res

    if pas == "fwd":
        def step():
            with torch.no_grad():
                out_of(fn(x))
    else:
        def step():
            out_of(fn(x)).sum().backward()
    return cuda_graph(step) if impl == "eager_cuda_graph" else step


def time_case(impl: str, case: dict, reps: int) -> dict:
    return time_with_memory(lambda: make_step(impl, case), case["device"], reps)


IN_CHILD = ("compile", "compile_cell")


def row_for(case: dict, impls, args, peaks, sweep=None) -> dict:
    T, B, pas, device = case["T"], case["B"], case["pass"], case["device"]

    def skip(impl):
        if impl == "compile" and not args.compile_full_module:
            return ("skipped: compiling the unrolled T x L loop at T = 256 took 9.5 min for "
                    "the forward alone on a 2-core CPU; pass --compile-full-module "
                    "(compile_cell is the compiled baseline)")
        if impl == "compile" and T > args.compile_max_t:
            return f"skipped: T > {args.compile_max_t} (compilation unrolls T x L cells)"
        return None

    times, reps, gflops, mem, notes = time_backends(
        impls, case, args, "bench_dilated_gru", time_case, flops(T, B, pas), IN_CHILD, skip)
    on_gpu = device.startswith("cuda")
    # Forward: T + L dependent steps; backward walks the chain again in reverse.
    chain = (T + L) * (1 if pas == "fwd" else 2)
    row = {"name": f"dgru_d{D}_l{L}_t{T}_b{B}", "pass": pas, "dtype": "fp32",
           "shape": {"B": B, "T": T, "D": D, "L": L, "dilation": DILATION},
           "times_ms": round_times(times), "reps": reps,
           "floor_ms": peaks_mod.floor_ms(peaks, "fp32", flops(T, B, pas), chain_steps=chain,
                                          chain_depth=D, on_gpu=on_gpu),
           "gflops": gflops, "peak_mem_mb": mem, "flops": flops(T, B, pas)}
    return finish_row(row, times, notes, "dilated_gru", sweep, f"{row['name']} {pas}", 3)


def main(argv=None) -> int:
    ap = op_bench_parser(__doc__, "T = 256 only, 5 repetitions, no sweeps", 1500.0)
    ap.add_argument("--compile-full-module", action="store_true",
                    help="also time torch.compile of the whole module (minutes of compilation "
                         "per shape and pass)")
    ap.add_argument("--compile-max-t", type=int, default=256,
                    help="longest T for which whole-module torch.compile is attempted")
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args.child, time_case)
    args.reps = resolve_reps(ap, args.reps, args.quick)

    tests = start_run(args.threads, TESTS)
    if tests is None:
        return 1

    here = fused_backend_here(dgru_ops.dilated_gru_backends, "cuda")
    if here is None:
        return 1
    device, fused = here
    on_gpu = device == "cuda"
    peaks = peaks_mod.measure(device, ("fp32",))
    impls = ["eager", "compile", "compile_cell", "gru_reshape", fused]
    if on_gpu:
        impls.insert(1, "eager_cuda_graph")
        impls.append("cuda_per_unit")
    shapes = [(T, B) for T in ((256,) if args.quick else (256, 2048)) for B in (1, 16)]
    rows = []
    for T, B in shapes:
        for pas in PASSES:
            rows.append(row_for(dict(T=T, B=B, device=device, **{"pass": pas}), impls, args,
                                peaks))
    if not (args.quick or args.no_sweeps):
        sweeps = [("T", dict(T=t, B=1)) for t in (64, 128, 256, 512, 1024, 2048, 4096)]
        sweeps += [("batch", dict(T=256, B=b)) for b in (1, 2, 4, 8, 16)]
        for axis, case in sweeps:
            for pas in PASSES:
                rows.append(row_for(dict(case, device=device, **{"pass": pas}),
                                    ["eager", "gru_reshape", fused]
                                + (["cuda_per_unit"] if on_gpu else []), args, peaks,
                                sweep=axis))

    path = write_results("dilated_gru", rows, tests, device=device, kernels=ptxas_kernels(),
                         out_dir=args.out,
                         extra={"peaks": peaks, "threads": args.threads,
                                "notes": {"gru_reshape_max_rel_err_vs_eager":
                                          check_gru_reshape(device),
                                          "compile": "torch.compile, default (inductor) mode",
                                          "tf32": "off"}})
    print(f"wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
