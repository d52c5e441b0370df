"""Building blocks of the generator and the discriminators (SPEC §4, §6).

``dims`` selects 2-D (images, ``[N, C, H, W]``) or 3-D (video, ``[N, C, T, H, W]``)
convolutions, normalisation and pooling.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
_RES_NORM = 1.0 / math.sqrt(2.0)


def conv(dims: int, cin: int, cout: int, kernel_size: int) -> nn.Module:
    cls = nn.Conv2d if dims == 2 else nn.Conv3d
    return cls(cin, cout, kernel_size, padding=kernel_size // 2)


def batch_norm(dims: int, channels: int) -> nn.Module:
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(channels, eps=1e-5)


class NoiseInjection(nn.Module):
    """``x + w · ν`` with ``ν ~ N(0, 1)`` of shape ``[N, 1, *spatial]`` and a scalar w (init 0)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn((x.shape[0], 1) + tuple(x.shape[2:]), device=x.device,
                            dtype=x.dtype)
        return x + self.weight * noise


def conditional_instance_norm(x: torch.Tensor, beta_gamma: torch.Tensor,
                              eps: float = 1e-5) -> torch.Tensor:
    """Instance-normalise ``x [N, C, H, W]`` (biased variance) then ``x̂ ⊙ γ + β``.

    ``beta_gamma [N, 2C]``: first half β, second half γ.
    """
    # ATen's fused instance norm: one statistics pass instead of separate mean,
    # var, sub, sqrt and div passes (3-4× faster on CPU at the generator's sizes).
    # (1×1 maps: ATen refuses them; there x̂ = x - mean = 0.)
    normed = (F.instance_norm(x, eps=eps) if x.shape[-2] * x.shape[-1] > 1
              else x - x.mean(dim=(-2, -1), keepdim=True))
    C = x.shape[1]
    beta = beta_gamma[:, :C, None, None]
    gamma = beta_gamma[:, C:, None, None]
    return torch.addcmul(beta, normed, gamma)


def upsample_nearest_2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour ×2 upsampling of ``x [N, C, H, W]`` -> ``[N, C, 2H, 2W]``.

    The same values as ``F.interpolate(x, scale_factor=2, mode="nearest")`` by one
    broadcast copy: ATen's CPU upsample kernel took 104 ms for a [16, 128, 32, 32]
    input (17 ms this way), which made it the generator's largest single op at 64 px.
    """
    N, C, H, W = x.shape
    return x[:, :, :, None, :, None].expand(N, C, H, 2, W, 2).reshape(N, C, 2 * H, 2 * W)


class ConvNormAct(nn.Module):
    """``conv3 (bias) → [noise] → BatchNorm → lrelu(0.2)``."""

    def __init__(self, dims: int, cin: int, cout: int, noise: bool = False):
        super().__init__()
        self.conv = conv(dims, cin, cout, 3)
        self.noise = NoiseInjection() if noise else None
        self.norm = batch_norm(dims, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.noise is not None:
            x = self.noise(x)
        return F.leaky_relu(self.norm(x), LRELU_SLOPE)


class ResidualBlock(nn.Module):
    """``y = conv → [noise] → norm → lrelu → conv → [noise] → norm``;
    ``out = lrelu((y + conv1×1(x)) / √2)``.

    ``cond_features > 0`` replaces both norms by conditional instance norm driven
    by ``lrelu(condition(a))`` (one Linear per block, 2-D only).
    """

    def __init__(self, dims: int, cin: int, cout: int, noise: bool = False,
                 cond_features: int = 0):
        super().__init__()
        self.conv1 = conv(dims, cin, cout, 3)
        self.noise1 = NoiseInjection() if noise else None
        self.conv2 = conv(dims, cout, cout, 3)
        self.noise2 = NoiseInjection() if noise else None
        self.shortcut = conv(dims, cin, cout, 1)
        if cond_features:
            self.condition = nn.Linear(cond_features, 2 * cout)
            self.norm1 = self.norm2 = None
        else:
            self.condition = None
            self.norm1 = batch_norm(dims, cout)
            self.norm2 = batch_norm(dims, cout)

    def _norm(self, norm, x, beta_gamma):
        return norm(x) if norm is not None else conditional_instance_norm(x, beta_gamma)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        beta_gamma = None
        if self.condition is not None:
            if cond is None:
                raise ValueError("this block is conditional: it needs the audio features")
            beta_gamma = F.leaky_relu(self.condition(cond), LRELU_SLOPE)
        y = self.conv1(x)
        if self.noise1 is not None:
            y = self.noise1(y)
        y = F.leaky_relu(self._norm(self.norm1, y, beta_gamma), LRELU_SLOPE)
        y = self.conv2(y)
        if self.noise2 is not None:
            y = self.noise2(y)
        y = self._norm(self.norm2, y, beta_gamma)
        return F.leaky_relu((y + self.shortcut(x)) * _RES_NORM, LRELU_SLOPE)


class PlainBlock(nn.Module):
    """Two ``ConvNormAct`` (the ``basic`` and ``skip`` architectures)."""

    def __init__(self, dims: int, cin: int, cout: int, noise: bool = False):
        super().__init__()
        self.first = ConvNormAct(dims, cin, cout, noise)
        self.second = ConvNormAct(dims, cout, cout, noise)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.second(self.first(x))


def stage_channels(stage: int, n_stages: int, channels_base: int, max_channels: int,
                   double_finest: bool = False) -> int:
    """``nc(l) = min(floor(m · base / 2^l), max_ch)``, m = 2 on the two finest stages
    when ``double_finest``."""
    m = 2.0 if double_finest and n_stages - stage < 2 else 1.0
    return min(int(m * channels_base // 2.0 ** stage), max_channels)


def all_stage_channels(n_stages: int, channels_base: int, max_channels: int,
                       double_finest: bool = False, size: int | None = None) -> list:
    """``[nc(0) .. nc(n_stages)]``; ValueError when a stage would get no channels (a
    ``channels_base`` below 2^stage) instead of building zero-width layers."""
    nc = [stage_channels(l, n_stages, channels_base, max_channels, double_finest)
          for l in range(n_stages + 1)]
    if min(nc) < 1:
        stage = nc.index(min(nc))
        at = f" at {size} px" if size else ""
        raise ValueError(f"channels_base: {channels_base} leaves stage {stage} with no channels"
                         f"{at} (channels = base / 2^stage, capped by max_channels); use "
                         f"channels_base >= {2 ** n_stages}")
    return nc
