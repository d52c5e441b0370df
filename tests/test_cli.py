"""The command line: demo output, version, one-line errors."""
import json
import subprocess
import sys

import pytest

from s2v import __version__
from s2v.cli import main


def test_demo_runs_the_whole_product(tmp_path, capsys):
    pytest.importorskip("av", reason="PyAV is not installed")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "16", "--seconds", "6", "--steps", "2",
                 "--minutes", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "mean-frame baseline" in text and "PSNR" in text
    result = json.loads((out / "demo_result.json").read_text())
    assert result["steps"] == 2 and isinstance(result["beats_baseline"], bool)
    # The verdict printed is the one computed.
    assert ("does NOT beat" in text) == (not result["beats_baseline"])
    png = (out / "side_by_side.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert (out / "reanimated_holdout.mp4").stat().st_size > 0


def test_user_errors_print_one_line_and_exit_2(tmp_path, capsys):
    # `s2v demo` writes its synthetic clip (PyAV) before it reads --size.
    pytest.importorskip("av", reason="PyAV is not installed")
    assert main(["demo", "--out", str(tmp_path), "--size", "24", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "power of two" in err[0]
    with pytest.raises(ValueError, match="power of two"):
        main(["--debug", "demo", "--out", str(tmp_path), "--size", "24", "--no-progress"])


def test_module_entry_point_reports_version():
    out = subprocess.run([sys.executable, "-m", "s2v", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"s2v {__version__}"


def test_unknown_backend_is_rejected_by_the_parser():
    with pytest.raises(SystemExit):
        main(["demo", "--backend", "fastest"])


def test_usage_mistakes_are_one_line(capsys):
    """A flag argparse rejects is one line too, like every other user error."""
    with pytest.raises(SystemExit) as stop:
        main(["train", "--size", "abc", "--out", "x"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--size" in err[0] and "--help" in err[0]
