"""What every benchmark JSON records about the code that ran (profiling/common.py)."""
import json
import re

from profiling import common


def test_commit_is_the_checkout_or_the_named_one(monkeypatch):
    """A results JSON names the commit that ran: git's HEAD, or S2V_COMMIT for a tree
    copied to another machine without current git metadata."""
    monkeypatch.delenv("S2V_COMMIT", raising=False)
    head = common.commit()
    assert head == "unknown" or re.fullmatch(r"[0-9a-f]{40}", head)
    monkeypatch.setenv("S2V_COMMIT", " 0123456789abcdef0123456789abcdef01234567\n")
    assert common.commit() == "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("S2V_COMMIT", "   ")
    assert common.commit() == head


def test_results_record_the_extension_and_its_path_overrides(tmp_path, monkeypatch):
    """Which kernel path produced the figures (e.g. the video predictor's AVX-512 tap
    loops or its per-tap GEMMs) is in every results JSON, with any override."""
    monkeypatch.setenv("S2V_VP_CPU_TAPS", "gemm")
    path = common.write_results("probe", [], {"passed": 0, "failed": 0, "skipped": 0},
                                out_dir=str(tmp_path))
    with open(path) as f:
        doc = json.load(f)
    ext = doc["extension"]
    assert "available" in ext
    assert ext["overrides"] == {"S2V_VP_CPU_TAPS": "gemm"}
    if ext["available"]:
        assert isinstance(ext["cpu_fused_taps"], bool)
