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
from ._autocast import register_autocast_bf16
from ._double_backward import register_no_double_backward
from .backend import OpBackends
from .dirconv_gru import (_ext, _triton_module, cpu_kernels_unavailable, dirconv_gru_ref,
                          validate_dirconv_gru)

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


# ---------------------------------------------------------------------------
# Fused kernels behind the custom ops s2v::video_predictor_fwd / _bwd.
#
# FUNCTIONAL CONTRACT (the same for the C++ CPU kernel, csrc/video_predictor/,
# and the Triton GPU kernels, kernels/video_predictor.py):
#   forward(x [B,T,C,H,W], xh [B,T,C,H,W], h0 [F,B,Ch,H,W], w_sq [3,Ch,C+Ch,k,k],
#           b_sq [3,Ch], w_h [3,Ch,C+Ch,taps], b_h [3,Ch], w_w [3,Ch,C+Ch,taps],
#           b_w [3,Ch], blend_w [C+1,5Ch], blend_b [C+1], save_gates)
#     -> (y [B,T,C,H,W], h_seq [F,B,T,Ch,H,W], saved)
#   Directional: F = 5, Ch = C, flows in FLOWS order. Basic: F = 1, Ch = C+1,
#   w_h, b_h, w_w, b_w, blend_w, blend_b empty (numel 0), y the blend of
#   h_seq[0] itself. The new state is h_seq[:, :, -1].
#   backward(dy, dh_seq [F,B,T,Ch,H,W], x, xh, h0, h_seq, weights..., saved)
#     -> (dx, dxh, dh0, dw_sq, db_sq, dw_h, db_h, dw_w, db_w, dblend_w, dblend_b)
#   saved: with save_gates, the CPU kernel (float32/float64) returns its gates
#   [F,T,3,B·H·W·Ch] for the backward, which then skips recomputing them;
#   otherwise (and always on the GPU) it is empty and the gates are recomputed.
#   Inputs contiguous, one dtype (float32, bfloat16 with fp32 accumulation,
#   float16; the CPU kernel also float64), one device.
# dh_seq is the gradient of every returned state (both kernels use all of it;
# the Triton launcher also accepts the last frame's gradient alone), or empty
# (numel 0) when no gradient reached the states.
# ---------------------------------------------------------------------------


@torch.library.custom_op("s2v::video_predictor_fwd", mutates_args=())
def video_predictor_fwd(x: torch.Tensor, xh: torch.Tensor, h0: torch.Tensor,
                        w_sq: torch.Tensor, b_sq: torch.Tensor, w_h: torch.Tensor,
                        b_h: torch.Tensor, w_w: torch.Tensor, b_w: torch.Tensor,
                        blend_w: torch.Tensor, blend_b: torch.Tensor, save_gates: bool
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The layer's forward per the contract above -> ``(y, h_seq, saved)``; ``saved`` is
    empty unless the kernel keeps its gates for the backward (see _saves_gates)."""
    raise NotImplementedError(
        f"s2v::video_predictor_fwd has no kernel for {x.device.type} tensors")


def _saves_gates(x: torch.Tensor, save_gates: bool) -> bool:
    """Whether the CPU kernel returns its gates: asked for, and float32/float64 (with
    16-bit inputs the backward recomputes them from widened states instead)."""
    return save_gates and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


@video_predictor_fwd.register_kernel("cpu")
def _(x, xh, h0, w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w, blend_b, save_gates):
    return tuple(_ext().video_predictor_forward(x, xh, h0, w_sq, b_sq, w_h, b_h, w_w, b_w,
                                                blend_w, blend_b,
                                                _saves_gates(x, save_gates)))


@video_predictor_fwd.register_kernel("cuda")
def _(x, xh, h0, w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w, blend_b, save_gates):
    # ---- CUDA device kernel hook: Triton, s2v.kernels.video_predictor ----
    # (its backward recomputes the gates: nothing saved)
    y, h_seq = _triton_module().video_predictor_fwd(x, xh, h0, w_sq, b_sq, w_h, b_h, w_w,
                                                    b_w, blend_w, blend_b)
    return y, h_seq, x.new_empty(0)


@video_predictor_fwd.register_fake
def _(x, xh, h0, w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w, blend_b, save_gates):
    B, T, C, H, W = x.shape
    flows = len(FLOWS) if w_h.numel() else 1
    Ch = w_sq.shape[1]
    saved = (x.new_empty(flows, T, 3, B * H * W * Ch) if _saves_gates(x, save_gates)
             else x.new_empty(0))
    return x.new_empty(B, T, C, H, W), x.new_empty(flows, B, T, Ch, H, W), saved


@torch.library.custom_op("s2v::video_predictor_bwd", mutates_args=())
def video_predictor_bwd(dy: torch.Tensor, dh_seq: torch.Tensor, x: torch.Tensor,
                        xh: torch.Tensor, h0: torch.Tensor, h_seq: torch.Tensor,
                        w_sq: torch.Tensor, b_sq: torch.Tensor, w_h: torch.Tensor,
                        b_h: torch.Tensor, w_w: torch.Tensor, b_w: torch.Tensor,
                        blend_w: torch.Tensor, blend_b: torch.Tensor, saved: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                   torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                   torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`video_predictor_fwd` given ``dy`` and ``dh_seq [F,B,T,Ch,H,W]``
    -> ``(dx, dxh, dh0, dw_sq, db_sq, dw_h, db_h, dw_w, db_w, dblend_w, dblend_b)``."""
    raise NotImplementedError(
        f"s2v::video_predictor_bwd has no kernel for {x.device.type} tensors")


@video_predictor_bwd.register_kernel("cpu")
def _(dy, dh_seq, x, xh, h0, h_seq, w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w, blend_b, saved):
    return tuple(_ext().video_predictor_backward(dy, x.new_empty(0), dh_seq, x, xh, h0, h_seq,
                                                 w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w,
                                                 blend_b, saved))


@video_predictor_bwd.register_kernel("cuda")
def _(dy, dh_seq, x, xh, h0, h_seq, w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w, blend_b, saved):
    # ---- CUDA device kernel hook: Triton, s2v.kernels.video_predictor ----
    # The full per-frame gradient, so losses on intermediate states backpropagate too
    # (empty: no gradient reached the states; the Triton launcher wants zeros then).
    if dh_seq.numel() == 0:
        dh_seq = torch.zeros_like(h_seq)
    return tuple(_triton_module().video_predictor_bwd(dy, dh_seq.contiguous(), x, xh, h0,
                                                      h_seq, w_sq, b_sq, w_h, b_h, w_w, b_w,
                                                      blend_w, blend_b))


@video_predictor_bwd.register_fake
def _(dy, dh_seq, x, xh, h0, h_seq, w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w, blend_b, saved):
    return tuple(torch.empty_like(t) for t in
                 (x, xh, h0, w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w, blend_b))


def _vp_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:-1], output[1], output[2])
    ctx.mark_non_differentiable(output[2])
    # Outputs that received no gradient arrive as None instead of zero tensors: the
    # saved gates and h_seq would otherwise cost a zero fill of their whole size
    # (~170 MB at C 32, 64², T 16) and h_seq's a strided add in the kernel, every backward.
    ctx.set_materialize_grads(False)


def _vp_backward(ctx, dy, dh_seq, _dsaved):
    *inputs, h_seq, saved = ctx.saved_tensors
    x, xh, h0 = inputs[:3]
    dy = torch.zeros_like(x) if dy is None else dy.contiguous()
    # No gradient reached the states (the usual case: the carried state is detached):
    # an empty dh_seq, which the CPU kernel skips instead of adding a zero-filled
    # [F, B, T, Ch, H, W] tensor (a full strided pass over h_seq's size).
    dh_seq = x.new_empty(0) if dh_seq is None else dh_seq.contiguous()
    grads = torch.ops.s2v.video_predictor_bwd(dy, dh_seq, x, xh, h0, h_seq, *inputs[3:],
                                              saved)
    return (*(None if inp.numel() == 0 else g for inp, g in zip(inputs, grads)), None)


video_predictor_fwd.register_autograd(_vp_backward, setup_context=_vp_setup_context)
register_autocast_bf16(video_predictor_fwd, video_predictor_bwd)
register_no_double_backward(video_predictor_bwd, "video_predictor")


# Above this the CPU backward recomputes the gates rather than keep them (bounded
# extra memory for long or large sequences).
SAVED_GATES_MAX_BYTES = 2 << 30


def video_predictor_fused(x, xh, state, weights, biases, blend_weight, blend_bias):
    """The 'cpu'/'triton' implementation (same signature as :func:`video_predictor_ref`):
    packs the arguments for the custom op, which runs the kernel of x's device."""
    B, T, C, H, W = x.shape
    directional = len(weights) == 3
    flows = len(FLOWS) if directional else 1
    C_hid = weights[0].shape[1]
    if state is None:
        h0 = x.new_zeros(flows, B, C_hid, H, W)
    else:
        h0 = torch.stack(tuple(state)).contiguous()  # a channels_last state stacks as such
    empty = x.new_empty(0)
    if directional:
        rest = (weights[1], biases[1], weights[2], biases[2], blend_weight, blend_bias)
    else:
        rest = (empty,) * 6
    # Keeping the gates (3 values per hidden unit, pixel and frame; h_seq holds 1)
    # spares the backward a third of its GEMM work; only when a backward can follow
    # and they fit in SAVED_GATES_MAX_BYTES.
    saved_bytes = 3 * flows * B * T * C_hid * H * W * x.element_size()
    save = (torch.is_grad_enabled() and saved_bytes <= SAVED_GATES_MAX_BYTES
            and any(t.requires_grad for t in (x, xh, h0, *weights, *biases)))
    y, h_seq, _ = torch.ops.s2v.video_predictor_fwd(
        x.contiguous(), xh.contiguous(), h0, weights[0].contiguous(), biases[0].contiguous(),
        *(t.contiguous() for t in rest), save)
    # Under autocast the op ran in bfloat16 (s2v.ops._autocast); hand back x's dtype.
    y, h_seq = y.to(x.dtype), h_seq.to(x.dtype)
    # Copies, not views: h_seq is saved for the backward, so a caller editing a
    # returned state in place (resetting finished sequences) would break it.
    return y, tuple(h_seq[f, :, -1].clone() for f in range(flows))


@torch.compiler.assume_constant_result
def triton_unavailable() -> str | None:
    """None when the Triton kernels can be used, else why not and how to get them."""
    from ..kernels._triton_support import triton_available
    if not triton_available():
        return ("Triton is not installed; install it (`pip install triton`, Linux with an "
                "NVIDIA GPU) or use backend='auto'")
    try:
        _triton_module()
    except ImportError as exc:
        return f"s2v.kernels.video_predictor cannot be imported ({exc}); use backend='auto'"
    return None


video_predictor_backends = OpBackends("video_predictor")
video_predictor_backends.register("eager", video_predictor_ref)
video_predictor_backends.register("cpu", video_predictor_fused, cpu_kernels_unavailable)
video_predictor_backends.register("triton", video_predictor_fused, triton_unavailable)


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
