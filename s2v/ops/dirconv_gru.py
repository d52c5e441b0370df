"""Directional ConvGRU: one cell run over a sequence of frames (SPEC §5).

Weight layout (shared by every backend; the gates are stacked in the order
reset, update, output, i.e. Conv_r, Conv_u, Conv_o):

* square cell (``orientation=None``): ``weight [3, C_hid, C_in + C_hid, k, k]``,
  input channels ordered ``[x, h]``; zero padding ``k // 2``.
* directional cell (``orientation='h'`` or ``'w'``): ``weight [3, C_hid,
  C_in + C_hid, n_taps]`` with ``n_taps = ((k + 1) / 2) ** 2``. The taps are the
  sub-kernels s = 0 … (k-1)/2 laid end to end, sub-kernel s holding its 2s+1
  taps for offsets j = -s … s. For ``'h'`` a sub-kernel runs along the width
  and is shifted s rows in direction d (replicate rows at the border); ``'w'``
  swaps the axes.
* ``bias [3, C_hid]``.

State contract: ``h0 [B, C_hid, H, W]`` (``None`` = zeros) is the hidden state
before the first frame; the op returns every frame's hidden state, and the
last one, ``h_seq[:, -1]``, is the state to pass to the next call.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._validation import (check_float_tensor, check_odd_kernel, check_same_device_dtype,
                          check_shape)
from ._autocast import register_autocast_bf16
from ._double_backward import register_no_double_backward
from .backend import OpBackends

ORIENTATIONS = (None, "h", "w")


def directional_taps(kernel_size: int) -> int:
    """Number of taps of one directional kernel: 1 + 3 + … + k = ((k+1)/2)²."""
    return ((kernel_size + 1) // 2) ** 2


def kernel_size_from_weight(weight: torch.Tensor, orientation) -> int:
    """Recover k from a stacked gate weight in the layout above."""
    if orientation is None:
        return int(weight.shape[-1])
    return 2 * math.isqrt(int(weight.shape[-1])) - 1


def gate_weight_shape(in_channels: int, hidden_channels: int, kernel_size: int, orientation):
    cat = in_channels + hidden_channels
    if orientation is None:
        return (3, hidden_channels, cat, kernel_size, kernel_size)
    return (3, hidden_channels, cat, directional_taps(kernel_size))


def gate_conv_ref(inp: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                  kernel_size: int, orientation, direction: int) -> torch.Tensor:
    """One gate convolution ``[N, C_cat, H, W] -> [N, C_hid, H, W]`` (SPEC §5)."""
    if orientation is None:
        return F.conv2d(inp, weight, bias, padding=kernel_size // 2)
    H, W = inp.shape[-2:]
    out = None
    first = 0
    for s in range((kernel_size + 1) // 2):
        taps = weight[:, :, first:first + 2 * s + 1]
        first += 2 * s + 1
        if orientation == "h":
            a = F.conv2d(inp, taps.unsqueeze(2), padding=(0, s))
            if s:
                rows = (torch.arange(H, device=inp.device) - direction * s).clamp(0, H - 1)
                a = a.index_select(2, rows)
        else:
            a = F.conv2d(inp, taps.unsqueeze(3), padding=(s, 0))
            if s:
                cols = (torch.arange(W, device=inp.device) - direction * s).clamp(0, W - 1)
                a = a.index_select(3, cols)
        out = a if out is None else out + a
    return out + bias.view(1, -1, 1, 1)


def dirconv_gru_ref(x: torch.Tensor, h0: torch.Tensor | None, weight: torch.Tensor,
                    bias: torch.Tensor, orientation=None, direction: int = 1) -> torch.Tensor:
    """Eager reference: ``x [B, T, C_in, H, W]`` -> ``h_seq [B, T, C_hid, H, W]``.

    Per frame: ``u = σ(Conv_u([x, h]))``, ``r = σ(Conv_r([x, h]))``,
    ``c = tanh(Conv_o([x, r ⊙ h]))``, ``h ← (1 - u) ⊙ h + u ⊙ c``.
    """
    B, T, _, H, W = x.shape
    C_hid = weight.shape[1]
    k = kernel_size_from_weight(weight, orientation)
    h = x.new_zeros(B, C_hid, H, W) if h0 is None else h0
    out = []
    for t in range(T):
        xt = x[:, t]
        stacked = torch.cat([xt, h], dim=1)
        r = torch.sigmoid(gate_conv_ref(stacked, weight[0], bias[0], k, orientation, direction))
        u = torch.sigmoid(gate_conv_ref(stacked, weight[1], bias[1], k, orientation, direction))
        c = torch.tanh(gate_conv_ref(torch.cat([xt, r * h], dim=1), weight[2], bias[2], k,
                                     orientation, direction))
        h = h * (1 - u) + c * u
        out.append(h)
    return torch.stack(out, dim=1)


def validate_dirconv_gru(x, h0, weight, bias, orientation, direction) -> None:
    """Check every argument of :func:`dirconv_gru`; raise ValueError/TypeError."""
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation: expected None, 'h' or 'w', got {orientation!r}")
    if isinstance(direction, bool) or not isinstance(direction, int) or direction not in (1, -1):
        raise ValueError(f"direction: expected the int +1 or -1, got {direction!r}")
    check_float_tensor("x", x, 5)
    B, T, C_in, H, W = x.shape
    if T < 1 or B < 1 or H < 1 or W < 1:
        raise ValueError(f"x: expected [B, T, C_in, H, W] with B, T, H, W >= 1, "
                         f"got {tuple(x.shape)}")
    check_float_tensor("weight", weight)
    if weight.dim() != (5 if orientation is None else 4) or weight.shape[0] != 3:
        kind = "[3, C_hid, C_in + C_hid, k, k]" if orientation is None else \
            "[3, C_hid, C_in + C_hid, n_taps]"
        raise ValueError(f"weight: expected {kind} for orientation={orientation!r}, "
                         f"got {tuple(weight.shape)}")
    C_hid = weight.shape[1]
    k = kernel_size_from_weight(weight, orientation)
    check_odd_kernel(k)
    if weight.shape[2] != C_in + C_hid:  # most often x has the wrong channel count
        raise ValueError(f"x: has {C_in} channels (dim 2), but the layer's weight reads "
                         f"C_in + C_hid = {weight.shape[2]} channels with C_hid = {C_hid}, "
                         f"i.e. it expects C_in = {weight.shape[2] - C_hid}")
    check_shape("weight", weight, gate_weight_shape(C_in, C_hid, k, orientation))
    check_shape("bias", bias, (3, C_hid), "[3, C_hid]")
    if h0 is not None:
        check_float_tensor("state", h0)
        check_shape("state", h0, (B, C_hid, H, W), "[B, C_hid, H, W]")
    check_same_device_dtype("x", x, weight=weight, bias=bias, state=h0)


# ---------------------------------------------------------------------------
# Fused kernels. The CPU kernel is C++ (csrc/video_predictor/, the same code as
# the video predictor layer run with one flow of the cell's orientation and
# direction, entry point s2v._C.dirconv_gru_forward/backward); CUDA tensors go
# to the Triton module s2v.kernels.video_predictor when it offers a single-cell
# entry point. Both sit behind the custom ops s2v::dirconv_gru_fwd/_bwd so that
# torch.compile sees one opaque node with a fake (shape-only) implementation.
# ---------------------------------------------------------------------------

_ORIENTATION_CODE = {None: 0, "h": 1, "w": 2}
_REBUILD = "pip install --no-build-isolation -e ."
_UNSET = object()
_cpu_reason = _UNSET


@torch.compiler.assume_constant_result
def cpu_kernels_unavailable() -> str | None:
    """None when s2v._C has the video predictor's CPU kernels, else why not and how to get them.

    Shared by ``dirconv_gru`` and ``video_predictor``; computed once (the
    extension cannot appear later in the process) and a constant under
    torch.compile.
    """
    global _cpu_reason
    if _cpu_reason is _UNSET:
        from .._extension import load_extension
        try:
            ext = load_extension()
        except RuntimeError as exc:
            _cpu_reason = str(exc)
        else:
            _cpu_reason = None if hasattr(ext, "video_predictor_forward") else (
                "the installed s2v._C predates the video predictor's CPU kernels; rebuild it "
                f"from the s2v source tree: `{_REBUILD}`")
    return _cpu_reason


def _ext():
    from .._extension import load_extension
    return load_extension()


def _triton_module():
    """s2v.kernels.video_predictor (imported lazily: triton is optional and GPU-only)."""
    from ..kernels import video_predictor
    return video_predictor


@torch.library.custom_op("s2v::dirconv_gru_fwd", mutates_args=())
def dirconv_gru_fwd(x: torch.Tensor, h0: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor, orientation: int, direction: int) -> torch.Tensor:
    """One cell over a sequence: ``x [B,T,C,H,W]``, ``h0 [B,Ch,H,W]``, weight/bias in the
    module's layout, ``orientation`` 0 (square) / 1 ('h') / 2 ('w'), ``direction`` ±1
    -> ``h_seq [B,T,Ch,H,W]``. Inputs contiguous, one dtype and device."""
    raise NotImplementedError(f"s2v::dirconv_gru_fwd has no kernel for {x.device.type} tensors")


@dirconv_gru_fwd.register_kernel("cpu")
def _(x, h0, weight, bias, orientation, direction):
    return _ext().dirconv_gru_forward(x, h0, weight, bias, orientation, direction)


@dirconv_gru_fwd.register_kernel("cuda")
def _(x, h0, weight, bias, orientation, direction):
    # ---- CUDA device kernel hook: Triton, s2v.kernels.video_predictor ----
    return _triton_module().dirconv_gru_fwd(x, h0, weight, bias, orientation, direction)


@dirconv_gru_fwd.register_fake
def _(x, h0, weight, bias, orientation, direction):
    B, T, _, H, W = x.shape
    return x.new_empty(B, T, weight.shape[1], H, W)


@torch.library.custom_op("s2v::dirconv_gru_bwd", mutates_args=())
def dirconv_gru_bwd(dh_seq: torch.Tensor, x: torch.Tensor, h0: torch.Tensor,
                    h_seq: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    orientation: int, direction: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`dirconv_gru_fwd` given ``dh_seq [B,T,Ch,H,W]`` (the gradient of
    every returned state) -> ``(dx, dh0, dweight, dbias)``."""
    raise NotImplementedError(f"s2v::dirconv_gru_bwd has no kernel for {x.device.type} tensors")


@dirconv_gru_bwd.register_kernel("cpu")
def _(dh_seq, x, h0, h_seq, weight, bias, orientation, direction):
    return tuple(_ext().dirconv_gru_backward(dh_seq, x, h0, h_seq, weight, bias, orientation,
                                             direction))


@dirconv_gru_bwd.register_kernel("cuda")
def _(dh_seq, x, h0, h_seq, weight, bias, orientation, direction):
    # ---- CUDA device kernel hook: Triton, s2v.kernels.video_predictor ----
    return tuple(_triton_module().dirconv_gru_bwd(dh_seq, x, h0, h_seq, weight, bias,
                                                  orientation, direction))


@dirconv_gru_bwd.register_fake
def _(dh_seq, x, h0, h_seq, weight, bias, orientation, direction):
    return (torch.empty_like(x), torch.empty_like(h0), torch.empty_like(weight),
            torch.empty_like(bias))


def _dirconv_setup_context(ctx, inputs, output):
    x, h0, weight, bias, orientation, direction = inputs
    ctx.orientation, ctx.direction = orientation, direction
    ctx.save_for_backward(x, h0, weight, bias, output)


def _dirconv_backward(ctx, dh_seq):
    x, h0, weight, bias, h_seq = ctx.saved_tensors
    dx, dh0, dw, db = torch.ops.s2v.dirconv_gru_bwd(dh_seq.contiguous(), x, h0, h_seq, weight,
                                                    bias, ctx.orientation, ctx.direction)
    return dx, dh0, dw, db, None, None


dirconv_gru_fwd.register_autograd(_dirconv_backward, setup_context=_dirconv_setup_context)
register_autocast_bf16(dirconv_gru_fwd, dirconv_gru_bwd)
register_no_double_backward(dirconv_gru_bwd, "dirconv_gru")


def dirconv_gru_fused(x, h0, weight, bias, orientation=None, direction: int = 1):
    """The 'cpu'/'triton' implementation: the custom op on contiguous inputs."""
    B, _, _, H, W = x.shape
    h0 = x.new_zeros(B, weight.shape[1], H, W) if h0 is None else h0.contiguous()
    h_seq = torch.ops.s2v.dirconv_gru_fwd(x.contiguous(), h0, weight.contiguous(),
                                          bias.contiguous(), _ORIENTATION_CODE[orientation],
                                          int(direction))
    # Under autocast the op ran in bfloat16 (s2v.ops._autocast); hand back x's dtype.
    return h_seq.to(x.dtype)


@torch.compiler.assume_constant_result
def triton_single_cell_unavailable() -> str | None:
    from ..kernels._triton_support import triton_available
    if not triton_available():
        return ("Triton is not installed; install it (`pip install triton`, Linux with an "
                "NVIDIA GPU) or use backend='auto'")
    try:
        module = _triton_module()
    except ImportError as exc:
        return f"s2v.kernels.video_predictor cannot be imported ({exc}); use backend='auto'"
    if not hasattr(module, "dirconv_gru_fwd"):
        return ("s2v.kernels.video_predictor has no single-cell kernel (dirconv_gru_fwd) in "
                "this version of s2v; use backend='eager' or 'auto'")
    return None


dirconv_gru_backends = OpBackends("dirconv_gru")
dirconv_gru_backends.register("eager", dirconv_gru_ref)
dirconv_gru_backends.register("cpu", dirconv_gru_fused, cpu_kernels_unavailable)
dirconv_gru_backends.register("triton", dirconv_gru_fused, triton_single_cell_unavailable)


def dirconv_gru(x: torch.Tensor, h0: torch.Tensor | None, weight: torch.Tensor,
                bias: torch.Tensor, orientation=None, direction: int = 1,
                backend: str = "auto") -> torch.Tensor:
    """Run one (directional) ConvGRU cell over a sequence.

    Args:
        x: ``[B, T, C_in, H, W]`` float32/bfloat16/float16/float64.
        h0: ``[B, C_hid, H, W]`` state before the first frame, or ``None`` (zeros).
        weight, bias: stacked gates (reset, update, output), layout in the module doc.
        orientation: ``None`` (square k×k), ``'h'`` or ``'w'``.
        direction: +1 or -1, the side the directional receptive field opens to.
        backend: ``'auto'``, ``'eager'``, ``'cpu'``, ``'triton'`` or ``'cuda'``.

    Returns:
        ``h_seq [B, T, C_hid, H, W]`` in x's dtype; ``h_seq[:, -1]`` is the next state.
    """
    validate_dirconv_gru(x, h0, weight, bias, orientation, direction)
    impl = dirconv_gru_backends.resolve(backend, x.device)
    # x's dtype on every backend, also when autocast mixes dtypes inside the cell.
    return impl(x, h0, weight, bias, orientation, direction).to(x.dtype)
