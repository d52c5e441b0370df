"""``VideoPredictor``: the five-flow directional ConvGRU layer with its blend."""
from __future__ import annotations

import torch
from torch import nn

from ..ops._validation import check_odd_kernel, check_positive_int
from ..ops.video_predictor import CELL_ORIENTATIONS, video_predictor, video_predictor_backends
from ._backend import backend_property
from ._init import normal_
from .dirconv_gru import DirConvGRU


class VideoPredictor(nn.Module):
    """Video prediction layer (SPEC §5).

    ``y, state = vp(x, state=None, hallucinated=None)`` with ``x [B, T, C, H, W]``
    read by the flows and ``hallucinated`` (default ``x``) mixed in by the blend;
    ``y [B, T, C, H, W]``. ``state`` is a tuple of 5 ``[B, C, H, W]`` maps (flow
    order: square, h+, h-, w+, w-) or of 1 ``[B, C + 1, H, W]`` map for the basic
    variant; it is detached on return; ``None`` means zeros. B > 1 means B
    independent sequences.

    Parameters: ``cells.{0,1,2}`` (square, h, w) as in :class:`DirConvGRU`, and
    ``blend_weight [C + 1, 5C]``, ``blend_bias [C + 1]`` (directional only).
    """

    def __init__(self, channels: int, kernel_size: int = 3, directional: bool = True,
                 backend: str = "auto"):
        super().__init__()
        check_positive_int("channels", channels)
        check_odd_kernel(kernel_size)
        self.channels = channels
        self.kernel_size = kernel_size
        if not isinstance(directional, bool):
            raise TypeError(f"directional: expected True or False, got {directional!r}")
        self.directional = directional
        if self.directional:
            self.cells = nn.ModuleList(
                DirConvGRU(channels, channels, kernel_size, o) for o in CELL_ORIENTATIONS)
            self.blend_weight = nn.Parameter(torch.empty(channels + 1, 5 * channels))
            self.blend_bias = nn.Parameter(torch.zeros(channels + 1))
        else:
            self.cells = nn.ModuleList([DirConvGRU(channels, channels + 1, kernel_size)])
            self.register_parameter("blend_weight", None)
            self.register_parameter("blend_bias", None)
        self.backend = backend  # the cells show the layer's backend (they only hold weights)
        self.reset_parameters()

    def _show_backend(self, backend: str) -> None:
        # The cells only hold weights: they display the layer's backend, and setting
        # one of theirs directly (which would change nothing) is refused.
        for cell in self.cells:
            cell._backend = backend
            cell._backend_owner = type(self).__name__

    backend = backend_property(video_predictor_backends, _show_backend)

    def reset_parameters(self) -> None:
        for cell in self.cells:
            cell.reset_parameters()
        if self.directional:
            normal_(self.blend_weight)
            nn.init.zeros_(self.blend_bias)

    def forward(self, x: torch.Tensor, state=None, hallucinated: torch.Tensor | None = None):
        y, new_state = video_predictor(
            x, hallucinated, state, [c.weight for c in self.cells], [c.bias for c in self.cells],
            self.blend_weight, self.blend_bias, backend=self.backend)
        return y, tuple(s.detach() for s in new_state)

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, "
                f"directional={self.directional}, backend={self.backend!r}")
