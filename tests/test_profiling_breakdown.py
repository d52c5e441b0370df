"""profiling.breakdown on CPU, tiny shapes: what it reports and where."""
import json

import pytest

from profiling import breakdown


def test_categories():
    c = breakdown.category
    assert c("_video_predictor_bwd_kernel") == "fused"
    assert c("void s2v::dgru::(anonymous namespace)::forward_grouped_kernel<float>(Params)") \
        == "fused"
    assert c("s2v::dilated_gru_fwd") == "fused"
    assert c("sm80_xmma_gemm_f32f32_f32f32_f32_nt_n_tilesize32x32x8") == "gemm"
    assert c("aten::addmm_") == c("aten::mm") == "gemm"
    assert c("aten::convolution_backward") == "conv"
    assert c("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>") \
        == "copy"
    assert c("aten::sigmoid") == "elementwise"
    assert c("something_else") == "other"


def test_cpu_breakdown_of_fused_and_eager_dilated_gru(tmp_path, capsys):
    rc = breakdown.main(["--device", "cpu", "--small", "--targets", "dilated_gru",
                         "--backends", "auto,eager", "--reps", "1", "--warmup", "1",
                         "--top", "5", "--out", str(tmp_path)])
    assert rc == 0
    (path,) = tmp_path.glob("*-breakdown.json")
    doc = json.loads(path.read_text())
    entries = doc["breakdowns"]
    assert len(entries) == 2 * 2  # backends x phases
    for e in entries:
        assert e["wall_ms"] > 0 and e["profiled_ms"] > 0
        assert len(e["top"]) <= 5
        assert sum(e["categories"].values()) == pytest.approx(e["profiled_ms"], rel=1e-3)
        assert e["top"] == sorted(e["top"], key=lambda r: -r["ms"])
        fused = e["categories"].get("fused", 0.0)
        # The fused backends show up as s2v:: custom ops; eager never calls them.
        if e["backend"] == "auto":
            assert fused > 0, e
        else:
            assert fused == 0, e
    out = capsys.readouterr().out
    assert "| ms | % | calls | category | name |" in out


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        breakdown.main(["--targets", "nope"])
    assert exc.value.code == 2
    assert "expected a comma-separated subset" in capsys.readouterr().err
