"""Stride-1, same-size 2-D convolutions as one GEMM per tap on zero-padded planes.

The convolutions around the video predictor's scans (input gates, the input
gradient, the weight gradient; see :mod:`s2v.kernels.video_predictor`) need
true float32 products (cuDNN may pick Winograd or FFT algorithms, whose
float32 error is far above the products'), and an explicit im2col copy of the
sources costs more memory traffic than the products themselves: at C = 32,
128², 16 frames it wrote ~5 GB per backward. Here no unfolded copy exists, and
the video predictor's Triton kernels read the input gates and write the gate
gradients in this layout too (:meth:`Planes.kernel_layout`).

Layout (:class:`Planes`): N images of ``rows`` channels, H×W, stored channel-major
as ``[rows, L]``: the images one after another on a grid padded by ``P`` zero
rows and columns on every side (``Hp = H + 2P``, ``Wp = W + 2P``), with a margin of
``M = P·Wp + P`` zeros before and after. On that grid a tap at offset (dy, dx)
is a constant shift ``dy·Wp + dx`` of the flat index, so the source of every
output position for one tap is a plain strided view ``[rows, Kc]`` of the
buffer (row stride L), which a GEMM reads as it is. Output positions on the pad
rows and columns see other pixels or the next image: those values are computed
and never read (they cost ``(Hp·Wp)/(H·W) - 1`` extra products, 3 % at 128² with
P = 1). Reductions over positions (the weight gradient) read the gradient
buffer, whose pad positions are zero, so nothing from outside the image enters.

Functions, for ``w [O, Cs, kh, kw]`` and ``padding (ph, pw)`` with ph, pw <= P
(the output is H×W; tap (i, j) reads ``src[y + i - ph, x + j - pw]``):

* :func:`conv2d` ``(planes, src [Cs, L], w, bias, padding) -> out [O, Kc]``
* :func:`conv2d_input_add` ``(planes, out [Cs, Kc], g [O, L], w, padding)``: adds the
  gradient with respect to the convolution's input (the transposed convolution)
* :func:`conv2d_weight` ``(planes, g [O, L], src [Cs, L], kernel, padding) ->
  [O, Cs, kh, kw]``

Outputs ``[O, Kc]`` are indexed by the grid position (read them with
:meth:`Planes.output_interior`); inputs ``[rows, L]`` are zero outside their
interior (:meth:`Planes.pack`, or :meth:`Planes.zeros` and a copy into
:meth:`Planes.interior`). Every buffer is float32 or float64 (the products'
precision, TF32 as ``torch.backends.cuda.matmul.allow_tf32`` says).
"""
from __future__ import annotations

import torch

__all__ = ["Planes", "conv2d", "conv2d_input_add", "conv2d_weight"]

# The weight gradient's reduction over all positions is split into chunks of at
# least this many positions, about _SPLITS of them, run as one batched GEMM and
# summed: its output (O × Cs) is a few GEMM tiles, which alone would leave most
# of a GPU idle.
_MIN_CHUNK = 256
_SPLITS = 512


class Planes:
    """Geometry of the padded, channel-major layout (see the module docstring).

    ``N`` images of H×W, padded by ``P`` on every side, on ``device``.
    ``K = N·Hp·Wp`` grid positions, rounded up to ``Kc = S·chunk`` for the
    weight gradient's split; ``L = M + Kc + M`` elements per row.
    """

    def __init__(self, N: int, H: int, W: int, P: int, device, dtype=torch.float32):
        self.N, self.H, self.W, self.P = N, H, W, P
        self.device, self.dtype = device, dtype
        self.Hp, self.Wp = H + 2 * P, W + 2 * P
        self.K = N * self.Hp * self.Wp
        self.chunk = max(_MIN_CHUNK, -(-self.K // _SPLITS))
        self.S = -(-self.K // self.chunk)
        self.Kc = self.S * self.chunk
        self.M = P * self.Wp + P
        self.L = self.M + self.Kc + self.M

    def zeros(self, rows: int) -> torch.Tensor:
        """A ``[rows, L]`` input buffer of zeros."""
        return torch.zeros(rows, self.L, dtype=self.dtype, device=self.device)

    def _grid(self, t: torch.Tensor, start: int) -> torch.Tensor:
        rows = t.shape[0]
        g = t[:, start:start + self.K].view(rows, self.N, self.Hp, self.Wp)
        return g[:, :, self.P:self.P + self.H, self.P:self.P + self.W]

    def interior(self, buf: torch.Tensor) -> torch.Tensor:
        """The image pixels of an input buffer: a ``[rows, N, H, W]`` view."""
        return self._grid(buf, self.M)

    def output_interior(self, out: torch.Tensor) -> torch.Tensor:
        """The image pixels of an output ``[rows, Kc]``: a ``[rows, N, H, W]`` view."""
        return self._grid(out, 0)

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        """``t [N, rows, H, W]`` (any float dtype) as a new input buffer."""
        buf = self.zeros(t.shape[1])
        self.interior(buf).copy_(t.transpose(0, 1))
        return buf

    def kernel_layout(self, buf: torch.Tensor, is_input: bool) -> tuple:
        """How a kernel addresses pixel (n, y, x) of row ``row`` of ``buf`` (rows
        contiguous, ``[..., X]`` viewed as rows of X elements): ``row·rs + n·ns + off +
        y·wp + x``. Returns ``(rs, ns, wp, off)`` for an input buffer (``[rows, L]``)
        or an output (``[rows, Kc]``)."""
        start = self.M if is_input else 0
        return (buf.stride(-2), self.Hp * self.Wp, self.Wp, start + self.P * self.Wp + self.P)

    def shifted(self, buf: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        """``[rows, Kc]`` view: position r holds the buffer's value at r + (dy, dx)."""
        start = self.M + dy * self.Wp + dx
        return buf[:, start:start + self.Kc]


def _taps(kernel, padding):
    """((i, j), (dy, dx)) of every tap of a kh×kw kernel with padding (ph, pw)."""
    (kh, kw), (ph, pw) = kernel, padding
    return [((i, j), (i - ph, j - pw)) for i in range(kh) for j in range(kw)]


def _check_padding(planes: Planes, kernel, padding):
    (kh, kw), (ph, pw) = kernel, padding
    if kh != 2 * ph + 1 or kw != 2 * pw + 1 or max(ph, pw) > planes.P:
        raise ValueError(f"kernel {tuple(kernel)} with padding {tuple(padding)}: expected "
                         f"a same-size output and padding <= {planes.P}")


def conv2d(planes: Planes, src: torch.Tensor, w: torch.Tensor, bias, padding,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, w, bias, padding=padding)`` with x packed in ``src [Cs, L]``.

    Returns ``out [O, Kc]`` (read with :meth:`Planes.output_interior`; written into
    ``out`` when given, a contiguous ``[O, Kc]``); the same products as F.conv2d,
    accumulated one GEMM at a time (per tap, or per kernel row: see
    :func:`_grouped_terms`).
    """
    O = w.shape[0]
    _check_padding(planes, w.shape[2:], padding)
    if out is None:
        out = torch.empty(O, planes.Kc, dtype=planes.dtype, device=planes.device)
    elif out.shape != (O, planes.Kc) or not out.is_contiguous():
        raise ValueError(f"out: expected a contiguous [{O}, {planes.Kc}] tensor, "
                         f"got {tuple(out.shape)}")
    w = w.to(planes.dtype)
    terms = _grouped_terms(planes, src, w, padding)
    if terms is None:
        wt = w.permute(2, 3, 0, 1).contiguous()     # [kh, kw, O, Cs]
        terms = [(wt[i, j], src, dy, dx) for (i, j), (dy, dx) in _taps(w.shape[2:], padding)]
    for n, (wm, buf, dy, dx) in enumerate(terms):
        view = planes.shifted(buf, dy, dx)
        if n > 0:
            out.addmm_(wm, view)
        elif bias is None:
            torch.mm(wm, view, out=out)
        else:
            torch.addmm(bias.to(planes.dtype).view(O, 1).expand(O, planes.Kc), wm, view,
                        out=out)
    return out


# Per-tap GEMMs each read and write the whole output, so with more output rows than
# source rows they are bound by that traffic. Grouping the taps of one kernel row
# (or column) into one GEMM over a stack of shifted copies of the source cuts it:
# done when it moves less than this fraction of the per-tap traffic.
_GROUP_GAIN = 0.8


def _grouped_terms(planes: Planes, src: torch.Tensor, w: torch.Tensor, padding):
    """The GEMM terms ``(weights [O, n·Cs], stacked source, dy, dx)`` of a
    convolution with its taps grouped along the kernel's longer axis, or None when
    grouping would not move less memory (counted in rows of L elements)."""
    O, Cs, kh, kw = w.shape
    ph, pw = padding
    along_w = kw >= kh
    n_in, n_out = (kw, kh) if along_w else (kh, kw)
    per_tap = kh * kw * (Cs + 2 * O) - O
    grouped = n_out * (n_in * Cs + 2 * O) - O + 2 * n_in * Cs    # + building the stack
    if n_in == 1 or grouped >= _GROUP_GAIN * per_tap:
        return None
    # stack rows (m, c) = src row c shifted by the m-th offset along the grouped axis
    shifts = [(j - pw) if along_w else (j - ph) * planes.Wp for j in range(n_in)]
    stack = torch.empty(n_in * Cs, planes.L, dtype=planes.dtype, device=planes.device)
    L = planes.L
    for m, sh in enumerate(shifts):
        rows = stack[m * Cs:(m + 1) * Cs]
        if sh >= 0:
            rows[:, :L - sh].copy_(src[:, sh:])
            rows[:, L - sh:].zero_()
        else:
            rows[:, -sh:].copy_(src[:, :L + sh])
            rows[:, :-sh].zero_()
    terms = []
    for i in range(n_out):
        # weights of kernel row (column) i as [O, (m, c)], matching the stack's rows
        wi = (w[:, :, i, :] if along_w else w[:, :, :, i]).permute(0, 2, 1).reshape(O, -1)
        dy, dx = (i - ph, 0) if along_w else (0, i - pw)
        terms.append((wi.contiguous(), stack, dy, dx))
    return terms


def conv2d_input_add(planes: Planes, out: torch.Tensor, g: torch.Tensor, w: torch.Tensor,
                     padding) -> None:
    """``out [Cs, Kc] += conv2d_input(g, w)``: the gradient reaching the input of
    ``conv2d(·, w)`` from ``g [O, L]`` (its output's gradient, zero outside the
    interior), i.e. the convolution with the kernel mirrored and its channels
    swapped: tap (dy, dx) reads g at (-dy, -dx) through ``w[:, :, i, j]ᵀ``."""
    _check_padding(planes, w.shape[2:], padding)
    wt = w.to(planes.dtype).permute(2, 3, 1, 0).contiguous()     # [kh, kw, Cs, O]
    for (i, j), (dy, dx) in _taps(w.shape[2:], padding):
        out.addmm_(wt[i, j], planes.shifted(g, -dy, -dx))


def conv2d_weight(planes: Planes, g: torch.Tensor, src: torch.Tensor, kernel,
                  padding) -> torch.Tensor:
    """``torch.nn.grad.conv2d_weight``: ``[O, Cs, kh, kw]`` from the output gradient
    ``g [O, L]`` and the input ``src [Cs, L]``, both packed (g zero outside the interior).

    Per tap one batched GEMM over ``S`` chunks of the positions, then a sum over
    the chunks: ``dw[:, :, i, j] = Σ_r g[:, r] · src[:, r + (dy, dx)]``.
    """
    _check_padding(planes, kernel, padding)
    O, Cs = g.shape[0], src.shape[0]
    S, chunk = planes.S, planes.chunk
    # [S, O, chunk] with row stride L: each chunk is a row-major matrix in place.
    a = g[:, planes.M:planes.M + planes.Kc].view(O, S, chunk).transpose(0, 1)
    dw = torch.empty(O, Cs, *kernel, dtype=planes.dtype, device=planes.device)
    for (i, j), (dy, dx) in _taps(kernel, padding):
        # [S, chunk, Cs]: column-major chunks of the shifted source, also in place.
        b = planes.shifted(src, dy, dx).view(Cs, S, chunk).permute(1, 2, 0)
        dw[:, :, i, j] = torch.bmm(a, b).sum(0)
    return dw
