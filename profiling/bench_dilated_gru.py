"""Benchmark of the fused dilated residual GRU stack (issue 7). Not a test.

    .venv/bin/python profiling/bench_dilated_gru.py [--reps 20] [--threads 2]
        [--compile-timeout 240] [--out profiling/results/]

Shapes: D = 66, L = 3, dilation 2, T = 256 and 2048, B = 1 and 16; passes
``fwd`` (no grad) and ``fwdbwd`` (forward + backward of y.sum() into x and every
parameter). Implementations:

- ``eager``: ``dilated_gru_ref`` (the PyTorch reference, one op per gate).
- ``compile``: ``torch.compile(eager module)``, default (inductor) mode, in a
  child process with a time limit; recorded as null with a note when the
  compilation does not finish in time (it unrolls the T x L cell loop), and
  skipped above --compile-max-t.
- ``gru_reshape``: per layer, the dilation-as-batch reshape ([B, T, D] ->
  [B * 2^l, T / 2^l, D], dilation^l interleaved subsequences) through
  ``nn.GRU`` (cuDNN on a GPU), with the residual between layers.
- ``cpu`` / ``cuda``: the fused kernels of s2v._C.

Each time is the median of ``--reps`` (>= 20) timed repetitions after warm-up,
measured with ``time.perf_counter``, with the thread count fixed. The op's
tests (tests/ops/test_dilated_gru_cpu.py) run first; if any fails, no speedup
is reported and the script exits non-zero. JSON goes to
``profiling/results/<date>-<device-slug>-dilated_gru.json``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from profiling.common import cpu_model, versions  # noqa: E402
from profiling.common import commit as git_commit  # noqa: E402
from profiling.common import run_tests as _run_tests  # noqa: E402

from s2v.nn import DilatedResidualGRU  # noqa: E402
from s2v.ops.dilated_gru import dilated_gru_backends  # noqa: E402

D, L, DILATION = 66, 3, 2
SHAPES = [(T, B) for T in (256, 2048) for B in (1, 16)]
PASSES = ("fwd", "fwdbwd")










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


def run_tests() -> dict:
    """pytest on the op's tests (counts of passed/failed/skipped)."""
    return _run_tests(["tests/ops/test_dilated_gru_cpu.py"])


def make_callable(impl: str, T: int, B: int, pas: str, device: str):
    torch.manual_seed(0)
    base = DilatedResidualGRU(D, L, DILATION, backend="eager").to(device)
    if impl in ("eager", "compile"):
        model = base
    elif impl == "gru_reshape":
        model = GruReshape(base).to(device)
    else:
        model = DilatedResidualGRU(D, L, DILATION, backend=impl).to(device)
        model.load_state_dict(base.state_dict())
    fn = model
    if impl == "compile":
        fn = torch.compile(model)
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
    return step, model, x


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_impl(impl, T, B, pas, device, reps) -> float:
    step, _, _ = make_callable(impl, T, B, pas, device)
    for _ in range(3):
        step()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def check_gru_reshape(device) -> float:
    """The composite computes the same function (else its time means nothing)."""
    torch.manual_seed(0)
    base = DilatedResidualGRU(D, L, DILATION, backend="eager").to(device)
    comp = GruReshape(base).to(device)
    x = torch.randn(2, 37, D, device=device)
    with torch.no_grad():
        a, b = comp(x), base(x)[0]
    return ((a - b).abs().max() / b.abs().max()).item()


def flops(T, B, pas) -> float:
    fwd = 2 * 3 * 2 * D * D * L * T * B  # SPEC §9 per step and layer
    return fwd if pas == "fwd" else 3 * fwd


def ptxas_kernels() -> list:
    """Registers and spills of every CUDA kernel from `nvcc -Xptxas -v` (where nvcc exists)."""
    nvcc = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if os.path.exists("/usr/local/bin/nvcc")
                                    else None)
    if nvcc is None:
        return []
    out = []
    src = os.path.join(ROOT, "csrc", "dilated_gru", "dilated_gru_cuda.cu")
    for arch in ("sm_80", "sm_90a"):
        proc = subprocess.run([nvcc, "-std=c++17", f"-arch={arch}", "-O3", "-Xptxas", "-v",
                               "-I", os.path.join(ROOT, "csrc"), "-cubin", "-o", os.devnull, src],
                              capture_output=True, text=True)
        current = None
        for line in (proc.stdout + proc.stderr).splitlines():
            m = re.search(r"Function properties for (\S+)", line)
            if m:
                name = re.sub(r".*(forward_kernel|backward_kernel)(I13__nv_bfloat16|If)?.*",
                              lambda k: k.group(1) + {"I13__nv_bfloat16": "<bf16>",
                                                      "If": "<float>"}.get(k.group(2) or "", ""),
                              m.group(1))
                current = {"name": name, "arch": arch, "registers": None}
                out.append(current)
                continue
            m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
            if m and current is not None:
                current["spill_stores"], current["spill_loads"] = int(m.group(1)), int(m.group(2))
            m = re.search(r"Used (\d+) registers", line)
            if m and current is not None:
                current["registers"] = int(m.group(1))
    return out


def child_compile(args) -> None:
    """Runs in a subprocess: prints the compile median for one shape/pass as JSON."""
    torch.set_num_threads(args.threads)
    T, B, pas = args.child
    t0 = time.perf_counter()
    ms = time_impl("compile", int(T), int(B), pas, "cpu", args.reps)
    print(json.dumps({"ms": ms, "wall_s": time.perf_counter() - t0}))


def time_compile(T, B, pas, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", str(T), str(B), pas,
           "--threads", str(args.threads), "--reps", str(args.reps)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.compile_timeout)
    except subprocess.TimeoutExpired:
        return None, f"compile+timing exceeded {args.compile_timeout} s; skipped"
    if proc.returncode != 0:
        return None, "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1])["ms"], None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile-timeout", type=float, default=240.0)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--skip-compile-reason", default="--skip-compile",
                        help="recorded in the JSON notes when --skip-compile is given")
    parser.add_argument("--compile-max-t", type=int, default=256,
                        help="longest T for which torch.compile is attempted (it unrolls the "
                             "T x L cell loop; at T = 2048 that is 6144 cells)")
    parser.add_argument("--out", default=os.path.join(ROOT, "profiling", "results"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reps < 20 and args.child is None:
        parser.error("--reps must be at least 20")
    if args.child:
        child_compile(args)
        return 0

    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tests = run_tests()
    tests_ok = tests["failed"] == 0 and tests["passed"] > 0
    print(f"tests: {tests['summary']}", flush=True)

    impls = ["eager", "gru_reshape"]
    notes = {"compile_mode": "torch.compile(model) default mode (inductor), CPU",
             "threads": torch.get_num_threads(),
             "loadavg_start": list(os.getloadavg()),
             "gru_reshape_max_rel_err_vs_eager": check_gru_reshape("cpu")}
    for name in ("cpu", "cuda"):
        reason = dilated_gru_backends.why_unavailable(name)
        if reason is None:
            impls.append(name)
        else:
            notes[f"{name}_unavailable"] = reason

    benchmarks = []
    for T, B in SHAPES:
        for pas in PASSES:
            row = {"name": f"dgru_d{D}_l{L}_t{T}_b{B}", "pass": pas, "dtype": "fp32",
                   "shape": {"B": B, "T": T, "D": D, "L": L, "dilation": DILATION},
                   "times_ms": {}, "floor_ms": None, "gflops": {}, "peak_mem_mb": {}}
            for impl in impls:
                device = "cuda" if impl == "cuda" else "cpu"
                ms = time_impl(impl, T, B, pas, device, args.reps)
                row["times_ms"][impl] = round(ms, 4)
                row["gflops"][impl] = round(flops(T, B, pas) / (ms * 1e-3) / 1e9, 4)
            if args.skip_compile or T > args.compile_max_t:
                row["times_ms"]["compile"] = None
                row["notes"] = {"compile": "skipped: " + (
                    args.skip_compile_reason if args.skip_compile else
                    f"T > --compile-max-t={args.compile_max_t} (compilation unrolls T x L cells)")}
            else:
                ms, note = time_compile(T, B, pas, args)
                row["times_ms"]["compile"] = None if ms is None else round(ms, 4)
                if ms is not None:
                    row["gflops"]["compile"] = round(flops(T, B, pas) / (ms * 1e-3) / 1e9, 4)
                if note:
                    row["notes"] = {"compile": note}
            if tests_ok:
                for impl in ("cpu", "cuda"):
                    if impl in row["times_ms"]:
                        t = row["times_ms"][impl]
                        row.setdefault("speedup", {})[impl] = {
                            base: round(row["times_ms"][base] / t, 2)
                            for base in ("eager", "compile", "gru_reshape")
                            if row["times_ms"].get(base)}
            benchmarks.append(row)
            print(json.dumps({k: row[k] for k in ("name", "pass", "times_ms")}
                             | ({"speedup": row["speedup"]} if "speedup" in row else {})),
                  flush=True)
    notes["loadavg_end"] = list(os.getloadavg())
    if not tests_ok:
        notes["speedup"] = "not reported: the op's tests did not pass"

    threads = torch.get_num_threads()
    device = f"{cpu_model()} ({threads} threads)"
    if "cuda" in impls:
        device += f" + {torch.cuda.get_device_name()}"
    result = {"device": device, "commit": git_commit(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "versions": versions(), "benchmarks": benchmarks, "kernels": ptxas_kernels(),
              "tests": {k: tests[k] for k in ("passed", "failed", "skipped")}, "notes": notes}
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{datetime.date.today().isoformat()}-{slug}-dilated_gru.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {path}")
    return 0 if tests_ok else 1


if __name__ == "__main__":
    sys.exit(main())
