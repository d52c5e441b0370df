"""Golden parity: the eager layers reproduce the published implementation (SPEC §10)."""
import json
import os

import numpy as np
import pytest

from s2v.testing import golden
from tests.conftest import GOLDEN_DIR, golden_files

ALL = golden_files()


def test_every_shipped_kind_is_covered():
    assert {f.split("_")[0] for f in ALL} == {"audio", "disc", "gen", "me", "vp"}


@pytest.mark.parametrize("name", ALL)
def test_eager_matches_golden_fp32(name):
    res = golden.run_file(os.path.join(GOLDEN_DIR, name), "eager", "fp32")
    key, err = res.worst(1e-5)
    assert res.passed(1e-5), f"{name}: {key} off by {err:.2e}"
    if "_train" in name:  # gradients were compared too
        assert any(k.startswith("grad") for k in res.errors)
    if name.startswith("audio_"):
        assert {"chunk0_power_mel"} < set(res.errors)


EXTRA_DIR = os.path.join(os.path.dirname(GOLDEN_DIR), "golden_extra")
EXTRA = sorted(f for f in os.listdir(EXTRA_DIR) if f.endswith(".npz"))


@pytest.mark.parametrize("name", EXTRA)
def test_eager_matches_extra_published_cases_fp32(name):
    res = golden.run_file(os.path.join(EXTRA_DIR, name), "eager", "fp32")
    key, err = res.worst(1e-5)
    assert res.passed(1e-5), f"{name}: {key} off by {err:.2e}"


@pytest.mark.parametrize("name", ["me_feedback_L3_train_seed210.npz",
                                  "disc_video_skip_16px_t8.npz", "vp_dir_k5_train.npz"])
def test_bf16_stays_within_tolerance(name):
    """bf16 casts inputs and weights; includes the GRU-update cancellation regression
    and the video discriminator's CPU pooling in half precision."""
    res = golden.run_file(os.path.join(EXTRA_DIR, name), "eager", "bf16")
    key, err = res.worst(2e-2)
    assert res.passed(2e-2), f"{name}: {key} off by {err:.2e}"


def test_cli_passes_every_file(capsys):
    assert golden.main([os.path.join(GOLDEN_DIR, f) for f in ALL]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == len(ALL)


def _rewrite(src, dst, **changes):
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    arrays.update(changes)
    np.savez(dst, **arrays)


def test_cli_fails_on_a_wrong_output(tmp_path, capsys):
    src = os.path.join(GOLDEN_DIR, "vp_dir_k3_eval.npz")
    with np.load(src) as data:
        y = data["out/y1"].copy()
    y[0, 0, 0, 0] += 0.01 * np.abs(y).max()
    bad = tmp_path / "tampered.npz"
    _rewrite(src, bad, **{"out/y1": y})
    assert golden.main([str(bad)]) == 1
    assert "FAIL tampered.npz" in capsys.readouterr().out


def test_cli_errors_on_files_it_cannot_interpret(tmp_path, capsys):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    unknown = tmp_path / "unknown.npz"
    np.savez(unknown, config=np.array(json.dumps({"kind": "vocoder"})))
    mismatched = tmp_path / "mismatched.npz"
    src = os.path.join(GOLDEN_DIR, "me_basic_L3_train.npz")
    with np.load(src) as data:
        config = json.loads(str(data["config"]))
    config["layers"] = 2  # the file holds three layers
    _rewrite(src, mismatched, config=np.array(json.dumps(config)))
    no_kind = tmp_path / "no_kind.npz"
    np.savez(no_kind, config=np.array(json.dumps({"layers": 3})))
    assert golden.main([str(garbage), str(unknown), str(mismatched), str(no_kind)]) == 1
    out = capsys.readouterr().out
    assert out.count("ERROR") == 4 and "PASS" not in out
    assert "unknown kind 'vocoder'" in out and "no 'kind'" in out


def test_runner_works_on_a_renamed_copy_with_fewer_calls(tmp_path):
    """Nothing keys on file names, and the number of calls is read from the file."""
    src = os.path.join(GOLDEN_DIR, "me_basic_L3_train.npz")
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files
                  if not k.startswith(("in/x1", "out/y1", "in/dy1", "grad/x1", "grad/param1"))}
    dst = tmp_path / "anything.npz"
    np.savez(dst, **arrays)
    res = golden.run_file(str(dst))
    assert res.passed(1e-5) and "y1" not in res.errors and "y0" in res.errors


def test_bf16_rounding_floor_explains_the_one_unattainable_case(capsys):
    """me_feedback_L3_train's feedback-bias gradient is ill-conditioned: exact float64
    arithmetic on the bf16-rounded inputs is already past 2e-2, so every backend
    FAILs it in bf16; the CLI says so next to the FAIL. A well-conditioned case's
    floor stays far below its error budget."""
    bad = os.path.join(EXTRA_DIR, "me_feedback_L3_train.npz")
    good = os.path.join(EXTRA_DIR, "me_feedback_L3_train_seed210.npz")
    assert golden.rounding_floor(bad, "bf16").errors["grad1/feedback_bias"] > 2e-2
    assert max(golden.rounding_floor(good, "bf16").errors.values()) < 1e-2
    assert golden.main([bad, "--precision", "bf16"]) == 1
    out = capsys.readouterr().out
    assert "FAIL me_feedback_L3_train.npz" in out
    assert "exact float64 arithmetic on the bf16-rounded inputs and weights: 3." in out
