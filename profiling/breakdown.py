"""Where the time goes: a per-kernel (GPU) or per-operator (CPU) breakdown.

    python -m profiling.breakdown [--targets video_predictor,dilated_gru,train,...]
                                  [--dtypes fp32,bf16] [--backends auto,eager]
                                  [--device cuda|cpu] [--reps 3] [--top 20] [--out DIR]

The benchmarks say how long a fused op or a training iteration takes; this
says what inside it takes the time: our fused kernels, GEMMs, convolutions,
copies or the rest. Each target runs ``--reps`` times under ``torch.profiler``
after a warm-up (which compiles every Triton variant); times are per repetition.
On a GPU the table ranks CUDA kernels by their device time; on a CPU, operators
by their self CPU time (the profiler sees ATen operators and our custom ops, not
what happens inside a kernel).

Targets (shapes of the issue's benchmarks, ``--small`` shrinks them for a smoke
test): ``video_predictor`` (dir, k 3, C 32, 128², T 16, B 1; 64² on a CPU),
``dirconv_gru`` (one directional cell, same shape), ``dilated_gru`` (D 66, L 3,
T 256, B 1), each ``fwd`` and ``fwdbwd``; ``train`` (one training iteration of
the full model, T 16, 128 px on a GPU, 64 px on a CPU) and ``generate`` (one
16-frame chunk).

Writes ``<date>-<device>-breakdown.json`` under ``--out`` (default
profiling/results/breakdown) and prints one Markdown table per target. For a
timeline instead of totals, ``--trace`` also saves a Chrome trace per target
(open in chrome://tracing or Perfetto).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import time

import torch

from profiling.cli_types import out_dir, positive_int
from profiling.common import ROOT, commit, device_name, device_slug, versions

DEFAULT_OUT = os.path.join(ROOT, "profiling", "results", "breakdown")
OP_TARGETS = ("video_predictor", "dirconv_gru", "dilated_gru")
MODEL_TARGETS = ("train", "generate")
TARGETS = OP_TARGETS + MODEL_TARGETS
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# Categories, first match wins; names are CUDA kernel names (GPU) or operator
# names (CPU). "fused" are this project's kernels and custom ops.
CATEGORIES = (
    ("fused", r"_video_predictor_(fwd|bwd)_kernel|(^|[:\s])(forward|backward)(_grouped)?_kernel"
              r"|^s2v::"),
    ("gemm", r"gemm|xmma|cutlass|cublas|sm\d+_.*(tn|nt|nn|tt)_|aten::(mm|addmm_?|bmm|matmul|"
             r"linear|baddbmm_?|addbmm_?|addmv_?|mv)$"),
    ("conv", r"conv|cudnn|im2col|col2im|winograd|implicit_|fft"),
    ("copy", r"copy|memcpy|memset|fill|aten::(cat|stack|contiguous|clone|to|_to_copy|zero_|"
             r"zeros|empty.*|new_.*|index_.*)$|CatArray|cat_"),
    ("reduce", r"reduce|sum|mean|norm"),
    ("elementwise", r"elementwise|aten::(add|sub|mul|div|sigmoid|tanh|leaky_relu|where|abs|"
                    r"pow|exp|neg|clamp|lerp|addcmul|addcdiv|sqrt|rsqrt|.*_)$"),
)


def category(name: str) -> str:
    for label, pattern in CATEGORIES:
        if re.search(pattern, name, re.IGNORECASE):
            return label
    return "other"


# --------------------------------------------------------------------------- targets

def op_shape(op: str, device: str, small: bool) -> dict:
    """The Nsight shapes (profiling.ncu), 64² for the video predictor on a CPU."""
    from profiling.ncu import DGRU_SHAPE, VP_SHAPE

    if op == "dilated_gru":
        return {"D": 8, "L": 2, "dilation": 2, "T": 12, "B": 1} if small else dict(DGRU_SHAPE)
    if small:
        return {"C": 4, "k": 3, "H": 8, "W": 8, "T": 3, "B": 1}
    side = VP_SHAPE["H"] if device == "cuda" else 64
    return dict(VP_SHAPE, H=side, W=side)


def build_op(op: str, backend: str, dtype: torch.dtype, device: str, small: bool):
    """(module, input, shape) for one op target."""
    from s2v.nn import DilatedResidualGRU, DirConvGRU, VideoPredictor

    s = op_shape(op, device, small)
    torch.manual_seed(0)
    if op == "dilated_gru":
        model = DilatedResidualGRU(s["D"], s["L"], s["dilation"], backend=backend)
        shape = (s["B"], s["T"], s["D"])
    else:
        if op == "video_predictor":
            model = VideoPredictor(s["C"], s["k"], directional=True, backend=backend)
        else:
            model = DirConvGRU(s["C"], s["C"], s["k"], orientation="h", backend=backend)
        shape = (s["B"], s["T"], s["C"], s["H"], s["W"])
    model = model.to(device=device, dtype=dtype)
    x = torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)
    return model, x, s


def op_step(model, x, phase: str):
    dy = []

    def step():
        if phase == "fwd":
            with torch.no_grad():
                model(x)
            return
        y = model(x)[0]
        if not dy:
            dy.append(torch.randn_like(y))
        x.grad = None
        model.zero_grad(set_to_none=True)
        (y * dy[0]).sum().backward()
    return step


def model_step(target: str, backend: str, device: str, small: bool):
    from profiling.bench_product import Workload

    size = 16 if small else (128 if device == "cuda" else 64)
    frames = 4 if small else 16
    work = Workload(backend, size, frames, torch.device(device))
    step = work.iteration if target == "train" else work.generation
    return step, {"size": size, "frames": frames, "batch": 1, "config": "full"}


# --------------------------------------------------------------------------- profiling

def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _self_time_us(evt, on_gpu: bool) -> float:
    if on_gpu:
        for attr in ("self_device_time_total", "self_cuda_time_total"):
            v = getattr(evt, attr, None)
            if v is not None:
                return float(v)
        return 0.0
    return float(evt.self_cpu_time_total)


def _is_kernel(evt) -> bool:
    dtype = getattr(evt, "device_type", None)
    return dtype is not None and str(dtype).endswith("CUDA")


def profile_step(step, device: str, reps: int, warmup: int, top: int,
                 trace: str | None = None) -> dict:
    """Run ``step`` ``warmup`` times, then ``reps`` times under the profiler."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        step()
    _sync(device)
    on_gpu = device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(reps):
            step()
        _sync(device)
        wall = (time.perf_counter() - t0) * 1e3 / reps
    if trace:
        prof.export_chrome_trace(trace)

    rows = []
    for evt in prof.key_averages():
        # On a GPU only kernels carry device time (operators would count it twice).
        if on_gpu and not _is_kernel(evt):
            continue
        us = _self_time_us(evt, on_gpu)
        if us <= 0:
            continue
        rows.append({"name": evt.key, "calls": evt.count / reps, "ms": us / 1e3 / reps,
                     "category": category(evt.key)})
    rows.sort(key=lambda r: -r["ms"])
    total = sum(r["ms"] for r in rows)
    cats: dict[str, float] = {}
    for r in rows:
        r["pct"] = 100.0 * r["ms"] / total if total else 0.0
        cats[r["category"]] = cats.get(r["category"], 0.0) + r["ms"]
    return {"wall_ms": wall, "profiled_ms": total, "time_kind":
            "CUDA kernel time" if on_gpu else "operator self CPU time",
            "categories": {k: round(v, 4) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
            "top": [{**r, "ms": round(r["ms"], 4), "pct": round(r["pct"], 2),
                     "calls": round(r["calls"], 2)} for r in rows[:top]],
            "others": len(rows[top:])}


def markdown(entry: dict) -> str:
    head = (f"### {entry['target']} {entry.get('phase', '')} {entry['backend']} {entry['dtype']} "
            f"{entry['shape']}\n\nwall {entry['wall_ms']:.3f} ms per repetition; "
            f"{entry['time_kind']} {entry['profiled_ms']:.3f} ms: "
            + ", ".join(f"{k} {v:.3f}" for k, v in entry["categories"].items()) + "\n")
    lines = ["| ms | % | calls | category | name |", "| ---: | ---: | ---: | --- | --- |"]
    for r in entry["top"]:
        name = r["name"] if len(r["name"]) <= 90 else r["name"][:87] + "..."
        lines.append(f"| {r['ms']:.3f} | {r['pct']:.1f} | {r['calls']:g} | {r['category']} | "
                     f"`{name}` |")
    if entry["others"]:
        lines.append(f"| | | | | … {entry['others']} more |")
    return head + "\n" + "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI

def _csv(choices):
    def parse(text: str) -> list[str]:
        items = [t for t in text.split(",") if t]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"{','.join(bad) or text!r}: expected a comma-separated subset of "
                f"{', '.join(choices)}")
        return items
    return parse


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m profiling.breakdown",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=_csv(TARGETS), default=list(TARGETS))
    ap.add_argument("--phases", type=_csv(("fwd", "fwdbwd")), default=["fwd", "fwdbwd"],
                    help="for the op targets")
    ap.add_argument("--dtypes", type=_csv(tuple(DTYPES)), default=["fp32"],
                    help="for the op targets (the model targets run in fp32)")
    ap.add_argument("--backends", type=_csv(("auto", "eager", "cpu", "triton", "cuda")),
                    default=["auto"])
    ap.add_argument("--device", choices=("cuda", "cpu"),
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--top", type=int, default=20, help="rows per table")
    ap.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    ap.add_argument("--small", action="store_true", help="tiny shapes (smoke test)")
    ap.add_argument("--trace", action="store_true", help="also save a Chrome trace per target")
    ap.add_argument("--out", type=out_dir, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    if args.reps < 1 or args.warmup < 0 or args.top < 1:
        ap.error("--reps and --top must be >= 1, --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("breakdown: --device cuda, but torch sees no CUDA GPU", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    dev = device_name(args.device)
    stamp = datetime.date.today().isoformat()
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, f"{stamp}-{device_slug(dev)}-breakdown")
    entries, failures = [], 0
    jobs = [(t, p, d, b) for t in args.targets for b in args.backends
            for p, d in ([(p, d) for p in args.phases for d in args.dtypes]
                         if t in OP_TARGETS else [("", "fp32")])]
    for target, phase, dtype_name, backend in jobs:
        label = "-".join(x for x in (target, phase, backend, dtype_name) if x)
        try:
            if target in OP_TARGETS:
                model, x, shape = build_op(target, backend, DTYPES[dtype_name], args.device,
                                           args.small)
                step = op_step(model, x, phase)
            else:
                step, shape = model_step(target, backend, args.device, args.small)
            res = profile_step(step, args.device, args.reps, args.warmup, args.top,
                               trace=f"{base}-{label}.trace.json" if args.trace else None)
        except Exception as exc:  # noqa: BLE001 - one failing target must not lose the others
            failures += 1
            print(f"{label}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        entry = {"target": target, "phase": phase, "backend": backend, "dtype": dtype_name,
                 "shape": shape, "reps": args.reps, **res}
        entries.append(entry)
        print(markdown(entry), flush=True)

    doc = {"device": dev, "commit": commit(), "date": stamp, "versions": versions(),
           "threads": torch.get_num_threads(), "breakdowns": entries}
    with open(f"{base}.json", "w") as fh:
        json.dump(doc, fh, indent=1)
    print(f"wrote {os.path.relpath(base + '.json')}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
