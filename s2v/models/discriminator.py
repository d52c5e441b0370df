"""Image and video discriminators (SPEC §6): patch logits, ``skip`` by default."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops._validation import check_float_tensor, check_positive_int
from ._init import init_weights
from .blocks import PlainBlock, ResidualBlock, conv, all_stage_channels

ARCHITECTURES = ("skip", "residual", "basic")


def times_divisible_by_two(k: int) -> int:
    n = 0
    while k % 2 == 0:
        k //= 2
        n += 1
    return n


def valid_video_lengths(input_size: int, limit: int = 64) -> list:
    """Sequence lengths up to ``limit`` that the skip video discriminator accepts at this size."""
    n = int(math.log2(input_size)) - 2
    ok = []
    for T in range(2, limit + 1, 2):
        q = min(times_divisible_by_two(T), n)
        if q == n or T // 2 ** q == 1:
            ok.append(T)
    return ok


class _Discriminator(nn.Module):
    """Shared body: ``dims`` 2 (images) or 3 (video, time halved by the first q stages)."""

    def __init__(self, dims: int, seq_len: int, input_size: int, channels_base: int,
                 max_channels: int, architecture: str, double_finest: bool):
        super().__init__()
        check_positive_int("input_size", input_size, 8)
        if input_size & (input_size - 1):
            raise ValueError(f"input_size: expected a power of two >= 8, got {input_size}")
        check_positive_int("channels_base", channels_base)
        check_positive_int("max_channels", max_channels)
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture: expected one of {', '.join(ARCHITECTURES)}, "
                             f"got {architecture!r}")
        self.dims = dims
        self.seq_len = seq_len
        self.input_size = input_size
        self.architecture = architecture
        self.n_stages = n = int(math.log2(input_size)) - 2
        # q: how many stages also halve time.
        self.time_stages = min(times_divisible_by_two(seq_len), n) if dims == 3 else 0
        nc = all_stage_channels(n, channels_base, max_channels, double_finest, input_size)
        # Stage i runs finest first: nc(n - i) -> nc(n - i - 1).
        if architecture == "skip":
            self.from_rgb = nn.ModuleList(conv(dims, 3, nc[n - i], 1) for i in range(n))
        else:
            self.from_rgb = conv(dims, 3, nc[n], 1)
        if architecture == "residual":
            self.stages = nn.ModuleList(ResidualBlock(dims, nc[n - i], nc[n - i - 1])
                                        for i in range(n))
        else:
            self.stages = nn.ModuleList(PlainBlock(dims, nc[n - i], nc[n - i - 1])
                                        for i in range(n))
        self.decision = conv(dims, nc[0], 1, 1)
        self.apply(init_weights)

    def _pool(self, x: torch.Tensor, halve_time: bool) -> torch.Tensor:
        if self.dims == 2:
            return F.avg_pool2d(x, 2)
        kernel = (2, 2, 2) if halve_time else (1, 2, 2)
        if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16):
            # ATen has no half-precision avg_pool3d on CPU; average in float32.
            return F.avg_pool3d(x.float(), kernel).to(x.dtype)
        return F.avg_pool3d(x, kernel)

    def _downsample(self, x: torch.Tensor, halve_time: bool) -> torch.Tensor:
        if self.dims == 2:
            scale = (0.5, 0.5)
        else:
            scale = (0.5 if halve_time else 1.0, 0.5, 0.5)
        return F.interpolate(x, scale_factor=scale, mode="nearest")

    def _body(self, inp: torch.Tensor) -> torch.Tensor:
        q = self.time_stages
        if self.architecture != "skip":
            x = self.from_rgb(inp)
            for i, stage in enumerate(self.stages):
                x = stage(self._pool(x, i < q))
            return self.decision(x)
        x = None
        for i, (from_rgb, stage) in enumerate(zip(self.from_rgb, self.stages)):
            if i > 0:
                inp = self._downsample(inp, i < q)
            y = from_rgb(inp)
            # When q < n the skip input keeps twice the time of the features; the
            # constructor only admits the lengths where that difference is 1 vs 2,
            # which broadcasts (the published behaviour).
            x = y if x is None else x + y
            x = stage(self._pool(x, i < q))
        return self.decision(x)


class ImageDiscriminator(_Discriminator):
    """D_I: ``logits [B, 1, 4, 4] = d(x [B, 3, S, S])``."""

    def __init__(self, input_size: int = 128, channels_base: int = 1024,
                 max_channels: int = 512, architecture: str = "skip",
                 double_finest: bool = False):
        super().__init__(2, 1, input_size, channels_base, max_channels, architecture,
                         double_finest)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float_tensor("x", x, 4)
        S = self.input_size
        if tuple(x.shape[1:]) != (3, S, S):
            raise ValueError(f"x: expected [B, 3, {S}, {S}], got {tuple(x.shape)}")
        return self._body(x)


class VideoDiscriminator(_Discriminator):
    """D_V: ``logits [B, 1, T_out, 4, 4] = d(x [B, T, 3, S, S])`` with 3-D convolutions.

    T must be even. With q = min(v2(T), n) time-halving stages, T_out = T / 2^n when
    q = n; for ``skip`` with q < n only T = 2^q is accepted, giving T_out = 2.
    """

    def __init__(self, seq_len: int = 32, input_size: int = 128, channels_base: int = 1024,
                 max_channels: int = 512, architecture: str = "skip",
                 double_finest: bool = False):
        check_positive_int("seq_len", seq_len, 2)
        if seq_len % 2:
            raise ValueError(f"seq_len: the video discriminator needs an even length, "
                             f"got {seq_len}")
        super().__init__(3, seq_len, input_size, channels_base, max_channels, architecture,
                         double_finest)
        q, n = self.time_stages, self.n_stages
        if architecture == "skip" and q < n and seq_len // 2 ** q != 1:
            raise ValueError(
                f"seq_len: the skip video discriminator cannot take T = {seq_len} at "
                f"{input_size} px (T must be a multiple of {2 ** n} or a power of two "
                f"below it); valid lengths up to 64: {valid_video_lengths(input_size)}")

    @property
    def output_length(self) -> int:
        q, n = self.time_stages, self.n_stages
        if q == n or self.architecture != "skip":
            return self.seq_len // 2 ** q
        return self.seq_len // 2 ** (q - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float_tensor("x", x, 5)
        T, S = self.seq_len, self.input_size
        if tuple(x.shape[1:]) != (T, 3, S, S):
            raise ValueError(f"x: expected [B, {T}, 3, {S}, {S}], got {tuple(x.shape)}")
        return self._body(x.permute(0, 2, 1, 3, 4))
