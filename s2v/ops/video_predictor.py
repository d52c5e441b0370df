"""Video prediction layer: five directional ConvGRU flows and their blend (SPEC §5).

Flows, in order (the state tuple follows it):

====  =================  =========
flow  cell               direction
====  =================  =========
0     square (``sq``)    —
1     orientation ``h``  +1
2     orientation ``h``  -1  (shares flow 1's weights)
3     orientation ``w``  +1
4     orientation ``w``  -1  (shares flow 3's weights)
====  =================  =========

The blend is a 1×1 convolution with bias of the five hidden maps
(``blend_weight [C_out + 1, 5·C_hid]``, ``blend_bias [C_out + 1]``) into ``p``
(first C_out channels) and a mask logit ``m``; ``y = xh ⊙ σ(m) + p ⊙ (1 - σ(m))``.
The ``basic`` variant is one square cell with ``C_hid = C_out + 1`` whose
hidden map is split the same way; it has no blend weights.

State contract: a tuple of 5 tensors (1 for ``basic``), each ``[B, C_hid, H, W]``,
the hidden map of each flow after the last frame; ``None`` means zeros.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

from ._validation import (check_float_tensor, check_same_device_dtype, check_shape,
                          check_state_tuple)
from .backend import OpBackends
from .dirconv_gru import dirconv_gru_ref, validate_dirconv_gru

# (cell index, orientation, direction) of each flow of the directional layer.
FLOWS = ((0, None, 1), (1, "h", 1), (1, "h", -1), (2, "w", 1), (2, "w", -1))
CELL_ORIENTATIONS = (None, "h", "w")


def blend_ref(hidden: torch.Tensor, xh: torch.Tensor) -> torch.Tensor:
    """Split ``hidden [B, T, C_out + 1, H, W]`` into p and mask; mix with ``xh``."""
    p, mask = hidden[:, :, :-1], torch.sigmoid(hidden[:, :, -1:])
    return xh * mask + p * (1.0 - mask)


def video_predictor_ref(x: torch.Tensor, xh: torch.Tensor, state,
                        weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                        blend_weight: torch.Tensor | None, blend_bias: torch.Tensor | None
                        ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]:
    """Eager reference of the whole layer; see the module doc for layouts."""
    if len(weights) == 1:  # basic variant
        h0 = None if state is None else state[0]
        h = dirconv_gru_ref(x, h0, weights[0], biases[0], None, 1)
        return blend_ref(h, xh), (h[:, -1],)
    flows = []
    for f, (cell, orientation, direction) in enumerate(FLOWS):
        h0 = None if state is None else state[f]
        flows.append(dirconv_gru_ref(x, h0, weights[cell], biases[cell], orientation, direction))
    B, T, _, H, W = x.shape
    stacked = torch.cat(flows, dim=2).flatten(0, 1)
    agg = F.conv2d(stacked, blend_weight[:, :, None, None], blend_bias)
    y = blend_ref(agg.view(B, T, -1, H, W), xh)
    return y, tuple(h[:, -1] for h in flows)


def validate_video_predictor(x, xh, state, weights, biases, blend_weight, blend_bias) -> None:
    check_float_tensor("x", x, 5)
    B, T, C, H, W = x.shape
    if len(weights) not in (1, 3) or len(biases) != len(weights):
        raise ValueError("weights/biases: expected 3 cells (directional) or 1 (basic), "
                         f"got {len(weights)} weights and {len(biases)} biases")
    directional = len(weights) == 3
    orientations = CELL_ORIENTATIONS if directional else (None,)
    for cell, orientation in enumerate(orientations):
        validate_dirconv_gru(x, None, weights[cell], biases[cell], orientation, 1)
    C_hid = weights[0].shape[1]
    if not directional and C_hid != C + 1:
        raise ValueError(f"weights[0]: the basic variant needs C_hid = C + 1 = {C + 1}, "
                         f"got {C_hid}")
    if directional:
        for cell in (1, 2):
            if weights[cell].shape[1] != C_hid:
                raise ValueError(f"weights[{cell}]: expected C_hid = {C_hid} like the square "
                                 f"cell, got {weights[cell].shape[1]}")
        if blend_weight is None or blend_bias is None:
            raise ValueError("blend_weight/blend_bias: required by the directional layer")
        check_shape("blend_weight", blend_weight, (C + 1, 5 * C_hid), "[C_out + 1, 5·C_hid]")
        check_shape("blend_bias", blend_bias, (C + 1,), "[C_out + 1]")
        check_same_device_dtype("x", x, blend_weight=blend_weight, blend_bias=blend_bias)
    check_float_tensor("hallucinated", xh)
    check_shape("hallucinated", xh, (B, T, C, H, W), "[B, T, C, H, W] (that of x)")
    check_same_device_dtype("x", x, hallucinated=xh)
    if state is not None:
        n = len(FLOWS) if directional else 1
        check_state_tuple(state, [(B, C_hid, H, W)] * n, "[B, C_hid, H, W]", x,
                          "one per flow")


video_predictor_backends = OpBackends("video_predictor")
video_predictor_backends.register("eager", video_predictor_ref)


def video_predictor(x: torch.Tensor, xh: torch.Tensor | None, state, weights, biases,
                    blend_weight=None, blend_bias=None, backend: str = "auto"):
    """The video prediction layer as a function.

    Args:
        x: ``[B, T, C, H, W]``, read by the flows.
        xh: ``[B, T, C, H, W]`` mixed in by the blend (``None`` = ``x``).
        state: tuple of 5 (directional) or 1 (basic) ``[B, C_hid, H, W]``, or None.
        weights, biases: per cell (square, h, w) or (square,) in the layout of
            :mod:`s2v.ops.dirconv_gru`.
        blend_weight, blend_bias: ``[C + 1, 5·C_hid]``, ``[C + 1]`` (directional only).

    Returns:
        ``(y [B, T, C, H, W], new_state)``; new_state is not detached here.
    """
    xh = x if xh is None else xh
    validate_video_predictor(x, xh, state, weights, biases, blend_weight, blend_bias)
    impl = video_predictor_backends.resolve(backend, x.device)
    return impl(x, xh, state, tuple(weights), tuple(biases), blend_weight, blend_bias)
