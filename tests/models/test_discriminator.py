"""Discriminators: output shapes, time halving, the (T, S) pairs the skip variant takes."""
import pytest
import torch

from s2v.models import ImageDiscriminator, VideoDiscriminator
from s2v.models.discriminator import valid_video_lengths

SMALL = dict(channels_base=32, max_channels=16)


@pytest.mark.parametrize("architecture", ["skip", "residual", "basic"])
@pytest.mark.parametrize("size", [16, 64])
def test_image_discriminator_gives_4x4_patches(architecture, size):
    d = ImageDiscriminator(size, architecture=architecture, **SMALL)
    assert d(torch.randn(2, 3, size, size)).shape == (2, 1, 4, 4)


@pytest.mark.parametrize("T,S,T_out", [(4, 16, 1), (8, 16, 2), (2, 16, 2), (4, 32, 2),
                                       (16, 32, 2), (12, 16, 3)])
def test_video_discriminator_time_axis(T, S, T_out):
    d = VideoDiscriminator(T, S, **SMALL).eval()
    assert d.output_length == T_out
    with torch.no_grad():
        assert d(torch.randn(2, T, 3, S, S)).shape == (2, 1, T_out, 4, 4)


@pytest.mark.parametrize("architecture", ["residual", "basic"])
def test_video_discriminator_other_architectures_take_any_even_length(architecture):
    d = VideoDiscriminator(6, 32, architecture=architecture, **SMALL)
    assert d(torch.randn(1, 6, 3, 32, 32)).shape == (1, 1, 3, 4, 4)


def test_invalid_pairs_are_rejected_with_the_valid_choices():
    with pytest.raises(ValueError, match=r"cannot take T = 6 at 32 px.*\[2, 4, 8"):
        VideoDiscriminator(6, 32, **SMALL)
    with pytest.raises(ValueError, match="even"):
        VideoDiscriminator(5, 16)
    with pytest.raises(ValueError, match="power of two"):
        ImageDiscriminator(48)
    assert valid_video_lengths(128)[:5] == [2, 4, 8, 16, 32]
    d = VideoDiscriminator(4, 16, **SMALL)
    with pytest.raises(ValueError, match=r"\[B, 4, 3, 16, 16\]"):
        d(torch.randn(1, 8, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\[B, 3, 16, 16\]"):
        ImageDiscriminator(16, **SMALL)(torch.randn(1, 1, 16, 16))
