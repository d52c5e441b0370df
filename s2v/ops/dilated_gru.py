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
import os
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from ._validation import (check_float_tensor, check_positive_int, check_same_device_dtype,
                          check_shape, check_state_tuple)
from .._extension import build_info, extension_available, load_extension
from ._autocast import register_autocast_bf16
from ._double_backward import register_no_double_backward
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
    if weight_ih.shape[-1] != D:  # the input is the usual culprit: name it
        raise ValueError(f"x: expected [B, T, D] with D = {weight_ih.shape[-1]} (the layer's "
                         f"input_size), got {tuple(x.shape)}")
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


# ---------------------------------------------------------------------------
# Fused kernels (s2v._C, csrc/dilated_gru/): torch.library custom ops so that
# torch.compile traces through them (fake implementations give the shapes) and
# autograd reaches x, every parameter and the incoming state.
#
# The state travels as one tensor [B, S, D], S = sum_l dilation**l (the layers'
# states concatenated along dim 1); ``hist`` [B, R, D], R = sum_l (dilation**l +
# T), is every layer's incoming state followed by its T hidden states
# (csrc/dilated_gru/dilated_gru.h): all the backward needs besides x and y.
# ---------------------------------------------------------------------------

def _spans(L: int, dilation: int):
    return [dilation ** l for l in range(L)]


@torch.library.custom_op("s2v::dilated_gru_fwd", mutates_args=())
def _dilated_gru_fwd(x: torch.Tensor, state: torch.Tensor, weight_ih: torch.Tensor,
                     weight_hh: torch.Tensor, bias_ih: torch.Tensor, bias_hh: torch.Tensor,
                     dilation: int, feedback_weight: Optional[torch.Tensor],
                     feedback_bias: Optional[torch.Tensor], has_state: bool
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (y [B, T, D], hist [B, R, D], new_state [B, S, D]); contiguous inputs."""
    y, hist, new_state = load_extension().dilated_gru_forward(
        x, state, weight_ih, weight_hh, bias_ih, bias_hh, dilation, feedback_weight,
        feedback_bias, has_state)
    return y, hist, new_state


@_dilated_gru_fwd.register_fake
def _(x, state, weight_ih, weight_hh, bias_ih, bias_hh, dilation, feedback_weight,
      feedback_bias, has_state):
    B, T, D = x.shape
    spans = _spans(weight_ih.shape[0], dilation)
    rows = sum(spans) + len(spans) * T
    return x.new_empty(B, T, D), x.new_empty(B, rows, D), x.new_empty(B, sum(spans), D)


@torch.library.custom_op("s2v::dilated_gru_bwd", mutates_args=())
def _dilated_gru_bwd(dy: torch.Tensor, dnew_state: torch.Tensor, x: torch.Tensor,
                     y: torch.Tensor, hist: torch.Tensor, weight_ih: torch.Tensor,
                     weight_hh: torch.Tensor, bias_ih: torch.Tensor, bias_hh: torch.Tensor,
                     dilation: int, feedback_weight: Optional[torch.Tensor],
                     feedback_bias: Optional[torch.Tensor], has_state: bool
                     ) -> List[torch.Tensor]:
    """-> [dx, dstate, dweight_ih, dweight_hh, dbias_ih, dbias_hh, dfb_w, dfb_b] (the last
    two empty without feedback)."""
    return list(load_extension().dilated_gru_backward(
        dy, dnew_state, x, y, hist, weight_ih, weight_hh, bias_ih, bias_hh, dilation,
        feedback_weight, feedback_bias, has_state))


@_dilated_gru_bwd.register_fake
def _(dy, dnew_state, x, y, hist, weight_ih, weight_hh, bias_ih, bias_hh, dilation,
      feedback_weight, feedback_bias, has_state):
    fb = feedback_weight is not None
    return [torch.empty_like(x), torch.empty_like(dnew_state), torch.empty_like(weight_ih),
            torch.empty_like(weight_hh), torch.empty_like(bias_ih), torch.empty_like(bias_hh),
            torch.empty_like(feedback_weight) if fb else x.new_empty(0),
            torch.empty_like(feedback_bias) if fb else x.new_empty(0)]


def _fwd_setup_context(ctx, inputs, output):
    (x, _state, weight_ih, weight_hh, bias_ih, bias_hh, dilation, feedback_weight,
     feedback_bias, has_state) = inputs
    y, hist, _new_state = output
    ctx.dilation = dilation
    ctx.has_state = has_state
    ctx.feedback = feedback_weight is not None
    ctx.mark_non_differentiable(hist)
    ctx.set_materialize_grads(False)  # unused outputs' gradients arrive as None, not zeros
    saved = [x, y, hist, weight_ih, weight_hh, bias_ih, bias_hh]
    if ctx.feedback:
        saved += [feedback_weight, feedback_bias]
    ctx.save_for_backward(*saved)


def _fwd_backward(ctx, dy, _dhist, dnew_state):
    x, y, hist, weight_ih, weight_hh, bias_ih, bias_hh, *fb = ctx.saved_tensors
    fb_w, fb_b = fb if ctx.feedback else (None, None)
    B, T, D = x.shape
    S = sum(_spans(weight_ih.shape[0], ctx.dilation))
    # Outputs nobody used arrive as None; the kernel wants dense zeros.
    dy = torch.zeros_like(y) if dy is None else dy.contiguous()
    dnew_state = (x.new_zeros(B, S, D) if dnew_state is None else dnew_state.contiguous())
    g = _dilated_gru_bwd(dy, dnew_state, x, y, hist, weight_ih, weight_hh, bias_ih, bias_hh,
                         ctx.dilation, fb_w, fb_b, ctx.has_state)
    dx, dstate, dw_ih, dw_hh, db_ih, db_hh, dfb_w, dfb_b = g
    if not ctx.feedback:
        dfb_w = dfb_b = None
    return dx, dstate, dw_ih, dw_hh, db_ih, db_hh, None, dfb_w, dfb_b, None


_dilated_gru_fwd.register_autograd(_fwd_backward, setup_context=_fwd_setup_context)
register_autocast_bf16(_dilated_gru_fwd, _dilated_gru_bwd)
register_no_double_backward(_dilated_gru_bwd, "dilated_gru")


# S2V_DGRU_CUDA_KERNEL picks the CUDA kernel family (read by s2v._C at each call):
# unset or 'grouped' - G lanes per unit where the problem fits, else per-unit;
# 'per_unit' - one thread per unit, always.
CUDA_KERNEL_FAMILIES = ("grouped", "per_unit")


def _check_cuda_kernel_choice():
    value = os.environ.get("S2V_DGRU_CUDA_KERNEL")
    if value is not None and value not in CUDA_KERNEL_FAMILIES:
        raise ValueError(f"S2V_DGRU_CUDA_KERNEL={value!r}: expected one of "
                         f"{', '.join(CUDA_KERNEL_FAMILIES)} (or unset for 'grouped')")


def _dilated_gru_fused(x, state, weight_ih, weight_hh, bias_ih, bias_hh, dilation=2,
                       feedback_weight=None, feedback_bias=None):
    """The fused stack on x's device (backends 'cpu' and 'cuda'); same contract as
    :func:`dilated_gru_ref`. Non-contiguous inputs are copied to contiguous ones."""
    if x.is_cuda:
        _check_cuda_kernel_choice()
    B, T, D = x.shape
    spans = _spans(weight_ih.shape[0], dilation)
    if state is None:
        state_flat = x.new_zeros(B, sum(spans), D)
    else:
        state_flat = torch.cat([s.contiguous() for s in state], dim=1)
    fb_w = None if feedback_weight is None else feedback_weight.contiguous()
    fb_b = None if feedback_bias is None else feedback_bias.contiguous()
    y, _hist, new_state = _dilated_gru_fwd(
        x.contiguous(), state_flat, weight_ih.contiguous(), weight_hh.contiguous(),
        bias_ih.contiguous(), bias_hh.contiguous(), dilation, fb_w, fb_b, state is not None)
    # Under autocast the op ran in bfloat16 (s2v.ops._autocast); hand back x's dtype,
    # as the eager reference does there.
    y, new_state = y.to(x.dtype), new_state.to(x.dtype)
    return y, tuple(new_state.split(spans, dim=1))


_FUSED_DTYPES = {"cpu": (torch.float32, torch.bfloat16, torch.float64),
                 "cuda": (torch.float32, torch.bfloat16)}


def _cpu_unavailable():
    if not extension_available():
        return build_info()["error"]
    return None


def _cuda_unavailable():
    info = build_info()
    if not info["available"]:
        return info["error"]
    if not info["with_cuda"]:
        return ("s2v._C was built without its CUDA part; build s2v on a machine with a CUDA "
                "toolkit and a CUDA build of torch: `S2V_BUILD_CUDA=1 pip install "
                "--no-build-isolation -e .`")
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False: no usable CUDA GPU in this process"
    return None


dilated_gru_backends = OpBackends("dilated_gru")
dilated_gru_backends.register("eager", dilated_gru_ref)
dilated_gru_backends.register("cpu", _dilated_gru_fused, _cpu_unavailable)
dilated_gru_backends.register("cuda", _dilated_gru_fused, _cuda_unavailable)


def dilated_gru(x, state, weight_ih, weight_hh, bias_ih, bias_hh, dilation: int = 2,
                feedback_weight=None, feedback_bias=None, backend: str = "auto"):
    """The whole dilated residual GRU stack over a sequence.

    Args:
        x: ``[B, T, D]`` float32/bfloat16/float16/float64.
        state: tuple of L tensors ``[B, dilation**l, D]`` (oldest first) or None.
        weight_ih, weight_hh: ``[L, 3D, D]``; bias_ih, bias_hh: ``[L, 3D]``.
        dilation: base of the per-layer dilation ``dilation ** l`` (>= 1).
        feedback_weight, feedback_bias: ``[D, D]``, ``[D]`` for the feedback variant.
        backend: ``'auto'``, ``'eager'``, ``'cpu'``, ``'triton'`` or ``'cuda'``. The fused
            ``'cpu'`` kernel (s2v._C) takes float32, bfloat16 (float32 arithmetic) and
            float64; ``'cuda'`` float32 and bfloat16. ``'auto'`` picks the fused kernel
            of x's device when it is built and takes x's dtype, else ``'eager'``.

    Returns:
        ``(y [B, T, D], new_state)``; new_state is not detached here. Gradients flow
        to x, every weight and bias, and the tensors of ``state``.
    """
    validate_dilated_gru(x, state, weight_ih, weight_hh, bias_ih, bias_hh, dilation,
                         feedback_weight, feedback_bias)
    impl = dilated_gru_backends.resolve(backend, x.device)
    if impl is _dilated_gru_fused and x.dtype not in _FUSED_DTYPES.get(x.device.type, ()):
        if backend != "auto":
            have = ", ".join(str(t).replace("torch.", "") for t in _FUSED_DTYPES[x.device.type])
            raise TypeError(f"x: backend {backend!r} of dilated_gru takes {have} on "
                            f"{x.device.type}, got {x.dtype}; use backend='eager'")
        impl = dilated_gru_ref
    return impl(x, state, weight_ih, weight_hh, bias_ih, bias_hh, dilation,
                feedback_weight, feedback_bias)
