"""The command line: demo output, version, one-line errors."""
import json
import subprocess
import sys
import zlib

import pytest

from s2v import __version__
from s2v.cli import main


def test_demo_writes_frames_and_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "16", "--frames", "3",
                 "--chunk", "2"]) == 0
    frames = sorted(p.name for p in out.glob("frame_*.png"))
    assert frames == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    png = (out / "frame_00001.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" in png
    idat = png[png.index(b"IDAT") + 4:png.index(b"IEND") - 8]
    assert len(zlib.decompress(idat)) == 16 * (1 + 16 * 3)  # filter byte + RGB per row
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3 and "random weights" in summary["note"]
    assert "random weights" in capsys.readouterr().out


def test_user_errors_print_one_line_and_exit_2(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size", "24"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "power of two" in err[0]
    assert main(["demo", "--out", str(tmp_path), "--config", "nope"]) == 2
    with pytest.raises(ValueError, match="power of two"):
        main(["--debug", "demo", "--out", str(tmp_path), "--size", "24"])


def test_module_entry_point_reports_version():
    out = subprocess.run([sys.executable, "-m", "s2v", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"s2v {__version__}"


def test_unknown_backend_is_rejected_by_the_parser():
    with pytest.raises(SystemExit):
        main(["demo", "--backend", "fastest"])
