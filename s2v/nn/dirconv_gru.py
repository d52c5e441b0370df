"""``DirConvGRU``: one (directional) ConvGRU cell run over a sequence."""
from __future__ import annotations

import torch
from torch import nn

from ..ops._validation import check_odd_kernel, check_positive_int
from ..ops.dirconv_gru import ORIENTATIONS, dirconv_gru, dirconv_gru_backends, gate_weight_shape
from ._backend import backend_property
from ._init import normal_


class DirConvGRU(nn.Module):
    """A ConvGRU cell (square k×k, or directional along ``'h'``/``'w'``) over T frames.

    ``h_seq, state = cell(x, state=None, direction=+1)`` with ``x [B, T, C_in, H, W]``,
    ``h_seq [B, T, C_hid, H, W]`` and ``state [B, C_hid, H, W]`` (the last frame's
    hidden map, detached; ``None`` = zeros). ``direction`` (+1/-1) only matters for
    directional cells. Parameters: ``weight`` (gates reset, update, output stacked;
    layout in :mod:`s2v.ops.dirconv_gru`) and ``bias [3, C_hid]``; the same for
    every backend.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3,
                 orientation=None, backend: str = "auto"):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("hidden_channels", hidden_channels)
        check_odd_kernel(kernel_size)
        if orientation not in ORIENTATIONS:
            raise ValueError(f"orientation: expected None, 'h' or 'w', got {orientation!r}")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.orientation = orientation
        self.backend = backend
        shape = gate_weight_shape(in_channels, hidden_channels, kernel_size, orientation)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(3, hidden_channels))
        self.reset_parameters()

    backend = backend_property(dirconv_gru_backends)

    def reset_parameters(self) -> None:
        normal_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, direction: int = 1):
        h_seq = dirconv_gru(x, state, self.weight, self.bias, self.orientation, direction,
                            backend=self.backend)
        # A copy: editing the returned state in place must not change h_seq (nor a
        # tensor the fused op saved for its backward).
        return h_seq, h_seq[:, -1].detach().clone()

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}, "
                f"orientation={self.orientation!r}, backend={self.backend!r}")
