"""Command line: ``s2v <command>`` (also ``python -m s2v``).

Errors a user can fix (bad arguments, missing or broken media files,
unavailable backends) print one line and exit with status 2 (``--debug`` shows
the traceback); anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import List

from . import __version__
from .ops.backend import BACKENDS, BackendUnavailableError


def _demo(args) -> int:
    from .demo import run_demo

    summary = run_demo(args.out, size=args.size, frames=args.frames, chunk=args.chunk,
                       config=args.config, seed=args.seed, device=args.device,
                       backend=args.backend)
    print(f"wrote {summary['frames']} frames of {summary['size']}x{summary['size']} to "
          f"{args.out}/ ({summary['ms_per_frame']} ms/frame on {summary['device']}); "
          f"see {args.out}/contact_sheet.png")
    print("note: " + summary["note"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2v", description="Listen and Move: one-shot "
                                     "sound-to-video generation with fused recurrent kernels.")
    parser.add_argument("--version", action="version", version=f"s2v {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of errors instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="forward pass of the full generator on synthetic "
                          "audio features (random weights); writes PNG frames")
    demo.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    demo.add_argument("--size", type=int, default=64, help="frame size, a power of two >= 16")
    demo.add_argument("--frames", type=int, default=16, help="frames to generate")
    demo.add_argument("--chunk", type=int, default=8, help="frames per generator call")
    demo.add_argument("--config", default="full", help="named configuration (default full)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="cpu")
    demo.add_argument("--backend", default="auto", choices=BACKENDS)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: List[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, BackendUnavailableError) as exc:
        if args.debug:
            raise
        print(f"s2v {args.command}: error: {exc}", file=sys.stderr)
        return 2
