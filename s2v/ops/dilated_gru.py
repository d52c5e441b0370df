"""Residual multi-scale dilated GRU stack, the motion encoder (SPEC §3).

Layer l is a GRU cell of hidden size D = input size that reads its own hidden
state from ``dilation ** l`` steps back; between layers the residual
``u^{l+1} = lrelu((h^l + u^l) / √2)`` (only when L > 1). The output is
``u^L`` (L > 1) or ``h^0`` (L = 1).

Weight layout (shared by every backend; gate rows ordered r, z, n as in
PyTorch's GRUCell): ``weight_ih, weight_hh [L, 3D, D]``, ``bias_ih, bias_hh
[L, 3D]``. The ``feedback`` variant adds ``feedback_weight [D, D]`` and
``feedback_bias [D]``: the first layer reads ``lrelu(W x_t + b) + m_{t-1}``.

State contract: a tuple of L tensors, layer l's ``[B, dilation ** l, D]``
holding its last ``dilation ** l`` hidden states, oldest first; ``None`` means
a reset (zeros, and for ``feedback`` no previous output). For ``feedback`` the
first step of a call that receives a state adds the oldest stored hidden state
of the last layer, ``state[L-1][:, 0]`` (the published call-boundary rule).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F

from ._validation import (check_float_tensor, check_positive_int, check_same_device_dtype,
                          check_shape, check_state_tuple)
from .backend import OpBackends

MAX_LAYERS = 8
_RES_NORM = 1.0 / math.sqrt(2.0)


def gru_cell_ref(u, h, w_ih, w_hh, b_ih, b_hh):
    """PyTorch GRUCell arithmetic: rows r, z, n; ``h' = (1 - z) ⊙ n + z ⊙ h``.

    Evaluated as ``(h - n) ⊙ z + n`` like ATen's gru_cell: the difference is formed
    once, so in bfloat16 the update-gate gradient ``g ⊙ (h - n)`` does not cancel
    catastrophically when h ≈ n.
    """
    i_r, i_z, i_n = F.linear(u, w_ih, b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (h - n) * z + n


def dilated_gru_ref(x: torch.Tensor, state, weight_ih, weight_hh, bias_ih, bias_hh,
                    dilation: int = 2, feedback_weight=None, feedback_bias=None
                    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]:
    """Eager reference: ``x [B, T, D]`` -> ``(y [B, T, D], new_state)``."""
    B, T, D = x.shape
    L = weight_ih.shape[0]
    spans = [dilation ** l for l in range(L)]
    # history[l][i] is layer l's hidden state at step i - spans[l] of this call.
    if state is None:
        history = [[x.new_zeros(B, D)] * span for span in spans]
    else:
        history = [list(s.unbind(1)) for s in state]
    feedback = feedback_weight is not None
    previous = None
    if feedback and state is not None:
        previous = state[L - 1][:, 0]
    outputs = []
    for t in range(T):
        if feedback:
            u = F.leaky_relu(F.linear(x[:, t], feedback_weight, feedback_bias), 0.2)
            if previous is not None:
                u = u + previous
        else:
            u = x[:, t]
        for l in range(L):
            h = gru_cell_ref(u, history[l][t], weight_ih[l], weight_hh[l], bias_ih[l],
                             bias_hh[l])
            history[l].append(h)
            u = F.leaky_relu((h + u) * _RES_NORM, 0.2) if L > 1 else h
        outputs.append(u)
        previous = u
    new_state = tuple(torch.stack(history[l][-span:], dim=1) for l, span in enumerate(spans))
    return torch.stack(outputs, dim=1), new_state


def validate_dilated_gru(x, state, weight_ih, weight_hh, bias_ih, bias_hh, dilation,
                         feedback_weight, feedback_bias) -> None:
    check_float_tensor("x", x, 3)
    B, T, D = x.shape
    if B < 1 or T < 1 or D < 1:
        raise ValueError(f"x: expected [B, T, D] with B, T, D >= 1, got {tuple(x.shape)}")
    check_positive_int("dilation", dilation)
    check_float_tensor("weight_ih", weight_ih, 3)
    L = weight_ih.shape[0]
    if not 1 <= L <= MAX_LAYERS:
        raise ValueError(f"weight_ih: expected 1 to {MAX_LAYERS} layers, got {L}")
    check_shape("weight_ih", weight_ih, (L, 3 * D, D), "[L, 3D, D]")
    check_shape("weight_hh", weight_hh, (L, 3 * D, D), "[L, 3D, D]")
    check_shape("bias_ih", bias_ih, (L, 3 * D), "[L, 3D]")
    check_shape("bias_hh", bias_hh, (L, 3 * D), "[L, 3D]")
    check_same_device_dtype("x", x, weight_ih=weight_ih, weight_hh=weight_hh,
                            bias_ih=bias_ih, bias_hh=bias_hh)
    if (feedback_weight is None) != (feedback_bias is None):
        raise ValueError("feedback_weight/feedback_bias: give both or neither")
    if feedback_weight is not None:
        check_shape("feedback_weight", feedback_weight, (D, D), "[D, D]")
        check_shape("feedback_bias", feedback_bias, (D,), "[D]")
        check_same_device_dtype("x", x, feedback_weight=feedback_weight,
                                feedback_bias=feedback_bias)
    if state is not None:
        check_state_tuple(state, [(B, dilation ** l, D) for l in range(L)],
                          "[B, dilation**l, D]", x, "one per layer")


dilated_gru_backends = OpBackends("dilated_gru")
dilated_gru_backends.register("eager", dilated_gru_ref)


def dilated_gru(x, state, weight_ih, weight_hh, bias_ih, bias_hh, dilation: int = 2,
                feedback_weight=None, feedback_bias=None, backend: str = "auto"):
    """The whole dilated residual GRU stack over a sequence.

    Args:
        x: ``[B, T, D]`` float32/bfloat16/float16/float64.
        state: tuple of L tensors ``[B, dilation**l, D]`` (oldest first) or None.
        weight_ih, weight_hh: ``[L, 3D, D]``; bias_ih, bias_hh: ``[L, 3D]``.
        dilation: base of the per-layer dilation ``dilation ** l`` (>= 1).
        feedback_weight, feedback_bias: ``[D, D]``, ``[D]`` for the feedback variant.
        backend: ``'auto'``, ``'eager'``, ``'cpu'``, ``'triton'`` or ``'cuda'``.

    Returns:
        ``(y [B, T, D], new_state)``; new_state is not detached here.
    """
    validate_dilated_gru(x, state, weight_ih, weight_hh, bias_ih, bias_hh, dilation,
                         feedback_weight, feedback_bias)
    impl = dilated_gru_backends.resolve(backend, x.device)
    return impl(x, state, weight_ih, weight_hh, bias_ih, bias_hh, dilation,
                feedback_weight, feedback_bias)
