"""One entry point for every benchmark the device supports.

    python -m profiling.run_all [--quick] [--out DIR]

Runs each ``profiling/bench_*.py`` module as a subprocess (each first runs its
op's tests and reports no speed-up for an op whose tests fail), collects the
JSON each writes into a scratch folder, and merges them into one
``<out>/<YYYY-MM-DD>-<device-slug>.json`` with the schema of
``profiling/common.py``: benchmarks and kernels concatenated, test counts
summed. ``--quick`` passes ``--quick`` to the benchmarks (5 repetitions instead of
20; 64-px and T = 256 shapes only; no scaling sweeps). The top-level
``peaks`` are those the benchmarks measured (first non-null value of each).
Afterwards ``profiling/plot.py`` renders the PNGs next to the JSON when
matplotlib is installed (``pip install -e '.[profiling]'``).

A benchmark that cannot run on this machine (PyAV missing, say) says so and
writes no JSON; it is listed under ``runs`` as ``no results``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import subprocess
import sys
import tempfile

import torch

from profiling.common import (RESULTS_DIR, ROOT, commit, device_name, device_slug,
                              extension_info, out_dir, positive_int, versions)

BENCHES = ("bench_dilated_gru", "bench_video_predictor", "bench_product", "bench_media")


def _accepts(module: str, flag: str) -> bool:
    with open(os.path.join(ROOT, "profiling", module + ".py")) as f:
        return flag in f.read()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=out_dir, default=RESULTS_DIR)
    parser.add_argument("--only", nargs="+", choices=BENCHES, metavar="BENCH",
                        help=f"run only these bench modules ({', '.join(BENCHES)})")
    parser.add_argument("--threads", type=positive_int, default=2,
                        help="CPU threads for every benchmark (fixed and reported)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the torch.compile baselines (minutes of compilation each)")
    parser.add_argument("--compile-timeout", type=float, default=None,
                        help="seconds each torch.compile baseline may take (compile + timing)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    merged = {"device": device_name(device), "commit": commit(),
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "versions": versions(), "extension": extension_info(), "benchmarks": [],
              "kernels": [],
              "tests": {"passed": 0, "failed": 0, "skipped": 0}, "peaks": {},
              "threads": args.threads, "quick": args.quick, "runs": {}}
    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        for module in args.only or BENCHES:
            if not os.path.isfile(os.path.join(ROOT, "profiling", module + ".py")):
                merged["runs"][module] = "missing"
                continue
            out = os.path.join(scratch, module)
            cmd = [sys.executable, "-m", f"profiling.{module}", "--out", out]
            if args.quick and _accepts(module, "--quick"):
                cmd.append("--quick")
            if _accepts(module, "--threads"):
                cmd += ["--threads", str(args.threads)]
            if args.no_compile and _accepts(module, "--no-compile"):
                cmd.append("--no-compile")
            if args.compile_timeout is not None and _accepts(module, "--compile-timeout"):
                cmd += ["--compile-timeout", str(args.compile_timeout)]
            print(f"== {module}", flush=True)
            proc = subprocess.run(cmd, cwd=ROOT)
            merged["runs"][module] = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
            failed |= proc.returncode != 0
            paths = sorted(glob.glob(os.path.join(out, "*.json")))
            if proc.returncode == 0 and not paths:
                merged["runs"][module] = "no results"
            for path in paths:
                with open(path) as f:
                    doc = json.load(f)
                for b in doc.get("benchmarks", []):
                    b.setdefault("source", module)
                merged["benchmarks"] += doc.get("benchmarks", [])
                merged["kernels"] += doc.get("kernels", [])
                for key, value in doc.get("peaks", {}).items():
                    if merged["peaks"].get(key) is None:
                        merged["peaks"][key] = value
                for key in merged["tests"]:
                    merged["tests"][key] += int(doc.get("tests", {}).get(key, 0))
    os.makedirs(args.out, exist_ok=True)
    # A partial run (--only) is named after its modules, so that the parts of a
    # run split over several commands do not overwrite one another.
    part = ("-" + "+".join(m.replace("bench_", "") for m in args.only)) if args.only else ""
    path = os.path.join(args.out, f"{dt.date.today().isoformat()}-"
                                  f"{device_slug(merged['device'])}{part}.json")
    with open(path, "w") as f:
        json.dump(merged, f, indent=2)
    print(f"wrote {path}")
    if not args.no_plots:
        subprocess.run([sys.executable, "-m", "profiling.plot", path], cwd=ROOT)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
