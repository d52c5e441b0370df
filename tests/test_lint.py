"""Pyflakes-level checks over every Python file of the project.

Profiling scripts and CLI branches that no test executes can still hold an
undefined name that only fails at the end of a long GPU run (it happened: a
benchmark lost its JSON to a deleted helper). ruff's ``F`` rules find those
statically, in well under a second.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = ["s2v", "kernels", "profiling", "tests", "setup.py"]


def _ruff() -> list[str] | None:
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if Path(exe).exists():
        return [exe]
    return None


def test_no_pyflakes_errors():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    proc = subprocess.run([*ruff, "check", "--no-cache", "--select", "F", "--output-format",
                           "concise", *TREES], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
