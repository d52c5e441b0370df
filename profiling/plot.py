"""Render a benchmark results JSON as PNGs and a Markdown table.

    python -m profiling.plot RESULTS.json [MORE.json ...] [--out DIR] [--markdown] [--no-plots]

For each JSON (schema in ``profiling/common.py``; one per-op file or the merged
one from ``profiling.run_all``) it writes, into ``--out`` (default: the JSON's
folder), files named ``<json-stem>-<what>.png``:

- ``speedup.png``: eager time / backend time per (name, pass, dtype) row;
- ``scaling-<op>-<axis>.png``: time vs the swept value of each scaling sweep,
  log-log, against a line proportional to the work so non-linear scaling shows;
- ``peak-fraction.png``: achieved GFLOP/s as a percentage of the device's
  measured peak (or, in older files, of the row's own ``matmul_gflops``).

A figure with nothing to show is not written; the reason is printed instead.
``--markdown`` prints the table of non-sweep rows that the README embeds
(stdout holds only Markdown then; progress goes to stderr). matplotlib is
optional (``pip install -e '.[profiling]'``); ``--markdown --no-plots`` works
without it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

from profiling.cli_types import out_dir

# Backends are either baselines (what PyTorch gives without this project) or
# fused (this project's kernels). The split decides the two speedup columns of
# the table; unknown keys (media stages such as "decode") are neither.
BASELINES = ("eager", "compile", "gru_reshape", "eager_cuda_graph", "eager_autocast")
FUSED = ("cpu", "triton", "cuda", "auto")
# Fixed colours so a backend looks the same in every figure and every file.
COLORS = {"eager": "#7f7f7f", "compile": "#9467bd", "gru_reshape": "#8c564b",
          "eager_cuda_graph": "#bcbd22", "eager_autocast": "#17becf",
          "cpu": "#1f77b4", "triton": "#ff7f0e", "cuda": "#2ca02c", "auto": "#d62728"}
EXTRA_COLORS = ("#e377c2", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5")
MISSING_MPL = "profiling/plot.py needs matplotlib: pip install -e '.[profiling]'"
# Speed-ups spanning more than this factor get a log axis, or the small bars vanish.
LOG_RANGE = 30.0


def is_baseline(backend: str) -> bool:
    return backend in BASELINES or backend.startswith(("eager_", "compile_"))


def is_fused(backend: str) -> bool:
    return backend in FUSED or backend.startswith(tuple(f + "_" for f in FUSED))


def backend_order(names) -> list[str]:
    """Baselines, then fused, then anything else, so columns and legends are stable."""
    known = list(BASELINES) + list(FUSED)
    rank = {n: i for i, n in enumerate(known)}

    def key(n):
        group = 0 if is_baseline(n) else 1 if is_fused(n) else 2
        return (group, rank.get(n, len(known)), n)
    return sorted(set(names), key=key)


def color(backend: str) -> str:
    if backend in COLORS:
        return COLORS[backend]
    # Stable across runs (hash() is salted per process).
    return EXTRA_COLORS[sum(map(ord, backend)) % len(EXTRA_COLORS)]


def times(row: dict) -> dict[str, float]:
    """The backends that ran: null means "did not run" and a zero time cannot be divided by."""
    out = {}
    for b, t in (row.get("times_ms") or {}).items():
        if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t > 0:
            out[b] = float(t)
    return out


def label(row: dict) -> str:
    return f"{row.get('name', '?')}\n{row.get('pass', '?')} {row.get('dtype', '?')}"


def title(doc: dict, what: str) -> str:
    date = str(doc.get("date") or "")[:10]
    return (f"{what}\n{doc.get('device', 'unknown device')} · {short_commit(doc)}"
            + (f" · {date}" if date else ""))


def sweep_value(row: dict) -> float | None:
    """The swept quantity of a scaling row; "resolution" is the frame height."""
    axis = (row.get("sweep") or {}).get("axis")
    shape = row.get("shape") or {}
    keys = {"T": ("T", "frames"), "resolution": ("H", "size"), "batch": ("B", "batch")}
    for k in keys.get(axis, (axis,)):
        v = shape.get(k)
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
    return None


def sweep_work(row: dict) -> float | None:
    """What time should be proportional to if scaling were linear in the work.

    For a resolution sweep that is the pixel count (H·W), not H: a kernel that
    is linear in pixels draws a slope-2 line against H, and a slope-1
    reference would make every such kernel look super-linear.
    """
    v = sweep_value(row)
    if v is None or (row.get("sweep") or {}).get("axis") != "resolution":
        return v
    w = (row.get("shape") or {}).get("W")
    return v * float(w) if isinstance(w, (int, float)) and w > 0 else v * v


def slug(text: str) -> str:
    """Keeps an op or axis name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", text)


def short_commit(doc: dict) -> str:
    return str(doc.get("commit") or "unknown")[:7]


# --------------------------------------------------------------------------- markdown

def fmt_ms(v) -> str:
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def fmt_x(v: float) -> str:
    return f"{v:.1f}×" if v >= 10 else f"{v:.2f}×"


def markdown(doc: dict) -> str:
    """Table of the non-sweep rows: one column per backend, then the fused speed-ups.

    Timings that are not backends (e.g. the media benchmark's "decode" and
    "ingest" stages) go into one "other" column instead of a column each,
    which would leave the table mostly empty.
    """
    rows = [r for r in doc.get("benchmarks", []) if not r.get("sweep")]
    keys = [k for r in rows for k in (r.get("times_ms") or {})]
    cols = [b for b in backend_order(keys) if is_baseline(b) or is_fused(b)]
    has_other = any(not (is_baseline(k) or is_fused(k)) for k in keys)
    head = ["name", "pass", "dtype"] + [f"{b} (ms)" for b in cols]
    head += ["other (ms)"] if has_other else []
    head += ["fused vs eager", "fused vs best baseline", "floor (ms)"]
    caption = (f"*{doc.get('device', 'unknown device')}, commit {short_commit(doc)}, "
               f"{str(doc.get('date') or '')[:10]}; — = did not run*")
    lines = [caption, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t = times(r)
        raw = r.get("times_ms") or {}
        cells = [str(r.get("name", "?")), str(r.get("pass", "?")), str(r.get("dtype", "?"))]
        # Blank: this row has no such backend; "—": it has one that did not run (null).
        cells += [fmt_ms(t.get(b)) if b in raw else "" for b in cols]
        if has_other:
            cells.append(", ".join(f"{k} {fmt_ms(v)}" for k, v in t.items()
                                   if not (is_baseline(k) or is_fused(k))))
        fused = {b: v for b, v in t.items() if is_fused(b)}
        base = {b: v for b, v in t.items() if is_baseline(b)}
        if fused:
            fb = min(fused, key=fused.get)
            cells.append(f"{fmt_x(t['eager'] / fused[fb])} ({fb})" if "eager" in t else "—")
            if base:
                bb = min(base, key=base.get)
                cells.append(f"{fmt_x(base[bb] / fused[fb])} ({fb} vs {bb})")
            else:
                cells.append("—")
        else:
            cells += ["—", "—"]
        floor = r.get("floor_ms")
        cells.append(fmt_ms(floor) if isinstance(floor, (int, float)) else "")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures

def pyplot():
    """matplotlib.pyplot on the Agg backend, or None: it is an optional dependency."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    return plt


def grouped_bars(plt, groups: list[tuple[str, dict[str, float]]], ylabel: str, fig_title: str,
                 value_fmt, log: bool, ref: float | None):
    """One cluster per group, its bars packed (a backend absent from a group leaves no gap)."""
    width = 0.8 / max(len(g[1]) for g in groups)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 5.2), dpi=120)
    seen = []
    for i, (_, vals) in enumerate(groups):
        for j, (b, v) in enumerate(vals.items()):
            x = i + (j - (len(vals) - 1) / 2) * width
            bars = ax.bar(x, v, width * 0.95, color=color(b),
                          label=None if b in seen else b)
            ax.bar_label(bars, labels=[value_fmt(v)], fontsize=7, padding=1, rotation=90)
            if b not in seen:
                seen.append(b)
    values = [v for _, vals in groups for v in vals.values()]
    if log:
        ax.set_yscale("log")
        # Room above the tallest bar for its rotated label, and below the shortest.
        ax.set_ylim(min(min(values), ref or min(values)) / 2, max(values) * 6)
    else:
        ax.set_ylim(0, max(max(values), ref or 0) * 1.25)
    if ref is not None:
        ax.axhline(ref, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g[0] for g in groups], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(fig_title, fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    order = backend_order(labels)
    ax.legend([handles[labels.index(b)] for b in order], order, fontsize=8, title="backend",
              title_fontsize=8)
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def plot_speedup(plt, doc: dict, path: str) -> str | None:
    groups = []
    for r in doc.get("benchmarks", []):
        t = times(r)
        if r.get("sweep") or "eager" not in t:
            continue  # a row measured against another baseline has no eager ratio to draw
        vals = {b: t["eager"] / t[b] for b in backend_order(t) if b != "eager"}
        if vals:
            groups.append((label(r), vals))
    if not groups:
        return "no non-sweep row has an eager time and another backend"
    values = [v for _, vals in groups for v in vals.values()]
    fig = grouped_bars(plt, groups, "speed-up vs eager (×, higher is faster)",
                       title(doc, "Speed-up over eager PyTorch"), fmt_x,
                       log=max(values) / min(values) > LOG_RANGE, ref=1.0)
    fig.savefig(path)
    plt.close(fig)
    return None


def plot_peak_fraction(plt, doc: dict, path: str) -> str | None:
    peaks = doc.get("peaks") or {}
    groups = []
    for r in doc.get("benchmarks", []):
        gf = {b: v for b, v in (r.get("gflops") or {}).items()
              if isinstance(v, (int, float)) and v > 0}
        if r.get("sweep") or not gf:
            continue
        peak, what = peaks.get(f"{r.get('dtype')}_gflops"), "peak"
        if not (isinstance(peak, (int, float)) and peak > 0):
            # Files written before the device peaks were measured carry the rate
            # of a large matmul from the same run; it is the closest ceiling.
            peak, what = r.get("matmul_gflops"), "matmul"
        if not (isinstance(peak, (int, float)) and peak > 0):
            continue
        groups.append((f"{label(r)}\n(of {what} {peak:,.0f} GF/s)",
                       {b: 100 * gf[b] / peak for b in backend_order(gf)}))
    if not groups:
        return ("no non-sweep row has gflops and a matching peak "
                "(peaks.<dtype>_gflops or matmul_gflops)")
    source = peaks.get("source") or "the row's matmul_gflops (same run)"
    fig = grouped_bars(plt, groups, "achieved GFLOP/s, % of peak",
                       title(doc, f"Fraction of peak compute (peak: {source})"),
                       lambda v: f"{v:.0f}%" if v >= 10 else f"{v:.1f}%",
                       log=False, ref=100.0 if any(v > 80 for _, g in groups
                                                   for v in g.values()) else None)
    fig.savefig(path)
    plt.close(fig)
    return None


def plot_scaling(plt, doc: dict, op: str, axis: str, rows: list[dict], path: str) -> str | None:
    # series[(backend, pass, dtype)] = [(x, ms, work)]
    series: dict[tuple[str, str, str], list[tuple[float, float, float]]] = {}
    floors: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in rows:
        x, work = sweep_value(r), sweep_work(r)
        if x is None:
            continue
        pd = (str(r.get("pass", "?")), str(r.get("dtype", "?")))
        for b, t in times(r).items():
            series.setdefault((b, *pd), []).append((x, t, work))
        if isinstance(r.get("floor_ms"), (int, float)) and r["floor_ms"] > 0:
            floors.setdefault(pd, []).append((x, float(r["floor_ms"])))
    if not series:
        return f"sweep {op}/{axis}: no row has a swept value and a time"
    fig, ax = plt.subplots(figsize=(7.5, 5.2), dpi=120)
    combos = sorted({k[1:] for k in series})
    markers = "osD^v<>p*"
    order = backend_order(k[0] for k in series)
    for (b, p, d), pts in sorted(series.items(), key=lambda kv: (order.index(kv[0][0]), kv[0])):
        pts.sort()
        m = markers[combos.index((p, d)) % len(markers)]
        ax.plot([q[0] for q in pts], [q[1] for q in pts], marker=m, color=color(b),
                label=f"{b} {p} {d}")
    for p, d in combos:
        # The reference goes through the eager series' first point (or, without
        # eager, the first backend's), so each backend's distance from it reads
        # as "how far from linear in the work" for that pass and dtype.
        cands = backend_order(k[0] for k in series if k[1:] == (p, d))
        anchor_b = "eager" if "eager" in cands else cands[0]
        pts = sorted(series[(anchor_b, p, d)])
        _, t0, w0 = pts[0]
        xs = sorted({q[0] for k, v in series.items() if k[1:] == (p, d) for q in v})
        works = {q[0]: q[2] for k, v in series.items() if k[1:] == (p, d) for q in v}
        ax.plot(xs, [t0 * works[x] / w0 for x in xs], linestyle="--", color="black",
                linewidth=0.9, alpha=0.6,
                label=f"linear in work via {anchor_b} {p} {d}"
                      + (" (∝ H·W)" if axis == "resolution" else ""))
        if (p, d) in floors:
            fl = sorted(floors[(p, d)])
            ax.plot([q[0] for q in fl], [q[1] for q in fl], linestyle=":", color="black",
                    linewidth=1.4, label=f"floor {p} {d}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    xs = sorted({q[0] for v in series.values() for q in v})
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:g}" for x in xs])
    # Log minor ticks on x would label sizes that were never measured.
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel({"T": "sequence length T", "resolution": "resolution (frame height H)",
                   "batch": "batch size B"}.get(axis, axis))
    ax.set_ylabel("time (ms, log)")
    ax.set_title(title(doc, f"Scaling of {op} with {axis}"), fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2 if len(series) > 6 else 1)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None


def render(plt, doc: dict, stem: str, out_dir: str, log=print) -> list[str]:
    """Write every figure the document supports; return the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []

    def emit(reason: str | None, path: str):
        if reason is None:
            written.append(path)
            log(f"wrote {path}")
        else:
            log(f"skipped {os.path.basename(path)}: {reason}")

    p = os.path.join(out_dir, f"{stem}-speedup.png")
    emit(plot_speedup(plt, doc, p), p)
    sweeps: dict[tuple[str, str], list[dict]] = {}
    for r in doc.get("benchmarks", []):
        s = r.get("sweep")
        if s:
            sweeps.setdefault((str(s.get("op", "op")), str(s.get("axis", "axis"))), []).append(r)
    for (op, axis), rows in sweeps.items():
        p = os.path.join(out_dir, f"{stem}-scaling-{slug(op)}-{slug(axis)}.png")
        emit(plot_scaling(plt, doc, op, axis, rows, p), p)
    p = os.path.join(out_dir, f"{stem}-peak-fraction.png")
    emit(plot_peak_fraction(plt, doc, p), p)
    return written


def _not_results(doc) -> str | None:
    """What is wrong with ``doc`` as a results document, or None (the schema of
    profiling/common.py: a dict whose ``benchmarks`` rows are dicts with ``times_ms``)."""
    if not isinstance(doc, dict):
        return f"a {type(doc).__name__}, not an object"
    rows = doc.get("benchmarks")
    if not isinstance(rows, list):
        return "no 'benchmarks' list"
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("times_ms"), dict):
            return f"benchmarks[{i}] has no 'times_ms' object"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results JSON file(s)")
    parser.add_argument("--out", type=out_dir,
                        help="folder for the PNGs (default: each JSON's folder)")
    parser.add_argument("--markdown", action="store_true",
                        help="print a Markdown table of the non-sweep rows to stdout")
    parser.add_argument("--no-plots", action="store_true", help="write no PNGs")
    args = parser.parse_args(argv)
    plt = None
    if not args.no_plots:
        plt = pyplot()
        if plt is None:
            print(MISSING_MPL, file=sys.stderr)
            return 2
    # With --markdown, stdout is the table alone, ready to paste or redirect.
    log = (lambda msg: print(msg, file=sys.stderr)) if args.markdown else print
    status = 0
    for i, path in enumerate(args.results):
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            print(f"{path}: {e}", file=sys.stderr)
            status = 1
            continue
        problem = _not_results(doc)
        if problem:
            print(f"{path}: not an s2v results JSON ({problem})", file=sys.stderr)
            status = 1
            continue
        stem = os.path.splitext(os.path.basename(path))[0]
        if plt is not None:
            render(plt, doc, stem, args.out or os.path.dirname(os.path.abspath(path)), log)
        if args.markdown:
            print(("\n" if i else "") + f"### {stem}\n\n" + markdown(doc))
    return status


if __name__ == "__main__":
    sys.exit(main())
