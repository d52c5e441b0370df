"""Nsight Compute profile of every fused kernel, with a CSV summary (issue 8, item 6).

    python -m profiling.ncu [--out DIR] [--ops OP,...] [--phases fwd,bwd]
        [--dtypes fp32,bf16] [--launch-count 8] [--rep] [--all-kernels] [--ncu PATH]
    python -m profiling.ncu --parse RAW.csv [...] [--out DIR]   # re-summarise saved CSVs
    python -m profiling.ncu --list                              # the jobs, without running

Two modes in one file:

* **driver** (the default): for every job (op x phase x dtype) it launches ::

      ncu --target-processes all --profile-from-start off --nvtx --nvtx-include s2v/
          --kernel-name regex:<the fused kernels> --launch-count N
          --section SpeedOfLight --section Occupancy --section LaunchStats
          --section MemoryWorkloadAnalysis --section WarpStateStats
          --section SchedulerStats --metrics <the summary's metrics>
          --clock-control none --export <job>.ncu-rep
          python -m profiling.ncu --target OP PHASE DTYPE

  then ``ncu --import <job>.ncu-rep --csv --page raw --print-units base`` into
  ``DIR/raw/<job>.csv``, and parses every raw CSV into ``DIR/ncu_summary.csv``
  (one row per profiled launch) and a table on stdout (medians per kernel).
  One ncu process per job bounds the launches per kernel: the Triton step
  kernels run 2·T times per call (two phases per frame), and ``--launch-count``
  (default 8: four frames) keeps a job to seconds. ``--rep`` keeps the
  ``.ncu-rep`` files (``DIR/reps/``) for the Nsight Compute GUI. Clock control is
  off by default (``--clock-control none``): the card is measured as found, its
  clocks are never locked. A job in which nothing matches the NVTX filter is
  profiled again without it (the profiler start/stop still bounds the region);
  the summary's ``nvtx_filter`` column then says ``none``.

* **target** (``--target OP PHASE DTYPE``, run by ncu): builds the op at the
  benchmark shape (VideoPredictor / DirConvGRU: C 32, k 3, 128x128, T 16, B 1,
  directional; DilatedResidualGRU: D 66, L 3, dilation 2, T 256, B 1), warms it up
  (forward + backward twice, which compiles every Triton variant) outside the
  profiled region, then runs one call between ``torch.cuda.profiler.start()``
  and ``stop()`` inside the nested NVTX push/pop ranges ``s2v`` > op > phase,
  which ncu's filter syntax writes ``s2v/video_predictor/fwd`` (and
  ``--nvtx-include s2v/`` selects them all). Backward kernels run on the
  autograd engine's device thread, whose NVTX stack is its own, so the ``bwd``
  ranges are opened and closed on that thread by two identity autograd nodes
  around the op.

Jobs whose backend is unavailable (Triton missing, ``s2v._C`` without CUDA)
are skipped with the reason. Without ncu or without a GPU the driver prints one
line and exits 2; it exits 1 when a job failed or profiled nothing.

Summary columns (``SUMMARY_COLUMNS``): duration; achieved DRAM bandwidth
(``dram__bytes.sum.per_second``) and its fraction of peak; memory and SM
throughput as % of peak (Speed Of Light); achieved and theoretical occupancy;
registers per thread; block and grid; static and dynamic shared memory per
block; waves per SM; and ``limiter``: ``compute`` or ``memory`` when that unit
runs at >= 60 % of its peak (the larger of the two), else ``latency`` (neither is
busy: too little independent work in flight, dependency chains, small grids);
``issue_active_pct``, the fraction of cycles a scheduler issued an instruction
(SchedulerStats); and ``top_stalls``, the three largest warp-stall reasons with
the cycles each costs per issued instruction (WarpStateStats: ``barrier`` for
__syncthreads, ``long_scoreboard`` for global/L2 loads, ``short_scoreboard`` for
shared memory, ``wait`` for fixed-latency dependencies, ...), the first thing to
read for a latency-bound kernel.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import glob
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "profiling", "results", "ncu")

OPS = ("video_predictor", "dirconv_gru", "dilated_gru")
PHASES = ("fwd", "bwd")
DTYPES = ("fp32", "bf16")
NVTX_ROOT = "s2v"

# Fused kernels as ncu names them (--kernel-name-base function): the Triton step
# kernels of s2v.kernels.video_predictor (VideoPredictor and DirConvGRU) and the
# CUDA C++ wavefront kernels of csrc/dilated_gru/dilated_gru_cuda.cu.
KERNEL_REGEX = {
    "video_predictor": r"_video_predictor_(fwd|bwd)_kernel",
    "dirconv_gru": r"_video_predictor_(fwd|bwd)_kernel",
    "dilated_gru": r"(^|:)(forward|backward)(_grouped)?_kernel",
}

SECTIONS = ("SpeedOfLight", "Occupancy", "LaunchStats", "MemoryWorkloadAnalysis",
            "WarpStateStats", "SchedulerStats")
# Collected explicitly too (the sections above contain them), so that the raw page
# has these columns whatever a given ncu version puts in its sections.
METRICS = (
    "gpu__time_duration.sum",
    "dram__bytes.sum.per_second",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed",
    "sm__warps_active.avg.pct_of_peak_sustained_active",
    "launch__registers_per_thread",
    "launch__grid_size",
    "launch__block_size",
    "launch__shared_mem_per_block_static",
    "launch__shared_mem_per_block_dynamic",
)

SUMMARY_COLUMNS = (
    "job", "op", "phase", "dtype", "nvtx_range", "nvtx_filter", "id", "kernel",
    "duration_us", "dram_gbs", "dram_pct_peak", "mem_pct_peak", "sm_pct_peak",
    "achieved_occupancy_pct", "theoretical_occupancy_pct", "registers_per_thread",
    "block", "grid", "shared_static_bytes", "shared_dynamic_bytes", "waves_per_sm",
    "limiter", "issue_active_pct", "top_stalls",
)

# Benchmark shapes (profiling/bench_video_predictor.py, profiling/bench_dilated_gru.py).
VP_SHAPE = {"C": 32, "k": 3, "H": 128, "W": 128, "T": 16, "B": 1}
DGRU_SHAPE = {"D": 66, "L": 3, "dilation": 2, "T": 256, "B": 1}
LIMIT_PCT = 60.0


# --------------------------------------------------------------------------- parsing

_PREFIX = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_BASE_UNITS = {"second", "byte", "hz", "cycle", "sector", "inst", "warp", "thread", "block",
               "register", "request", "wavefront", "bit"}
_SHORT_TIME = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def _unit_factor(token: str) -> float:
    """Factor from one unit token (``usecond``, ``Gbyte``, ``register``) to its base unit."""
    token = token.strip()
    if token in _SHORT_TIME:
        return _SHORT_TIME[token]
    if token.lower() in _BASE_UNITS:
        return 1.0
    if len(token) > 1 and token[0] in _PREFIX and token[1:].lower() in _BASE_UNITS:
        return _PREFIX[token[0]]
    return 1.0  # %, counts, unknown units: taken as they are


def unit_scale(unit: str) -> float:
    """Factor that turns a value printed in ``unit`` into base units (second, byte, ...).

    ``Gbyte/second`` -> 1e9, ``usecond`` -> 1e-6, ``Kbyte/block`` -> 1e3, ``%`` -> 1.
    """
    if not unit:
        return 1.0
    num, *dens = unit.split("/")
    scale = _unit_factor(num)
    for den in dens:
        scale /= _unit_factor(den)
    return scale


def parse_number(text: str | None) -> float | None:
    """``"1,234.5"`` -> 1234.5; ``"n/a"``, ``""``, ``"(128, 1, 1)"`` -> None."""
    if text is None:
        return None
    text = text.strip().replace(",", "")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


@dataclass
class Launch:
    """One profiled kernel launch: the raw strings of its row and the units row."""
    columns: dict[str, str]
    units: dict[str, str] = field(default_factory=dict)

    def text(self, name: str) -> str | None:
        value = self.columns.get(name)
        return None if value is None or value.strip() in ("", "n/a", "N/A") else value.strip()

    def value(self, name: str) -> float | None:
        """The metric in base units (second, byte, byte/second, %), or None."""
        number = parse_number(self.columns.get(name))
        if number is None:
            return None
        return number * unit_scale(self.units.get(name, ""))


def _is_header(row: list[str]) -> bool:
    return bool(row) and row[0] == "ID" and "Kernel Name" in row


def parse_raw_csv(text: str) -> list[Launch]:
    """Parse ``ncu --csv --page raw`` output (or an ``--import`` of a report).

    Format: a header row (``"ID","Process ID","Process Name","Host Name","Kernel
    Name","Context","Stream","Block Size","Grid Size","Device","CC"`` and then one
    column per metric name), a units row (empty for the fixed columns), then one
    row per profiled launch. Lines that are not CSV rows (``==PROF==`` and
    ``==WARNING==`` lines, the application's own output) are skipped, and a new
    header row starts a new block.
    """
    launches: list[Launch] = []
    header: list[str] | None = None
    units: dict[str, str] | None = None
    lines = [line for line in text.splitlines() if line.lstrip().startswith('"')]
    for row in csv.reader(io.StringIO("\n".join(lines))):
        if _is_header(row):
            header, units = row, None
            continue
        if header is None:
            continue
        if units is None:
            units = dict(zip(header, row))
            continue
        if len(row) != len(header):
            continue  # a truncated line (a crash mid-write): nothing reliable in it
        launches.append(Launch(dict(zip(header, row)), units))
    return launches


def short_kernel_name(name: str) -> str:
    """``void s2v::dgru::(anonymous namespace)::forward_kernel<float>(Params)`` ->
    ``s2v::dgru::forward_kernel<float>``: no return type, no parameter list."""
    name = name.strip().replace("(anonymous namespace)::", "").removeprefix("void ")
    depth = 0
    for i, ch in enumerate(name):  # cut at the '(' of the parameter list, outside templates
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0 and i > 0:
            return name[:i]
    return name


def limiter(sm_pct: float | None, mem_pct: float | None) -> str:
    """``compute`` / ``memory`` when that unit runs at >= 60 % of peak, else ``latency``."""
    if sm_pct is None and mem_pct is None:
        return ""
    sm, mem = sm_pct or 0.0, mem_pct or 0.0
    if max(sm, mem) >= LIMIT_PCT:
        return "compute" if sm >= mem else "memory"
    return "latency"


def _first(launch: Launch, *names: str) -> float | None:
    for name in names:
        v = launch.value(name)
        if v is not None:
            return v
    return None


def _dims(launch: Launch, column: str, metric: str) -> str:
    text = launch.text(column)
    if text:
        return text.replace(" ", "")
    v = launch.value(metric)
    return "" if v is None else str(int(v))


# WarpStateStats: cycles a warp spends stalled per issued instruction, one metric
# per reason (smsp__average_warps_issue_stalled_<reason>_per_issue_active.ratio);
# matched by pattern, so a reason this parser does not know still shows.
_STALL = re.compile(r"issue_stalled_([a-z0-9_]+?)_per_issue_active")
# Not stalls: "selected" is the issuing warp itself, "not_selected" an eligible one.
_NOT_STALLS = {"selected", "not_selected"}


def top_stalls(launch: Launch, n: int = 3) -> str:
    """The ``n`` largest warp-stall reasons, ``"barrier 5.1; long_scoreboard 2.3"``
    (cycles per issued instruction), or "" when the section did not run."""
    found = {}
    for name in launch.columns:
        m = _STALL.search(name)
        if m and m.group(1) not in _NOT_STALLS:
            v = launch.value(name)
            if v is not None:
                found[m.group(1)] = found.get(m.group(1), 0.0) + v
    ranked = sorted(found.items(), key=lambda kv: -kv[1])[:n]
    return "; ".join(f"{k} {v:.3g}" for k, v in ranked if v > 0)


def _round(v: float | None, digits: int = 3):
    return None if v is None else round(v, digits)


def summarize(launches: list[Launch], job: dict | None = None) -> list[dict]:
    """One summary row (``SUMMARY_COLUMNS``) per launch; ``job`` fills op/phase/dtype/range."""
    job = job or {}
    rows = []
    for launch in launches:
        seconds = launch.value("gpu__time_duration.sum")
        dram_bps = launch.value("dram__bytes.sum.per_second")
        sm = launch.value("sm__throughput.avg.pct_of_peak_sustained_elapsed")
        dram_pct = launch.value("gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed")
        mem = _first(launch, "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",
                     "gpu__memory_throughput.avg.pct_of_peak_sustained_elapsed")
        mem_for_limit = max((v for v in (mem, dram_pct) if v is not None), default=None)
        regs = launch.value("launch__registers_per_thread")
        rows.append({
            "job": job.get("name", ""),
            "op": job.get("op", ""),
            "phase": job.get("phase", ""),
            "dtype": job.get("dtype", ""),
            "nvtx_range": job.get("nvtx_range", ""),
            "nvtx_filter": job.get("nvtx_filter", ""),
            "id": launch.text("ID") or "",
            "kernel": short_kernel_name(launch.text("Kernel Name") or ""),
            "duration_us": _round(None if seconds is None else seconds * 1e6),
            "dram_gbs": _round(None if dram_bps is None else dram_bps / 1e9, 2),
            "dram_pct_peak": _round(dram_pct, 2),
            "mem_pct_peak": _round(mem, 2),
            "sm_pct_peak": _round(sm, 2),
            "achieved_occupancy_pct": _round(
                launch.value("sm__warps_active.avg.pct_of_peak_sustained_active"), 2),
            "theoretical_occupancy_pct": _round(
                launch.value("sm__maximum_warps_per_active_cycle_pct"), 2),
            "registers_per_thread": None if regs is None else int(regs),
            "block": _dims(launch, "Block Size", "launch__block_size"),
            "grid": _dims(launch, "Grid Size", "launch__grid_size"),
            "shared_static_bytes": _round(launch.value("launch__shared_mem_per_block_static"), 0),
            "shared_dynamic_bytes": _round(launch.value("launch__shared_mem_per_block_dynamic"),
                                           0),
            "waves_per_sm": _round(launch.value("launch__waves_per_multiprocessor"), 3),
            "limiter": limiter(sm, mem_for_limit),
            "issue_active_pct": _round(_first(
                launch, "smsp__issue_active.avg.pct_of_peak_sustained_active"), 2),
            "top_stalls": top_stalls(launch),
        })
    return rows


def write_summary(rows: list[dict], path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k))
                             for k in SUMMARY_COLUMNS})
    return path


def format_table(rows: list[dict]) -> str:
    """Medians per (job, kernel): launches, µs, GB/s, DRAM %, SM %, occupancy, regs,
    limiter; and the first launch's top stall reasons."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["job"], row["kernel"]), []).append(row)

    def med(items, key, fmt):
        vals = [r[key] for r in items if r.get(key) is not None]
        return fmt.format(statistics.median(vals)) if vals else "-"

    head = (f"{'job':<26} {'kernel':<34} {'n':>3} {'us':>9} {'GB/s':>8} {'DRAM%':>6} "
            f"{'SM%':>6} {'occ%':>6} {'regs':>5}  limiter  (top stalls)")
    lines = [head, "-" * len(head)]
    for (job, kernel), items in groups.items():
        limiters = sorted({r["limiter"] for r in items if r["limiter"]})
        lines.append(f"{job[:26]:<26} {kernel[:34]:<34} {len(items):>3} "
                     f"{med(items, 'duration_us', '{:.1f}'):>9} "
                     f"{med(items, 'dram_gbs', '{:.0f}'):>8} "
                     f"{med(items, 'dram_pct_peak', '{:.1f}'):>6} "
                     f"{med(items, 'sm_pct_peak', '{:.1f}'):>6} "
                     f"{med(items, 'achieved_occupancy_pct', '{:.1f}'):>6} "
                     f"{med(items, 'registers_per_thread', '{:.0f}'):>5}  "
                     f"{'/'.join(limiters) or '-'}"
                     + (f"  ({items[0]['top_stalls']})" if items[0].get("top_stalls") else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------- jobs

def nvtx_path(op: str, phase: str) -> str:
    return f"{NVTX_ROOT}/{op}/{phase}"


def all_jobs(ops=OPS, phases=PHASES, dtypes=DTYPES) -> list[dict]:
    return [{"name": f"{op}_{phase}_{dtype}", "op": op, "phase": phase, "dtype": dtype,
             "nvtx_range": nvtx_path(op, phase)}
            for op in ops for phase in phases for dtype in dtypes]


def job_unavailable(op: str) -> str | None:
    """Why this op's fused backend cannot run here, or None."""
    if op == "dilated_gru":
        from s2v.ops.dilated_gru import dilated_gru_backends
        return dilated_gru_backends.why_unavailable("cuda")
    from s2v.ops.dirconv_gru import dirconv_gru_backends
    from s2v.ops.video_predictor import video_predictor_backends
    registry = video_predictor_backends if op == "video_predictor" else dirconv_gru_backends
    return registry.why_unavailable("triton")


def find_ncu(explicit: str | None = None) -> str | None:
    """``--ncu``, ``$NCU``, ``ncu`` on PATH, the CUDA toolkit's, or /opt/nvidia/nsight-compute."""
    for candidate in (explicit, os.environ.get("NCU")):
        if candidate:
            path = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK)
                                               else None)
            if explicit and path is None:
                return None  # asked for one that is not there: no silent substitute
            if path:
                return path
    found = shutil.which("ncu")
    if found:
        return found
    cuda_home = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    patterns = [os.path.join(cuda_home, "bin", "ncu"), "/usr/local/cuda*/bin/ncu",
                "/opt/nvidia/nsight-compute/*/ncu"]
    for pattern in patterns:
        hits = sorted(p for p in glob.glob(pattern) if os.access(p, os.X_OK))
        if hits:
            return hits[-1]
    return None


def gpu_unavailable() -> str | None:
    """None when torch sees a CUDA GPU, else why not (a short phrase)."""
    try:
        import torch
    except ImportError as exc:
        return f"torch is not importable ({exc})"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch (torch.cuda.is_available() is False)"
    return None


def ncu_command(ncu: str, job: dict, export: str, launch_count: int, nvtx_filter: bool,
                all_kernels: bool = False, clock_control: str = "none",
                extra: list[str] | None = None, python: str | None = None) -> list[str]:
    """The ncu command line that profiles one job (its target run as a child)."""
    cmd = [ncu, "--target-processes", "all", "--profile-from-start", "off", "--nvtx"]
    if nvtx_filter:
        cmd += ["--nvtx-include", f"{NVTX_ROOT}/"]
    if not all_kernels:
        cmd += ["--kernel-name-base", "function",
                "--kernel-name", f"regex:{KERNEL_REGEX[job['op']]}"]
    if launch_count > 0:
        cmd += ["--launch-count", str(launch_count)]
    for section in SECTIONS:
        cmd += ["--section", section]
    cmd += ["--metrics", ",".join(METRICS), "--clock-control", clock_control,
            "--force-overwrite", "--export", export]
    cmd += list(extra or [])
    cmd += [python or sys.executable, "-m", "profiling.ncu", "--target", job["op"],
            job["phase"], job["dtype"]]
    return cmd


def import_command(ncu: str, report: str) -> list[str]:
    return [ncu, "--import", report, "--csv", "--page", "raw", "--print-units", "base"]


def _tail(path: str, n: int = 8) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.rstrip() for line in f if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if "==ERROR==" in line]
    return " | ".join((errors or lines)[-n:])


def _child_env() -> dict:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)  # the target needs compiled kernels
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_job(ncu: str, job: dict, out: str, args) -> tuple[list[dict], str | None]:
    """Profile one job; returns (summary rows, None) or ([], why it failed)."""
    for sub in ("raw", "logs") + (("reps",) if args.rep else ()):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    log = os.path.join(out, "logs", f"{job['name']}.log")
    raw = os.path.join(out, "raw", f"{job['name']}.csv")
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(out, "reps", job["name"]) if args.rep else os.path.join(tmp, "r")
        report = base + ".ncu-rep"
        open(log, "w").close()
        why = None
        for nvtx_filter in (True, False):
            if os.path.exists(report):
                os.remove(report)  # never import a report an earlier run left
            cmd = ncu_command(ncu, job, base, args.launch_count, nvtx_filter, args.all_kernels,
                              args.clock_control, args.ncu_arg, args.python)
            with open(log, "a", encoding="utf-8") as f:
                f.write("$ " + " ".join(cmd) + "\n")
                f.flush()
                try:
                    proc = subprocess.run(cmd, cwd=ROOT, env=_child_env(), stdout=f,
                                          stderr=subprocess.STDOUT, timeout=args.timeout,
                                          check=False)
                    rc = proc.returncode
                except subprocess.TimeoutExpired:
                    return [], f"ncu did not finish within {args.timeout:.0f} s (log: {log})"
            if rc != 0:
                return [], f"ncu exited {rc}: {_tail(log)} (log: {log})"
            launches = []
            if os.path.exists(report):  # ncu writes no report when nothing was profiled
                proc = subprocess.run(import_command(ncu, report), cwd=ROOT, check=False,
                                      capture_output=True, text=True, timeout=args.timeout)
                with open(raw, "w", encoding="utf-8") as f:
                    f.write(proc.stdout)
                if proc.returncode != 0:
                    return [], (f"ncu --import exited {proc.returncode}: "
                                f"{proc.stderr.strip()[-300:]}")
                launches = parse_raw_csv(proc.stdout)
            if launches:
                meta = dict(job, nvtx_filter=f"{NVTX_ROOT}/" if nvtx_filter else "none")
                return summarize(launches, meta), None
            why = f"no kernel was profiled (log: {log})"
            if nvtx_filter:
                with open(log, "a", encoding="utf-8") as f:
                    f.write("# nothing matched with the NVTX filter; retrying without it "
                            "(profiler start/stop still bounds the region)\n")
        return [], why


def default_out_dir() -> str:
    from profiling.common import device_name, device_slug
    return os.path.join(DEFAULT_OUT, f"{_dt.date.today().isoformat()}-"
                                     f"{device_slug(device_name('cuda'))}")


def _csv_list(text: str, allowed: tuple) -> tuple:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(allowed)}, "
                                         f"got {text!r}")
    return items


def driver(args) -> int:
    jobs = all_jobs(args.ops, args.phases, args.dtypes)
    if args.list:
        for job in jobs:
            print(f"{job['name']:<28} NVTX {job['nvtx_range']:<28} kernels "
                  f"regex:{KERNEL_REGEX[job['op']]}")
        return 0
    ncu = find_ncu(args.ncu)
    reasons = []
    if ncu is None:
        reasons.append(f"ncu not found ({args.ncu!r} is not an executable)" if args.ncu else
                       "ncu not found (not on PATH, not under $CUDA_HOME/bin or "
                       "/opt/nvidia/nsight-compute; pass --ncu PATH or set NCU)")
    gpu = gpu_unavailable()
    if gpu:
        reasons.append(gpu)
    if reasons:
        print(f"profiling/ncu.py: cannot profile here: {'; '.join(reasons)}", file=sys.stderr)
        return 2

    out = os.path.abspath(args.out or default_out_dir())
    os.makedirs(out, exist_ok=True)
    print(f"ncu: {ncu}; results in {out}", flush=True)
    rows, failures, skipped = [], [], []
    for job in jobs:
        why = job_unavailable(job["op"])
        if why is not None:
            skipped.append(f"{job['name']}: {why}")
            print(f"-- {job['name']}: skipped ({why})", flush=True)
            continue
        print(f"-- {job['name']} (NVTX {job['nvtx_range']})", flush=True)
        job_rows, failure = run_job(ncu, job, out, args)
        if failure:
            failures.append(f"{job['name']}: {failure}")
            print(f"   FAILED: {failure}", flush=True)
        else:
            print(f"   {len(job_rows)} launches profiled", flush=True)
        rows += job_rows
    path = write_summary(rows, os.path.join(out, "ncu_summary.csv"))
    if rows:
        print(format_table(rows))
    print(f"wrote {path} ({len(rows)} launches; {len(failures)} jobs failed, "
          f"{len(skipped)} skipped)")
    for line in skipped:
        print(f"skipped {line}")
    for line in failures:
        print(f"FAILED {line}")
    return 1 if failures or not rows else 0


def parse_files(paths: list[str], out: str | None) -> int:
    rows = []
    target = os.path.join(out or os.path.dirname(os.path.abspath(paths[0])), "ncu_summary.csv")
    if any(os.path.abspath(p) == os.path.abspath(target) for p in paths):
        print(f"--parse: {target} is one of the inputs (a summary, not a raw ncu CSV); "
              f"pass the raw CSVs only, or --out another folder", file=sys.stderr)
        return 2
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                launches = parse_raw_csv(f.read())
        except OSError as exc:
            print(f"--parse: {path}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        name = os.path.splitext(os.path.basename(path))[0]
        m = re.fullmatch(r"(video_predictor|dirconv_gru|dilated_gru)_(fwd|bwd)_(fp32|bf16)", name)
        job = {"name": name}
        if m:
            job.update(op=m.group(1), phase=m.group(2), dtype=m.group(3),
                       nvtx_range=nvtx_path(m.group(1), m.group(2)))
        rows += summarize(launches, job)
    write_summary(rows, target)
    if rows:
        print(format_table(rows))
    print(f"wrote {target} ({len(rows)} launches)")
    return 0 if rows else 1


# --------------------------------------------------------------------------- target

def _nvtx_push(op: str, phase: str) -> None:
    import torch
    for name in (NVTX_ROOT, op, phase):
        torch.cuda.nvtx.range_push(name)


def _nvtx_pop() -> None:
    import torch
    for _ in range(3):
        torch.cuda.nvtx.range_pop()


def _range_nodes(op: str):
    """Identity autograd nodes that open / close the ``bwd`` NVTX ranges on the thread
    that runs the backward (the autograd engine's device thread, not the caller's)."""
    import torch

    class Open(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t.view_as(t)

        @staticmethod
        def backward(ctx, g):
            _nvtx_push(op, "bwd")
            return g

    class Close(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t.view_as(t)

        @staticmethod
        def backward(ctx, g):
            _nvtx_pop()
            return g

    return Open, Close


def build_target(op: str, dtype_name: str):
    """(module, input) at the benchmark shape, on the GPU, with the op's fused backend."""
    from profiling.breakdown import DTYPES, build_op

    backend = "cuda" if op == "dilated_gru" else "triton"
    model, x, _ = build_op(op, backend, DTYPES[dtype_name], "cuda", small=False)
    return model, x


def run_target(op: str, phase: str, dtype_name: str, warmup: int = 2) -> int:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model, x = build_target(op, dtype_name)
    dy = None

    def forward(inp):
        nonlocal dy
        y = model(inp)[0]
        if dy is None:
            dy = torch.randn_like(y)
        return y

    for _ in range(warmup):  # compiles every kernel variant, outside the profiled region
        x.grad = None
        (forward(x) * dy).sum().backward()
    torch.cuda.synchronize()

    if phase == "fwd":
        torch.cuda.profiler.start()
        _nvtx_push(op, "fwd")
        with torch.no_grad():
            forward(x)
        torch.cuda.synchronize()
        _nvtx_pop()
        torch.cuda.profiler.stop()
    else:
        Open, Close = _range_nodes(op)
        x.grad = None
        y = Open.apply(forward(Close.apply(x)))
        loss = (y * dy).sum()
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        loss.backward()
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()
    shape = DGRU_SHAPE if op == "dilated_gru" else VP_SHAPE
    print(f"target {nvtx_path(op, phase)} {dtype_name} {shape} on "
          f"{torch.cuda.get_device_name()}: done", flush=True)
    return 0


# --------------------------------------------------------------------------- CLI

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m profiling.ncu",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="output folder (default profiling/results/ncu/<date>-<gpu>)")
    ap.add_argument("--ops", type=lambda s: _csv_list(s, OPS), default=OPS)
    ap.add_argument("--phases", type=lambda s: _csv_list(s, PHASES), default=PHASES)
    ap.add_argument("--dtypes", type=lambda s: _csv_list(s, DTYPES), default=DTYPES)
    ap.add_argument("--launch-count", type=int, default=8,
                    help="launches profiled per job (0: all; a Triton job launches 2*T)")
    ap.add_argument("--rep", action="store_true", help="keep the .ncu-rep reports (reps/)")
    ap.add_argument("--all-kernels", action="store_true",
                    help="profile every kernel in the NVTX range, torch's too")
    ap.add_argument("--clock-control", default="none", choices=("none", "base"),
                    help="ncu --clock-control (default none: never lock the clocks)")
    ap.add_argument("--ncu", help="the ncu executable (default: $NCU, PATH, CUDA toolkit)")
    ap.add_argument("--ncu-arg", action="append", default=[],
                    help="extra argument for ncu (repeatable)")
    ap.add_argument("--python", help="interpreter for the target (default: this one)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per ncu process")
    ap.add_argument("--list", action="store_true", help="print the jobs and exit")
    ap.add_argument("--parse", nargs="+", metavar="RAW_CSV",
                    help="summarise saved `ncu --csv --page raw` output instead of profiling")
    ap.add_argument("--target", nargs=3, metavar=("OP", "PHASE", "DTYPE"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.target:
        op, phase, dtype = args.target
        if op not in OPS or phase not in PHASES or dtype not in DTYPES:
            ap.error(f"--target: expected OP in {OPS}, PHASE in {PHASES}, DTYPE in {DTYPES}")
        return run_target(op, phase, dtype)
    if args.parse:
        return parse_files(args.parse, args.out)
    return driver(args)


if __name__ == "__main__":
    sys.exit(main())
