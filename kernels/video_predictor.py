"""Triton kernels for the video prediction layer (SPEC §5): five ConvGRU flows and the blend.

Functional contract (the custom op in :mod:`s2v.ops.video_predictor` calls these
for CUDA tensors; under ``TRITON_INTERPRET=1`` CPU tensors work too):

* :func:`video_predictor_fwd` ``(x, xh, h0, w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w,
  blend_b) -> (y, h_seq)``
* :func:`video_predictor_bwd` ``(dy, dh_last, x, xh, h0, h_seq, <the same weights>)
  -> (dx, dxh, dh0, dw_sq, db_sq, dw_h, db_h, dw_w, db_w, dblend_w, dblend_b)``

and for one cell (``s2v.ops.dirconv_gru``, the same kernels with one flow):

* :func:`dirconv_gru_fwd` ``(x, h0, weight, bias, orientation, direction) -> h_seq``
* :func:`dirconv_gru_bwd` ``(dh_seq, x, h0, h_seq, weight, bias, orientation,
  direction) -> (dx, dh0, dweight, dbias)``

Shapes of the layer (``F`` flows: 5 for the directional layer, 1 for ``basic``;
``Ch`` hidden channels: ``C`` for the directional layer, ``C + 1`` for ``basic``):

=================  ===============================  ===============================
x, xh, y, dy       ``[B, T, C, H, W]``
h0, dh_last, dh0   ``[F, B, Ch, H, W]``             state before the first frame
                                                    (dh_last may also be per frame,
                                                    shaped like h_seq)
h_seq              ``[F, B, T, Ch, H, W]``          every frame's state; the new
                                                    state is ``h_seq[:, :, -1]``
w_sq, b_sq         ``[3, Ch, C + Ch, k, k]``, ``[3, Ch]``
w_h, w_w           ``[3, Ch, C + Ch, ((k+1)/2)²]``  empty (numel 0) for ``basic``
b_h, b_w           ``[3, Ch]``                      empty for ``basic``
blend_w, blend_b   ``[C + 1, 5·Ch]``, ``[C + 1]``   empty for ``basic``
=================  ===============================  ===============================

Gates are stacked reset, update, output; weight layouts as in
:mod:`s2v.ops.dirconv_gru`. All tensors contiguous, one dtype (float32,
bfloat16 or float16), one device. Gradients come back in that dtype; the kernels
accumulate in float32 and keep every intermediate gradient in float32.

Decomposition. Each gate conv is split into an input half (reads only x_t, so it
is one batched conv over all frames before the scan, done with torch; flows 1–2
and 3–4 share weights, so the 1-D convs are computed once and shifted ±) and a
hidden half (the strict sequence). The hidden half of all flows runs as one
launch per phase and step, an implicit GEMM over a tap table: every tap is a
source offset (oy, ox) with, per axis, zero padding or replicate clamping, so
the square k×k cell and both directional cells are the same loop. ``r ⊙ h``
needs neighbouring pixels, hence two phases per step (phase 1: r, u and
``q = r ⊙ h``; phase 2: the candidate and the state update). Backward
recomputes r, u, q, c for all frames at once (every h_t is saved, so nothing is
sequential there), runs the reverse scan with the transposed tap loop, and does
the weight and input gradients as batched convolutions afterwards.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os

import torch

from ._triton_support import fix_interpreter_scalar_index
from .padded_plane_conv import Planes, conv2d, conv2d_input_add, conv2d_weight

__all__ = ["video_predictor_fwd", "video_predictor_bwd", "dirconv_gru_fwd", "dirconv_gru_bwd",
           "kernel_variants", "kernel_signatures", "kernel_resource_usage"]

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

# Tile bounds, from the offline sm_90 compile (ptxas -v) at Ch = 32: with BLOCK_P = 64,
# BLOCK_N <= 32, BLOCK_K = 16, 4 warps and no software pipelining, every kernel
# variant fits in registers without spills in fp32 (whose IEEE dot runs on FMA
# units and holds its operand tiles in registers) and bf16; BLOCK_N = 64 or
# BLOCK_K = 32 spill in fp32.
_MAX_BLOCK_N = 32
_MAX_BLOCK_K = 16
_CUDA_BLOCK_P = 64
# The interpreter runs every program in numpy: fewer, larger pixel tiles run faster.
_CPU_BLOCK_P = 32
# FP fusion (FMA) explicitly: triton 3.9 warns that its default will change.
_LAUNCH_OPTIONS = dict(num_warps=4, num_stages=1, enable_fp_fusion=True)


def _interpreting() -> bool:
    """TRITON_INTERPRET set to anything but empty or 0 (triton also reads true/yes/on)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() not in ("", "0", "false",
                                                                           "no", "off")


@functools.lru_cache(maxsize=None)
def _kernels():
    """The Triton kernels, imported on first use so this module imports without triton."""
    from . import _video_predictor_triton as k
    if _interpreting():
        fix_interpreter_scalar_index()
    return {"fwd": k._video_predictor_fwd_kernel, "bwd": k._video_predictor_bwd_kernel}


# --------------------------------------------------------------------------- validation

def _check(name, t, shape=None, dtype=None, device=None):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} like x, got {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"{name}: expected device {device} like x, got {t.device}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{name}: expected a contiguous tensor (call .contiguous())")


def _check_sequence(x):
    """``x [B, T, C, H, W]`` in a supported dtype with every size >= 1; its shape."""
    _check("x", x)
    if x.dtype not in _DTYPES:
        raise TypeError(f"x: expected float32, bfloat16 or float16, got {x.dtype}")
    if x.dim() != 5 or min(x.shape) < 1:
        raise ValueError(f"x: expected [B, T, C, H, W] with every size >= 1, "
                         f"got {tuple(x.shape)}")
    return x.shape


def _validate(x, xh, h0, w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w, blend_b):
    """Check everything; return (directional, F, Ch, k, n_taps)."""
    B, T, C, H, W = _check_sequence(x)
    kw = dict(dtype=x.dtype, device=x.device)
    _check("xh", xh, x.shape, **kw)
    _check("w_sq", w_sq, **kw)
    if w_sq.dim() != 5 or w_sq.shape[0] != 3 or w_sq.shape[-1] != w_sq.shape[-2] \
            or w_sq.shape[-1] % 2 == 0:
        raise ValueError(f"w_sq: expected [3, Ch, C + Ch, k, k] with odd k, "
                         f"got {tuple(w_sq.shape)}")
    Ch, k = w_sq.shape[1], w_sq.shape[-1]
    _check("w_sq", w_sq, (3, Ch, C + Ch, k, k))
    _check("b_sq", b_sq, (3, Ch), **kw)
    n_taps = ((k + 1) // 2) ** 2
    directional = w_h.numel() > 0 if isinstance(w_h, torch.Tensor) else True
    if directional:
        if Ch != C:
            raise ValueError(f"w_sq: the directional layer needs Ch = C = {C}, got {Ch}")
        for name, w, b in (("w_h", w_h, b_h), ("w_w", w_w, b_w)):
            _check(name, w, (3, Ch, C + Ch, n_taps), **kw)
            _check("b" + name[1:], b, (3, Ch), **kw)
        _check("blend_w", blend_w, (C + 1, 5 * Ch), **kw)
        _check("blend_b", blend_b, (C + 1,), **kw)
        n_flows = 5
    else:
        if Ch != C + 1:
            raise ValueError(f"w_sq: the basic variant needs Ch = C + 1 = {C + 1}, got {Ch}")
        for name, t in (("w_h", w_h), ("b_h", b_h), ("w_w", w_w), ("b_w", b_w),
                        ("blend_w", blend_w), ("blend_b", blend_b)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
            if t.numel() != 0:
                raise ValueError(f"{name}: the basic variant (w_h empty) expects an empty "
                                 f"tensor, got shape {tuple(t.shape)}")
        n_flows = 1
    _check("h0", h0, (n_flows, B, Ch, H, W), **kw)
    return directional, n_flows, Ch, k, n_taps


def _check_runnable(x):
    """Raise unless the kernels can run on x's device (checked after the shapes)."""
    if x.device.type != "cuda" and not _interpreting():
        raise ValueError(f"x: the Triton kernels need CUDA tensors, got device {x.device} "
                         "(CPU tensors only run under TRITON_INTERPRET=1)")


# --------------------------------------------------------------------------- torch parts

# (cell index, orientation, direction) of each flow; the order is the state order.
_LAYER_FLOWS = ((0, None, 1), (1, "h", 1), (1, "h", -1), (2, "w", 1), (2, "w", -1))
_BASIC_FLOWS = ((0, None, 1),)


def _shift_index(n, shift, device):
    """Rows (or columns) ``clamp(i - shift)``: the replicate shift of SPEC §5."""
    return (torch.arange(n, device=device) - shift).clamp(0, n - 1)


def _sub_kernel(w, s, C_lo, C_hi, axis):
    """Taps of sub-kernel s, channels [C_lo, C_hi), as a 2-D conv weight along ``axis``."""
    first = s * s  # 1 + 3 + ... + (2s - 1)
    taps = w[:, :, C_lo:C_hi, first:first + 2 * s + 1].flatten(0, 1)
    return taps.unsqueeze(2) if axis == 3 else taps.unsqueeze(3)


def _input_gates(x, weights, biases, flows, k):
    """Input half of every flow's gates, bias included, and the planes it lives on:
    ``(gx [F, 3·Ch, Kc] float32, planes, xb)``, each flow's rows an output of
    ``planes`` (gate-major rows, see :mod:`s2v.kernels.padded_plane_conv`), which
    the kernels read in place; xb is x packed on the planes ``[C, L]``.

    Flows of one directional cell share the 1-D convs A_s (s > 0); each applies its
    own replicate shift. The convolutions run as float32 GEMMs on padded planes,
    not cuDNN: with TF32 off cuDNN may still pick Winograd or FFT algorithms, whose
    float32 error is far above the products' (on an H100 a 5×5 cell's weight
    gradient came back 1.1e-3 off).
    """
    B, T, C, H, W = x.shape
    Ch = weights[0].shape[1]
    P = k // 2
    planes = Planes(B * T, H, W, P, x.device)
    _check_plane_offsets(planes, Ch)
    xb = planes.pack(x.flatten(0, 1))
    gx = torch.empty(len(flows), 3 * Ch, planes.Kc, dtype=torch.float32, device=x.device)
    for cell in sorted({c for c, _, _ in flows}):
        mine = [(f, o, d) for f, (c, o, d) in enumerate(flows) if c == cell]
        w, b = weights[cell].float(), biases[cell].float()
        orientation = mine[0][1]
        if orientation is None:
            for f, _, _ in mine:
                conv2d(planes, xb, w[:, :, :C].flatten(0, 1), b.flatten(), (P, P), out=gx[f])
            continue
        axis = 2 if orientation == "h" else 3
        for s in range((k + 1) // 2):
            pad = (0, s) if axis == 2 else (s, 0)
            ws = _sub_kernel(w, s, 0, C, 3 if axis == 2 else 2)
            if s == 0:
                # Not shifted; carries the bias. Computed per flow straight into its
                # rows: one tap, cheaper than copying a shared result.
                for f, _, _ in mine:
                    conv2d(planes, xb, ws, b.flatten(), pad, out=gx[f])
                continue
            a = planes.output_interior(conv2d(planes, xb, ws, None, pad))
            for f, _, d in mine:
                _add_shifted(planes.output_interior(gx[f]), a, d * s, axis)
    return gx, planes, xb


# The kernels address one gate's Ch rows of a plane buffer with 32-bit offsets.
_MAX_PLANE_OFFSET = 2 ** 31


def _check_plane_offsets(planes, Ch):
    """Refuse, before anything is allocated or launched, a problem whose gate rows
    the kernels' 32-bit in-tile offsets cannot address."""
    if Ch * planes.L >= _MAX_PLANE_OFFSET:
        raise ValueError(
            f"x: {planes.N} frames (B·T) of {planes.H}×{planes.W} with {Ch} hidden channels "
            f"exceed the Triton kernels' 32-bit offsets (Ch × the {planes.L} elements of a "
            f"padded plane row, about Ch · B·T · (H + k - 1)(W + k - 1), must stay below "
            f"2^31); run the layer on fewer frames or batch items per call")


def _add_shifted(out, a, shift, axis):
    """``out += a.index_select(axis, clamp(i - shift))`` (the replicate shift of SPEC §5)
    as in-place adds of slices: no shifted copy of ``a``."""
    n = a.shape[axis]
    if shift == 0:
        out += a
        return
    m = min(abs(shift), n)  # rows that clamp to the edge row
    if shift > 0:
        if n > shift:
            out.narrow(axis, shift, n - shift).add_(a.narrow(axis, 0, n - shift))
        out.narrow(axis, 0, m).add_(a.narrow(axis, 0, 1))
    else:
        if n > -shift:
            out.narrow(axis, 0, n + shift).add_(a.narrow(axis, -shift, n + shift))
        out.narrow(axis, n - m, m).add_(a.narrow(axis, n - 1, 1))


@functools.lru_cache(maxsize=32)
def _tap_table(k, specs, device):
    """:func:`_tap_table_cpu` on ``device``, copied there once."""
    return tuple(t.to(device) for t in _tap_table_cpu(k, specs))


@functools.lru_cache(maxsize=32)
def _tap_table_cpu(k, specs):
    """``[F, k·k, 4]`` (oy, ox, clamp_y, clamp_x) per tap in the weight layout's tap
    order, and ``[F]`` taps used, for flows ``specs = ((orientation, direction), ...)``."""
    table = torch.zeros(len(specs), k * k, 4, dtype=torch.int32)
    ntaps = torch.zeros(len(specs), dtype=torch.int32)
    r = k // 2
    for f, (orientation, d) in enumerate(specs):
        rows = []
        if orientation is None:
            rows = [[i // k - r, i % k - r, 0, 0] for i in range(k * k)]
        else:
            for s in range(r + 1):
                for j in range(-s, s + 1):
                    # 'h': source (clamp(y - d·s), x + j); 'w': (y + j, clamp(x - d·s)).
                    rows.append([-d * s, j, 1, 0] if orientation == "h" else [j, -d * s, 0, 1])
        table[f, :len(rows)] = torch.tensor(rows, dtype=torch.int32)
        ntaps[f] = len(rows)
    return table, ntaps


def _pack_hidden(weights, flows, transpose):
    """Hidden half of the gate weights per flow and tap: ``[F, 3, k·k, Ch, Ch]``.

    ``transpose=False`` gives ``[.., in, out]`` (forward), ``True`` ``[.., out, in]``
    (backward), so the tap loop's weight tile is contiguous along its N axis.
    """
    w0 = weights[flows[0][0]]
    Ch = w0.shape[1]
    C = w0.shape[2] - Ch
    k = _kernel_size(weights, flows)
    pack = torch.zeros(len(flows), 3, k * k, Ch, Ch, dtype=w0.dtype, device=w0.device)
    for f, (cell, _, _) in enumerate(flows):
        # [3, out, in, taps] -> [3, taps, out, in]
        w = weights[cell][:, :, C:].flatten(3).permute(0, 3, 1, 2)
        pack[f, :, :w.shape[1]] = w
    if not transpose:
        pack = pack.transpose(-1, -2)
    return pack.contiguous()


def _kernel_size(weights, flows):
    cell, orientation, _ = flows[0]
    w = weights[cell]
    return int(w.shape[-1]) if orientation is None else 2 * math.isqrt(int(w.shape[-1])) - 1


def _blocks(Ch, device):
    """Tile sizes of the tap loop (constexprs of both kernels) for hidden width Ch."""
    def pow2(n, hi):
        return max(16, min(hi, 1 << (max(n, 1) - 1).bit_length()))
    return dict(BLOCK_P=_CUDA_BLOCK_P if device.type == "cuda" else _CPU_BLOCK_P,
                BLOCK_N=pow2(Ch, _MAX_BLOCK_N), BLOCK_K=pow2(Ch, _MAX_BLOCK_K))


def _blend_agg(h_seq, blend_w, blend_b, directional):
    """The blend's pre-activations ``agg [B, T, C+1, HW]`` float32 (prediction rows,
    then the mask row) and the stacked hidden states ``[B, T, F·Ch, HW]`` they came
    from (None for ``basic``, whose single flow is agg itself)."""
    Fn, B, T, Ch, H, W = h_seq.shape
    if directional:
        stacked = h_seq.float().permute(1, 2, 0, 3, 4, 5).reshape(B, T, Fn * Ch, H * W)
        agg = torch.matmul(blend_w.float(), stacked) + blend_b.float().view(1, 1, -1, 1)
    else:
        stacked = None
        agg = h_seq[0].float().reshape(B, T, Ch, H * W)
    return agg, stacked


def _adjoint_shift(g, shift, axis, out=None):
    """Adjoint of ``index_select(axis, clamp(i - shift))``: rows clamped together add up.

    Slice copies and one sum for the clamped rows, instead of an index_add_ over every
    row (same values up to the order of the additions into the edge row). ``out``:
    a zero-filled tensor shaped like g to write into (default: a new one)."""
    if out is None:
        if shift == 0:
            return g
        out = torch.zeros_like(g)
    elif shift == 0:
        return out.copy_(g)
    n = g.shape[axis]
    m = min(abs(shift), n)  # source rows that clamp onto the edge row, besides its own
    if shift > 0:
        # out[j] = g[j + shift] for j < n - shift; out[0] also gathers g[0 .. shift).
        if n > shift:
            out.narrow(axis, 0, n - shift).copy_(g.narrow(axis, shift, n - shift))
        out.narrow(axis, 0, 1).add_(g.narrow(axis, 0, m).sum(axis, keepdim=True))
    else:
        # out[j] = g[j + shift] for j >= -shift; out[n-1] also gathers g[n + shift .. n).
        if n > -shift:
            out.narrow(axis, -shift, n + shift).copy_(g.narrow(axis, 0, n + shift))
        out.narrow(axis, n - 1, 1).add_(g.narrow(axis, n - m, m).sum(axis, keepdim=True))
    return out


def _conv_grads(planes, flows, w, k, orientation, dx):
    """Input and weight gradients of one cell from the gate gradients of its flows.

    flows: list of ``(G, direction, src_ru, src_o)``, G ``[3·Ch, L]`` float32, packed
    on ``planes`` (the gradients of the gate pre-activations); src_ru = ``[x, h_prev]`` and src_o =
    ``[x, r ⊙ h_prev]``, packed ``[C + Ch, L]`` on ``planes`` (what the r/u and
    candidate convs read). Adds the input gradient into ``dx [C, Kc]`` (an output
    of ``planes``); returns dw float32 shaped like ``w``.
    """
    Ch = w.shape[1]
    C = w.shape[2] - Ch
    wf = w.float()
    dw = torch.zeros_like(wf)
    axis = 2 if orientation == "h" else 3
    subs = [None] if orientation is None else list(range((k + 1) // 2))
    for s in subs:
        if s is None:
            ws, pad = wf.flatten(0, 1), (k // 2, k // 2)
        else:
            ws = _sub_kernel(wf, s, 0, C + Ch, 3 if axis == 2 else 2)
            pad = (0, s) if axis == 2 else (s, 0)
        kernel = tuple(ws.shape[2:])
        g_sum = None
        for G, d, src_ru, src_o in flows:
            # A directional flow shifts A_s by d·s rows (cols); fold that shift back
            # into a new buffer (zero outside the images).
            g = G
            if s:
                g = planes.zeros(3 * Ch)
                _adjoint_shift(planes.interior(G), d * s, axis, out=planes.interior(g))
            d_ru = conv2d_weight(planes, g[:2 * Ch], src_ru, kernel, pad)
            d_o = conv2d_weight(planes, g[2 * Ch:], src_o, kernel, pad)
            d = torch.cat([d_ru, d_o], 0).view(3, Ch, C + Ch, *kernel)
            if s is None:
                dw += d
            else:
                dw[..., s * s:s * s + 2 * s + 1] += d.flatten(3)
            g_sum = g if g_sum is None else g_sum + g
        # The flows of a cell share the input half's weights: one transposed conv.
        conv2d_input_add(planes, dx, g_sum, ws[:, :C], pad)
    return dw


# --------------------------------------------------------------------------- scans

def _cdiv(a, b):
    return -(-a // b)


def _device_guard(device):
    """Triton launches on the current CUDA device: make it x's."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _launch_kw(Ch, device):
    return dict(_blocks(Ch, device), **_LAUNCH_OPTIONS)


def _dot_fp32(x):
    # fp32 inputs need IEEE products; the interpreter's bf16 dot is wrong (see _mma).
    return x.dtype == torch.float32 or x.device.type != "cuda"


def _scan_fwd(x, h0, weights, biases, flows):
    """All flows over all frames: ``h_seq [F, B, T, Ch, H, W]`` in x's dtype.

    ``h0 [F, B, Ch, H, W]``; ``flows`` = ((cell, orientation, direction), ...) index
    ``weights``/``biases`` (layouts of :mod:`s2v.ops.dirconv_gru`).
    """
    kern = _kernels()["fwd"]
    B, T, C, H, W = x.shape
    n_flows, Ch, dev = len(flows), weights[0].shape[1], x.device
    k = _kernel_size(weights, flows)
    gx, planes, _ = _input_gates(x, weights, biases, flows, k)
    g_layout = planes.kernel_layout(gx, is_input=False)
    pack = _pack_hidden(weights, flows, transpose=False)
    table, ntaps = _tap_table(k, tuple((o, d) for _, o, d in flows), dev)
    h_seq = torch.empty(n_flows, B, T, Ch, H, W, dtype=x.dtype, device=dev)
    q = torch.empty(n_flows, B, 1, Ch, H, W, dtype=x.dtype, device=dev)
    u = torch.empty(n_flows, B, 1, Ch, H, W, dtype=torch.float32, device=dev)
    meta = _launch_kw(Ch, dev)
    grid = (n_flows * B * _cdiv(H * W, meta["BLOCK_P"]), _cdiv(Ch, meta["BLOCK_N"]))
    with _device_guard(dev):
        for t in range(T):
            for phase in (1, 2):
                # r and c are written only when ALL_T: u stands in for those pointers.
                kern[grid](gx, h0, h_seq, q, u, u, u, pack, table, ntaps,
                           t, B, T, Ch, H, W, k * k, *g_layout,
                           PHASE=phase, ALL_T=False, DOT_FP32=_dot_fp32(x), **meta)
    return h_seq


def _scan_bwd(dhb, dh_last, x, h0, h_seq, weights, biases, flows):
    """Reverse scan and the batched input/weight gradients.

    ``dhb [F, B, T, Ch, H·W]`` float32: gradient reaching each h_t from outside the
    recurrence (the blend, or the caller for a single cell); ``dh_last [F, B, Ch, H,
    W]`` or None: extra gradient on the last state. Returns float32 ``dx [B, T, C,
    H, W]``, ``dh0 [F, B, Ch, H, W]``, and per cell index ``dw``, ``db``.
    """
    kerns = _kernels()
    B, T, C, H, W = x.shape
    n_flows, Ch, dev = len(flows), weights[0].shape[1], x.device
    k = _kernel_size(weights, flows)
    kw = dict(dtype=x.dtype, device=dev)
    f32 = dict(dtype=torch.float32, device=dev)
    meta = _launch_kw(Ch, dev)
    n_pt = _cdiv(H * W, meta["BLOCK_P"])
    n_nt = _cdiv(Ch, meta["BLOCK_N"])
    table, ntaps = _tap_table(k, tuple((o, d) for _, o, d in flows), dev)
    dot_fp32 = _dot_fp32(x)

    # Recompute r, u, q = r ⊙ h_{t-1} and c for every frame (all h_t are saved).
    gx, planes, xb = _input_gates(x, weights, biases, flows, k)
    pack_f = _pack_hidden(weights, flows, transpose=False)
    q = torch.empty(n_flows, B, T, Ch, H, W, **kw)
    r, u, c = (torch.empty(n_flows, B, T, Ch, H, W, **f32) for _ in range(3))
    with _device_guard(dev):
        for phase in (1, 2):
            kerns["fwd"][(n_flows * B * T * n_pt, n_nt)](
                gx, h0, h_seq, q, u, r, c, pack_f, table, ntaps,
                0, B, T, Ch, H, W, k * k, *planes.kernel_layout(gx, is_input=False),
                PHASE=phase, ALL_T=True, DOT_FP32=dot_fp32, **meta)
    del gx

    # Local gradients of the last frame, then the reverse scan. The gate gradients
    # G are input planes (zero outside the images) that the weight and input
    # gradients below read in place.
    G = torch.zeros(n_flows, 3 * Ch, planes.L, **f32)
    g_inner = planes.interior(G.view(n_flows * 3 * Ch, planes.L)).view(
        n_flows, 3, Ch, B, T, H, W)
    hp_last = (h0 if T == 1 else h_seq[:, :, T - 2]).float()
    dh = dhb[:, :, T - 1].view(n_flows, B, Ch, H, W)
    if dh_last is not None:
        dh = dh + dh_last.float()
    u_l, c_l = u[:, :, T - 1], c[:, :, T - 1]
    g_inner[:, 2, :, :, T - 1] = (dh * u_l * (1.0 - c_l * c_l)).transpose(1, 2)
    g_inner[:, 1, :, :, T - 1] = (dh * (c_l - hp_last) * u_l * (1.0 - u_l)).transpose(1, 2)
    del g_inner
    carry = (dh * (1.0 - u_l)).contiguous()
    dh0 = torch.empty(n_flows, B, Ch, H, W, **f32)
    pack_b = _pack_hidden(weights, flows, transpose=True)
    grid = (n_flows * B * n_pt, n_nt)
    with _device_guard(dev):
        for t in range(T - 1, -1, -1):
            for phase in (1, 2):
                kerns["bwd"][grid](G, r, u, c, dhb, h0, h_seq, carry, dh0, pack_b, table,
                                   ntaps, t, B, T, Ch, H, W, k * k,
                                   *planes.kernel_layout(G, is_input=True), PHASE=phase,
                                   DOT_FP32=dot_fp32, **meta)
    del carry, r, u, c

    # Input and weight gradients over all frames: GEMMs per tap on padded planes.
    dx = torch.zeros(C, planes.Kc, **f32)
    db_flow = G.view(n_flows, 3, Ch, planes.L).sum(-1)
    dws, dbs = {}, {}
    for cell in sorted({c for c, _, _ in flows}):
        mine = [(f, o, d) for f, (c, o, d) in enumerate(flows) if c == cell]
        srcs = []
        for f, _, d in mine:
            # [x; h_{t-1}] and [x; r ⊙ h_{t-1}] (h_{-1} = h0), written into place:
            # x's rows (pads included) from its buffer, the hidden rows zeroed and
            # their pixels filled.
            src_ru, src_o = (xb.new_empty(C + Ch, planes.L) for _ in range(2))
            for src in (src_ru, src_o):
                src[:C].copy_(xb)
                src[C:].zero_()
            prev = planes.interior(src_ru)[C:].unflatten(1, (B, T))
            prev[:, :, 0].copy_(h0[f].transpose(0, 1))
            prev[:, :, 1:].copy_(h_seq[f, :, :-1].permute(2, 0, 1, 3, 4))
            planes.interior(src_o)[C:].copy_(q[f].flatten(0, 1).transpose(0, 1))
            srcs.append((G[f], d, src_ru, src_o))
        dws[cell] = _conv_grads(planes, srcs, weights[cell], k, mine[0][1], dx)
        dbs[cell] = sum(db_flow[f] for f, _, _ in mine)
        del srcs
    dx = planes.output_interior(dx).transpose(0, 1).contiguous()
    return dx.view(B, T, C, H, W), dh0, dws, dbs


# --------------------------------------------------------------------------- launchers

def video_predictor_fwd(x, xh, h0, w_sq, b_sq, w_h, b_h, w_w, b_w, blend_w, blend_b):
    """Forward of the video prediction layer; see the module docstring for the contract.

    Returns ``y [B, T, C, H, W]`` and ``h_seq [F, B, T, Ch, H, W]`` in x's dtype.
    """
    directional, n_flows, Ch, k, _ = _validate(x, xh, h0, w_sq, b_sq, w_h, b_h, w_w, b_w,
                                               blend_w, blend_b)
    _check_runnable(x)
    flows = _LAYER_FLOWS if directional else _BASIC_FLOWS
    h_seq = _scan_fwd(x, h0, (w_sq, w_h, w_w), (b_sq, b_h, b_w), flows)
    agg, _ = _blend_agg(h_seq, blend_w, blend_b, directional)
    B, T, C, H, W = x.shape
    a = torch.sigmoid(agg[:, :, C:])
    y = (xh.float().reshape(B, T, C, H * W) * a + agg[:, :, :C] * (1.0 - a)).view(x.shape)
    return y.to(x.dtype), h_seq


def video_predictor_bwd(dy, dh_last, x, xh, h0, h_seq, w_sq, b_sq, w_h, b_h, w_w, b_w,
                        blend_w, blend_b):
    """Backward of :func:`video_predictor_fwd`.

    ``dy [B, T, C, H, W]``, ``dh_last [F, B, Ch, H, W]`` (gradient w.r.t. the
    returned last state ``h_seq[:, :, -1]``; zeros when unused) or ``[F, B, T, Ch,
    H, W]`` (gradient w.r.t. every returned state, for an op that returns h_seq),
    and the forward's inputs and ``h_seq``. Returns ``(dx, dxh, dh0, dw_sq, db_sq, dw_h, db_h, dw_w,
    db_w, dblend_w, dblend_b)`` in x's dtype; empty tensors for absent weights.
    """
    directional, n_flows, Ch, k, _ = _validate(x, xh, h0, w_sq, b_sq, w_h, b_h, w_w, b_w,
                                               blend_w, blend_b)
    B, T, C, H, W = x.shape
    HW = H * W
    kw = dict(dtype=x.dtype, device=x.device)
    _check("dy", dy, x.shape, **kw)
    _check("h_seq", h_seq, (n_flows, B, T, Ch, H, W), **kw)
    per_frame = isinstance(dh_last, torch.Tensor) and dh_last.shape == h_seq.shape
    _check("dh_last", dh_last, h_seq.shape if per_frame else h0.shape, **kw)
    _check_runnable(x)

    # Blend backward (batched over frames).
    agg, stacked = _blend_agg(h_seq, blend_w, blend_b, directional)
    a = torch.sigmoid(agg[:, :, C:])
    p = agg[:, :, :C]
    dyf = dy.float().reshape(B, T, C, HW)
    xhf = xh.float().reshape(B, T, C, HW)
    dxh = (dyf * a).view(B, T, C, H, W).to(x.dtype)
    d_mask = (dyf * (xhf - p)).sum(2, keepdim=True) * a * (1.0 - a)
    d_agg = torch.cat([dyf * (1.0 - a), d_mask], 2)          # [B, T, C+1, HW]
    if directional:
        dblend_w = torch.matmul(d_agg, stacked.transpose(-1, -2)).sum((0, 1)).to(x.dtype)
        dblend_b = d_agg.sum((0, 1, 3)).to(x.dtype)
        # Each flow's slice of blend_wᵀ · d_agg, written straight into its rows of
        # dhb [F, B, T, Ch, HW] (no permuted copy).
        dhb = torch.empty(n_flows, B, T, Ch, HW, dtype=torch.float32, device=x.device)
        wt = blend_w.float().t().reshape(n_flows, Ch, C + 1)
        d_agg_n = d_agg.view(B * T, C + 1, HW)
        for f in range(n_flows):
            torch.bmm(wt[f].expand(B * T, Ch, C + 1), d_agg_n, out=dhb[f].view(B * T, Ch, HW))
    else:
        dblend_w = torch.empty(0, **kw)
        dblend_b = torch.empty(0, **kw)
        dhb = d_agg.view(1, B, T, Ch, HW).contiguous()
    del stacked, agg
    if per_frame:
        dhb += dh_last.float().reshape(dhb.shape)
        dh_last = None

    flows = _LAYER_FLOWS if directional else _BASIC_FLOWS
    dx, dh0, dws, dbs = _scan_bwd(dhb, dh_last, x, h0, h_seq, (w_sq, w_h, w_w),
                                  (b_sq, b_h, b_w), flows)
    out = []
    for cell in range(3):
        if cell in dws:
            out += [dws[cell].to(x.dtype), dbs[cell].to(x.dtype)]
        else:
            # Two distinct tensors: a custom op's outputs may not alias each other.
            out += [torch.empty(0, **kw), torch.empty(0, **kw)]
    return (dx.to(x.dtype), dxh, dh0.to(x.dtype), *out, dblend_w, dblend_b)


_ORIENTATION_CODES = {0: None, 1: "h", 2: "w"}


def _validate_cell(x, h0, weight, bias, orientation, direction):
    """Check the single-cell arguments; return the orientation as None/'h'/'w'."""
    if orientation not in _ORIENTATION_CODES:
        raise ValueError(f"orientation: expected 0 (square), 1 ('h') or 2 ('w'), "
                         f"got {orientation!r}")
    if direction not in (1, -1):
        raise ValueError(f"direction: expected +1 or -1, got {direction!r}")
    orientation = _ORIENTATION_CODES[orientation]
    B, T, C, H, W = _check_sequence(x)
    kw = dict(dtype=x.dtype, device=x.device)
    _check("weight", weight, **kw)
    if weight.dim() < 3 or weight.shape[0] != 3:
        raise ValueError(f"weight: expected [3, Ch, C + Ch, ...], got {tuple(weight.shape)}")
    Ch = weight.shape[1]
    if orientation is None:
        k = int(weight.shape[-1])
        shape = (3, Ch, C + Ch, k, k)
    else:
        n_taps = int(weight.shape[-1])
        k = 2 * math.isqrt(n_taps) - 1
        shape = (3, Ch, C + Ch, ((k + 1) // 2) ** 2)
    if k < 1 or k % 2 == 0:
        raise ValueError(f"weight: kernel size must be odd, got {tuple(weight.shape)}")
    _check("weight", weight, shape)
    _check("bias", bias, (3, Ch), **kw)
    _check("h0", h0, (B, Ch, H, W), **kw)
    return orientation


def dirconv_gru_fwd(x, h0, weight, bias, orientation: int, direction: int):
    """One (directional) ConvGRU cell over a sequence (``s2v.ops.dirconv_gru``).

    ``x [B, T, C, H, W]``, ``h0 [B, Ch, H, W]``, ``weight``/``bias`` in the layout of
    :mod:`s2v.ops.dirconv_gru`, ``orientation`` 0 (square) / 1 ('h') / 2 ('w'),
    ``direction`` ±1 -> ``h_seq [B, T, Ch, H, W]`` in x's dtype; ``h_seq[:, -1]`` is
    the next state. Inputs contiguous, one dtype and device.
    """
    o = _validate_cell(x, h0, weight, bias, orientation, direction)
    _check_runnable(x)
    return _scan_fwd(x, h0.unsqueeze(0), (weight,), (bias,), ((0, o, direction),))[0]


def dirconv_gru_bwd(dh_seq, x, h0, h_seq, weight, bias, orientation: int, direction: int):
    """Gradients of :func:`dirconv_gru_fwd` given ``dh_seq [B, T, Ch, H, W]`` (the
    gradient of every returned state) -> ``(dx, dh0, dweight, dbias)`` in x's dtype."""
    o = _validate_cell(x, h0, weight, bias, orientation, direction)
    B, T, C, H, W = x.shape
    kw = dict(dtype=x.dtype, device=x.device)
    shape = (B, T, weight.shape[1], H, W)
    _check("dh_seq", dh_seq, shape, **kw)
    _check("h_seq", h_seq, shape, **kw)
    _check_runnable(x)
    dhb = dh_seq.float().reshape(1, B, T, weight.shape[1], H * W).contiguous()
    dx, dh0, dws, dbs = _scan_bwd(dhb, None, x, h0.unsqueeze(0), h_seq.unsqueeze(0),
                                  (weight,), (bias,), ((0, o, direction),))
    return dx.to(x.dtype), dh0[0].to(x.dtype), dws[0].to(x.dtype), dbs[0].to(x.dtype)


# --------------------------------------------------------------------------- resources

def kernel_variants():
    """``[(label, 'fwd' | 'bwd', constexpr flags)]`` of every variant the launchers use."""
    variants = [("fwd", dict(PHASE=phase, ALL_T=all_t)) for phase in (1, 2)
                for all_t in (False, True)]
    variants += [("bwd", dict(PHASE=phase)) for phase in (1, 2)]
    return [("_video_predictor_{}_kernel[{}]".format(
        which, ",".join(f"{k}={v}" for k, v in flags.items())), which, flags)
        for which, flags in variants]


def kernel_signatures(dtype: torch.dtype, Ch: int = 32):
    """Every kernel variant the launchers use for hidden width ``Ch`` on CUDA.

    Returns ``[(name, kernel, signature, constexprs, options)]``, the arguments of
    ``triton.compile(ASTSource(kernel, signature, constexprs), options=options)``.
    Hidden states and the weight pack are in ``dtype`` (x's), gate buffers and
    gradients float32, tap tables int32.
    """
    tname = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    kerns = _kernels()
    common = dict(DOT_FP32=dtype == torch.float32, **_blocks(Ch, torch.device("cuda")))
    in_dtype = {"h0_ptr", "hseq_ptr", "q_ptr", "w_ptr"}
    out = []
    for label, which, flags in kernel_variants():
        kern = kerns[which]
        const = dict(flags, **common)
        sig = {}
        for name in kern.arg_names:
            if name in const:
                sig[name] = "constexpr"
            elif name in ("tap_ptr", "ntap_ptr"):
                sig[name] = "*i32"
            elif name.endswith("_ptr"):
                sig[name] = f"*{tname}" if name in in_dtype else "*fp32"
            else:
                sig[name] = "i32"
        out.append((label, kern, sig, const, dict(_LAUNCH_OPTIONS)))
    return out


def kernel_resource_usage(dtype: torch.dtype = torch.float32, arch: int = 90, Ch: int = 32):
    """Compile every kernel offline for ``sm_<arch>`` (tiles for hidden width Ch) and
    report its resources, for the profiling suite.

    Returns ``{name: {"n_regs", "n_spills", "shared"}}``. Registers and spills come
    from ``ptxas -v`` (the compiled object only learns them when loaded on a GPU);
    ``None`` when ptxas cannot be run. Needs triton, not a GPU.
    """
    res = {}
    for name, kern, sig, const, options in kernel_signatures(dtype, Ch):
        compiled = compile_offline(kern, sig, const, options, arch)
        res[name] = dict(shared=compiled.metadata.shared, **resource_usage(compiled, arch))
    return res


def compile_offline(kern, signature, constexprs, options, arch: int = 90):
    """``triton.compile`` one variant for ``sm_<arch>`` without a GPU."""
    import triton
    from triton.backends.compiler import GPUTarget

    return triton.compile(triton.compiler.ASTSource(fn=kern, signature=signature,
                                                    constexprs=constexprs),
                          target=GPUTarget("cuda", arch, 32), options=options)


def resource_usage(compiled, arch: int = 90):
    """``{"n_regs", "n_spills"}`` of a compiled kernel (None where unknown).

    The compiled object sets ``n_regs``/``n_spills`` only once loaded on a GPU, so
    offline they come from re-running ``ptxas -v`` on its PTX; spills are the bytes
    of spill stores plus spill loads.
    """
    usage = {"n_regs": getattr(compiled, "n_regs", None),
             "n_spills": getattr(compiled, "n_spills", None)}
    if usage["n_regs"] is None or usage["n_spills"] is None:
        usage.update(_ptxas_usage(compiled.asm["ptx"], arch))
    return usage


def _ptxas_candidates(arch):
    """ptxas binaries to try, the one triton itself would use for ``arch`` first."""
    paths = []
    try:  # internal helper (triton 3.x); absent or renamed in some versions
        from triton.backends.nvidia.compiler import get_ptxas
        paths.append(get_ptxas(arch).path)
    except Exception:  # noqa: BLE001 - fall back to the knobs below
        pass
    try:
        from triton import knobs
        for tool in ("ptxas_blackwell", "ptxas"):
            if hasattr(knobs.nvidia, tool):
                paths.append(getattr(knobs.nvidia, tool).path)
    except Exception:  # noqa: BLE001 - resource numbers are optional extras
        pass
    return list(dict.fromkeys(p for p in paths if p))


def _ptxas_usage(ptx: str, arch: int):
    """``{"n_regs", "n_spills"}`` (spill bytes stored + loaded) from ``ptxas -v``, or {}."""
    import re
    import subprocess
    import tempfile

    suffix = "a" if arch >= 90 else ""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as fh:
            fh.write(ptx)
        for ptxas in _ptxas_candidates(arch):
            proc = subprocess.run([ptxas, "-v", f"--gpu-name=sm_{arch}{suffix}", src,
                                   "-o", os.path.join(tmp, "k.cubin")],
                                  capture_output=True, text=True)
            if proc.returncode == 0:
                break
        else:
            return {}
    text = proc.stdout + proc.stderr
    regs = re.search(r"Used (\d+) registers", text)
    stores = re.search(r"(\d+) bytes spill stores", text)
    loads = re.search(r"(\d+) bytes spill loads", text)
    out = {}
    if regs:
        out["n_regs"] = int(regs.group(1))
    if stores and loads:
        out["n_spills"] = int(stores.group(1)) + int(loads.group(1))
    return out
