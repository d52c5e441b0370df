"""Published weights: loading golden params and published generator checkpoints."""
import json
import os

import numpy as np
import pytest
import torch

from s2v.compat import PublishedWeightsError, from_published
from s2v.models import Generator, ImageDiscriminator, VideoDiscriminator
from s2v.nn import DilatedResidualGRU, VideoPredictor
from tests.conftest import GOLDEN_DIR


def _load(name):
    with np.load(os.path.join(GOLDEN_DIR, name)) as data:
        config = json.loads(str(data["config"]))
        params = {k[6:]: data[k] for k in data.files if k.startswith("param/")}
        arrays = {k: data[k] for k in data.files}
    return config, params, arrays


@pytest.mark.parametrize("name,cls", [("vp_dir_k5_eval.npz", VideoPredictor),
                                      ("vp_basic_k3_train.npz", VideoPredictor),
                                      ("me_feedback_L3_eval.npz", DilatedResidualGRU),
                                      ("gen_rnngen_cond_dir_16px.npz", Generator),
                                      ("disc_image_skip_16px.npz", ImageDiscriminator),
                                      ("disc_video_skip_32px_t4.npz", VideoDiscriminator)])
def test_builds_the_right_module_in_eval_mode(name, cls):
    config, params, _ = _load(name)
    module = from_published(config, params)
    assert isinstance(module, cls) and not module.training


def test_directional_taps_are_laid_end_to_end():
    config, params, _ = _load("vp_dir_k5_eval.npz")
    vp = from_published(config, params)
    w = vp.cells[2].weight  # orientation 'w', k = 5: taps 1 + 3 + 5
    assert w.shape[-1] == 9
    assert torch.equal(w[1, :, :, 1:4], torch.as_tensor(
        params["flows.2.update.convs.1.weight"]).flatten(2))


def test_loads_a_published_generator_checkpoint_file(tmp_path):
    config, params, arrays = _load("gen_rnngen_cond_dir_16px.npz")
    path = tmp_path / "050000_Gn.model"
    torch.save({k: torch.as_tensor(v) for k, v in params.items()}, path)
    g = from_published(config, path)
    with torch.no_grad():
        video, _ = g(torch.as_tensor(arrays["in/audio0"]),
                     e_motion=torch.as_tensor(arrays["in/e_motion0"]))
    assert np.abs(video.numpy() - arrays["out/video0"]).max() < 1e-5


def test_mismatched_config_or_weights_are_refused():
    config, params, _ = _load("gen_rnngen_cond_dir_16px.npz")
    with pytest.raises(PublishedWeightsError, match="motion encoder layers"):
        from_published({**config, "motion_layers": 2}, params)
    with pytest.raises(PublishedWeightsError, match="shape"):
        from_published({**config, "max_channels": 32}, params)
    extra = dict(params, **{"generator.extra.weight": np.zeros(1)})
    with pytest.raises(PublishedWeightsError, match="no place"):
        from_published(config, extra)
    with pytest.raises(ValueError, match="kind"):
        from_published({"kind": "vocoder"}, params)
    with pytest.raises(FileNotFoundError):
        from_published(config, "/nonexistent/000_Gn.model")
