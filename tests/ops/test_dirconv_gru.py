"""The eager directional ConvGRU against an independent, literal reading of SPEC §5."""
import pytest
import torch

from s2v.ops import dirconv_gru, dirconv_gru_ref
from s2v.ops.dirconv_gru import directional_taps, gate_conv_ref
from tests.helpers import rel_err


def literal_directional_conv(inp, weight, bias, k, orientation, d):
    """Conv(y, x) = bias + Σ_s A_s(clamp(y - d·s), x), A_s zero-padded along the other axis."""
    N, C, H, W = inp.shape
    out = bias.view(1, -1, 1, 1).expand(N, -1, H, W).clone()
    if orientation == "w":  # swap the axes and reuse the 'h' reading
        return literal_directional_conv(inp.transpose(2, 3), weight, bias, k, "h", d
                                        ).transpose(2, 3)
    first = 0
    for s in range((k + 1) // 2):
        taps = weight[:, :, first:first + 2 * s + 1]
        first += 2 * s + 1
        A = torch.zeros(N, weight.shape[0], H, W, dtype=inp.dtype)
        for j in range(-s, s + 1):
            shifted = torch.zeros_like(inp)
            lo, hi = max(0, -j), min(W, W - j)
            shifted[..., lo:hi] = inp[..., lo + j:hi + j]
            A += torch.einsum("oc,nchw->nohw", taps[:, :, j + s], shifted)
        for y in range(H):
            out[:, :, y] += A[:, :, min(max(y - d * s, 0), H - 1)]
    return out


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("orientation", ["h", "w"])
@pytest.mark.parametrize("d", [1, -1])
def test_directional_conv_matches_literal_spec(k, orientation, d):
    C_cat, C_out, H, W = 3, 4, 7, 6
    inp = torch.randn(2, C_cat, H, W, dtype=torch.float64)
    weight = torch.randn(C_out, C_cat, directional_taps(k), dtype=torch.float64)
    bias = torch.randn(C_out, dtype=torch.float64)
    ours = gate_conv_ref(inp, weight, bias, k, orientation, d)
    assert rel_err(ours, literal_directional_conv(inp, weight, bias, k, orientation, d)) < 1e-12


def literal_convgru(x, h, weight, bias, conv):
    """SPEC §5 ConvGRU step by step; ``conv(inp, w, b)`` is the gate convolution."""
    out = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        u = torch.sigmoid(conv(torch.cat([xt, h], 1), weight[1], bias[1]))
        r = torch.sigmoid(conv(torch.cat([xt, h], 1), weight[0], bias[0]))
        c = torch.tanh(conv(torch.cat([xt, r * h], 1), weight[2], bias[2]))
        h = (1 - u) * h + u * c
        out.append(h)
    return torch.stack(out, 1)


@pytest.mark.parametrize("orientation,k", [(None, 3), (None, 5), ("h", 3), ("w", 5)])
def test_cell_matches_literal_step(orientation, k):
    B, T, C_in, C_hid, H, W = 2, 3, 3, 4, 5, 6
    x = torch.randn(B, T, C_in, H, W, dtype=torch.float64)
    h0 = torch.randn(B, C_hid, H, W, dtype=torch.float64)
    shape = (3, C_hid, C_in + C_hid) + ((k, k) if orientation is None else
                                        (directional_taps(k),))
    weight = torch.randn(shape, dtype=torch.float64) * 0.3
    bias = torch.randn(3, C_hid, dtype=torch.float64)
    if orientation is None:
        conv = lambda i, w, b: torch.nn.functional.conv2d(i, w, b, padding=k // 2)  # noqa: E731
    else:
        conv = lambda i, w, b: literal_directional_conv(i, w, b, k, orientation, -1)  # noqa
    ours = dirconv_gru_ref(x, h0, weight, bias, orientation, -1)
    assert rel_err(ours, literal_convgru(x, h0, weight, bias, conv)) < 1e-12


def _args(B=1, T=2, C_in=3, C_hid=4, H=5, W=5, k=3, orientation=None, dtype=torch.float32):
    x = torch.randn(B, T, C_in, H, W, dtype=dtype)
    shape = (3, C_hid, C_in + C_hid) + ((k, k) if orientation is None else
                                        (directional_taps(k),))
    return x, torch.randn(shape, dtype=dtype), torch.zeros(3, C_hid, dtype=dtype)


def test_rejects_bad_arguments():
    x, w, b = _args()
    with pytest.raises(ValueError, match="5-D"):
        dirconv_gru(x[0], None, w, b)
    with pytest.raises(ValueError, match="T, H, W >= 1"):
        dirconv_gru(x[:, :0], None, w, b)
    with pytest.raises(TypeError, match="floating"):
        dirconv_gru(x.to(torch.int32), None, w, b)
    with pytest.raises(ValueError, match=r"x: has 2 channels .* expects C_in = 3"):
        dirconv_gru(x[:, :, :2], None, w, b)  # channel mismatch: named on x
    with pytest.raises(ValueError, match="state"):
        dirconv_gru(x, torch.zeros(1, 4, 5, 4), w, b)
    with pytest.raises(TypeError, match="dtype"):
        dirconv_gru(x, None, w.double(), b)
    with pytest.raises(ValueError, match="direction"):
        dirconv_gru(x, None, w, b, direction=0)
    with pytest.raises(ValueError, match="orientation"):
        dirconv_gru(x, None, w, b, orientation="x")
    with pytest.raises(ValueError, match="backend"):
        dirconv_gru(x, None, w, b, backend="fast")
