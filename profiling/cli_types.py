"""argparse types of the profiling commands (no torch import: plot.py uses them too).
Bad values become one usage line before any benchmark runs."""
from __future__ import annotations

import argparse
import math
import os


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a usage error, not a traceback, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def out_dir(text: str) -> str:
    """argparse type: a folder for results (created later), not an existing file; checked
    before any benchmark runs, so no measurement is lost to a bad --out."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return text
