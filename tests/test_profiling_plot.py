"""profiling/plot.py: PNGs and the Markdown table from a results JSON."""
import glob
import json
import os
import sys

import pytest

from profiling import plot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(name, pass_, dtype, times, **extra):
    row = {"name": name, "pass": pass_, "dtype": dtype, "shape": extra.pop("shape", {}),
           "times_ms": times, "floor_ms": extra.pop("floor_ms", None),
           "gflops": extra.pop("gflops", {}), "peak_mem_mb": {}}
    row.update(extra)
    return row


def _doc(peaks=True):
    rows = [
        # > 30x range between bars: the speedup axis goes logarithmic.
        _row("dgru_t256", "fwd", "fp32", {"eager": 100.0, "compile": None, "gru_reshape": 20.0,
                                          "cpu": 2.0}, gflops={"eager": 1.0, "cpu": 50.0}),
        _row("vp_s64", "fwdbwd", "bf16", {"eager": 10.0, "triton": 4.0, "eager_autocast": 8.0},
             gflops={"eager": 100.0, "triton": 250.0}, floor_ms=1.5),
        _row("vp_old", "fwd", "fp32", {"eager": 9.0, "cpu": 6.0},
             gflops={"eager": 90.0, "cpu": 135.0}, matmul_gflops=180.0),
        # No eager time: not in speedup.png, still a table row.
        _row("ingest", "ingest", "uint8", {"decode": 6.0, "ingest": 6.5}, floor_ms=6.0),
        # Only a null eager: skipped in the plots, a "—" in the table.
        _row("never_ran", "fwd", "fp32", {"eager": None, "cpu": 3.0}),
    ]
    for T in (64, 128, 256):
        for p in ("fwd", "fwdbwd"):
            rows.append(_row(f"dgru_sweep_t{T}", p, "fp32",
                             {"eager": T * 0.5, "cpu": T * 0.01 + 0.5, "compile": None},
                             shape={"B": 1, "T": T, "D": 66, "L": 3}, floor_ms=T * 0.004,
                             sweep={"op": "dilated_gru", "axis": "T"}))
    for H in (32, 64, 128):
        rows.append(_row(f"vp_res{H}", "fwd", "bf16", {"triton": H * H * 1e-3},
                         shape={"B": 1, "T": 8, "C": 32, "H": H, "W": H, "k": 3},
                         sweep={"op": "video_predictor", "axis": "resolution"}))
    doc = {"device": "Test GPU", "commit": "0123456789abcdef", "date": "2026-11-25T00:00:00+00:00",
           "versions": {}, "benchmarks": rows, "kernels": [], "tests": {"passed": 1}}
    if peaks:
        doc["peaks"] = {"fp32_gflops": 200.0, "bf16_gflops": None, "dram_gbs": None,
                        "source": "measured"}
    return doc


def _write(tmp_path, doc, name="res.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000, path


def test_markdown_rows(tmp_path, capsys):
    path = _write(tmp_path, _doc())
    assert plot.main([str(path), "--markdown", "--no-plots"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    head, rows = table[0], table[1:]
    assert head.startswith("| name | pass | dtype | eager (ms) | compile (ms) | gru_reshape (ms)")
    assert "other (ms)" in head and "fused vs eager" in head and "floor (ms)" in head
    # Non-sweep rows only, in file order.
    assert [r.split(" | ")[0][2:] for r in rows] == ["dgru_t256", "vp_s64", "vp_old", "ingest",
                                                     "never_ran"]
    assert "50.0× (cpu)" in rows[0] and "10.0× (cpu vs gru_reshape)" in rows[0]
    assert "2.50× (triton)" in rows[1] and "2.00× (triton vs eager_autocast)" in rows[1]
    assert "decode 6.00, ingest 6.50" in rows[3]
    assert rows[4].count("—") >= 2  # null eager: no time, no ratio vs eager
    assert "sweep" not in out


def test_renders_expected_pngs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = _write(tmp_path, _doc())
    out = tmp_path / "out"
    assert plot.main([str(path), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["res-peak-fraction.png", "res-scaling-dilated_gru-T.png",
                     "res-scaling-video_predictor-resolution.png", "res-speedup.png"]
    for p in out.iterdir():
        _assert_png(p)


def test_old_file_without_peaks_and_several_inputs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    nothing = {"device": "d", "commit": "c", "benchmarks": [
        _row("ingest", "ingest", "uint8", {"decode": 6.0, "ingest": 6.5})]}
    a = _write(tmp_path, _doc(peaks=False), "a.json")
    b = _write(tmp_path, nothing, "b.json")
    assert plot.main([str(a), str(b)]) == 0  # default --out: the JSON's folder
    log = capsys.readouterr().out
    # Without peaks only the row with matmul_gflops qualifies for peak-fraction.png.
    _assert_png(tmp_path / "a-peak-fraction.png")
    _assert_png(tmp_path / "a-speedup.png")
    assert not list(tmp_path.glob("b-*.png"))
    assert "skipped b-speedup.png" in log and "skipped b-peak-fraction.png" in log


def test_existing_results_render(tmp_path):
    pytest.importorskip("matplotlib")
    files = sorted(glob.glob(os.path.join(ROOT, "profiling", "results", "*.json")))
    if not files:
        pytest.skip("no results JSON in profiling/results")
    assert plot.main([*files, "--out", str(tmp_path)]) == 0
    pngs = list(tmp_path.glob("*.png"))
    assert pngs  # at least one of them has an eager time to compare against
    for p in pngs:
        _assert_png(p)


def test_missing_matplotlib_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    assert plot.main([str(_write(tmp_path, _doc()))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install -e '.[profiling]'" in err[0]


def test_foreign_json_and_bad_out_are_one_line(tmp_path, capsys):
    """A JSON that is not a results document is skipped with one line naming what is
    wrong (the other files still render); --out naming a file is a usage error."""
    foreign = tmp_path / "list.json"
    foreign.write_text("[1, 2]")
    rows = tmp_path / "rows.json"
    rows.write_text('{"benchmarks": [1]}')
    assert plot.main([str(foreign), str(rows), "--no-plots"]) == 1
    err = capsys.readouterr().err
    assert "a list, not an object" in err and "benchmarks[0] has no 'times_ms'" in err
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(SystemExit):
        plot.main([str(rows), "--out", str(a_file)])
    assert "is a file, not a folder" in capsys.readouterr().err


def test_profiling_argument_types():
    import argparse

    from profiling.cli_types import positive_float, positive_int

    assert positive_int("3") == 3 and positive_float("0.5") == 0.5
    for bad in ("0", "-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    for bad in ("0", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_float(bad)
