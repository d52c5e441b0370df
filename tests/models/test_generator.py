"""Generator: routes, configurations, state carry-over and batch independence."""
import pytest
import torch

from s2v.models import CONFIGS, Generator, named_config
from tests.helpers import rel_err

SMALL = dict(channels_base=32, max_channels=16, audio_features=6)


def _eval_generator(**kwargs):
    g = Generator(**{**SMALL, **kwargs}).eval()
    with torch.no_grad():  # non-trivial biases so every path matters
        for name, p in g.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return g


@pytest.mark.parametrize("name", list(CONFIGS))
def test_named_configurations_run(name):
    g = Generator(output_size=16, **SMALL, **named_config(name)).eval()
    with torch.no_grad():
        video, (ms, vs) = g(torch.randn(2, 3, 6))
    assert video.shape == (2, 3, 3, 16, 16)
    assert video.abs().max() <= 1
    assert len(ms) == g.motion.num_layers
    assert (vs is None) == (named_config(name)["vid_pred"] == "none")


@pytest.mark.parametrize("route", ["rnn", "gen", "rnngen"])
@pytest.mark.parametrize("vid_pred", ["none", "basic", "dir"])
def test_two_calls_equal_one_long_call(route, vid_pred):
    g = _eval_generator(output_size=16, sound_route=route, vid_pred=vid_pred, z_content=2,
                        cond_gen=route != "rnn")
    a, e, z = torch.randn(1, 6, 6), torch.rand(1, 6, 2), torch.rand(1, 6, 2)
    with torch.no_grad():
        v_long, _ = g(a, e, z)
        v1, s = g(a[:, :2], e[:, :2], z[:, :2])
        v2, s = g(a[:, 2:], e[:, 2:], z[:, 2:], s)
    assert rel_err(torch.cat([v1, v2], 1), v_long) < 1e-5


def test_batch_equals_independent_sequences():
    g = _eval_generator(output_size=32)
    a, e = torch.randn(3, 4, 6), torch.rand(3, 4, 2)
    with torch.no_grad():
        v, _ = g(a, e)
        for b in range(3):
            vb, _ = g(a[b:b + 1], e[b:b + 1])
            assert rel_err(v[b], vb[0]) < 1e-5


@pytest.mark.parametrize("architecture", ["basic", "skip"])
def test_secondary_architectures(architecture):
    g = Generator(output_size=32, **SMALL, architecture=architecture, cond_gen=False,
                  vid_pred="none" if architecture == "skip" else "dir")
    video, _ = g(torch.randn(1, 2, 6))
    assert video.shape == (1, 2, 3, 32, 32)
    video.sum().backward()  # trains end to end


def test_training_mode_backpropagates_to_every_parameter():
    g = Generator(output_size=16, **SMALL)
    video, _ = g(torch.randn(2, 3, 6))
    video.square().mean().backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None]
    assert not missing


def test_bad_arguments():
    with pytest.raises(ValueError, match="power of two"):
        Generator(output_size=48)
    with pytest.raises(ValueError, match="sound_route"):
        Generator(sound_route="both")
    with pytest.raises(ValueError, match="vid_pred"):
        Generator(vid_pred="square")
    with pytest.raises(ValueError, match="skip"):
        Generator(architecture="skip", cond_gen=False)
    with pytest.raises(ValueError, match="e_motion"):
        Generator(sound_route="gen", e_motion=0)
    with pytest.raises(ValueError, match="config"):
        named_config("best")
    g = Generator(output_size=16, **SMALL)
    with pytest.raises(ValueError, match="6 features"):
        g(torch.randn(1, 3, 5))
    with pytest.raises(ValueError, match="3-D"):
        g(torch.randn(3, 6))
    with pytest.raises(ValueError, match="e_motion"):
        g(torch.randn(1, 3, 6), e_motion=torch.rand(1, 3, 3))
    with pytest.raises(ValueError, match="state"):
        g(torch.randn(1, 3, 6), state=(None,))
    with pytest.raises(TypeError, match="floating"):
        g(torch.ones(1, 3, 6, dtype=torch.int32))


def test_backend_switch_and_dtype_mismatch():
    """``g.backend`` switches both fused layers; features of another dtype than the
    model's are named as such (not as an internal weight's mismatch)."""
    g = Generator(output_size=16, audio_features=4, channels_base=16, max_channels=8,
                  backend="eager")
    g.backend = "auto"
    assert g.motion.backend == "auto" and g.vp.backend == "auto" and g.backend == "auto"
    with pytest.raises(ValueError, match="backend"):
        g.backend = "bogus"
    with pytest.raises(TypeError, match="audio: expected torch.float32"):
        g(torch.randn(1, 2, 4, dtype=torch.float64))
