"""The fused layers under torch.autocast (what `--precision bf16` runs).

Inside autocast a fused op runs in bfloat16 with autocast off inside and hands
back the input's dtype (s2v.ops._autocast). Checked on the CPU kernels: the
result equals the same op run by hand on bfloat16-cast inputs and weights, it is
close to the eager layer under the same autocast, and the backward reaches the
float32 parameters.
"""
import copy

import pytest
import torch

from s2v.nn import DilatedResidualGRU, DirConvGRU, VideoPredictor
from s2v.ops.dilated_gru import dilated_gru_backends

pytestmark = pytest.mark.skipif(dilated_gru_backends.why_unavailable("cpu") is not None,
                                reason="s2v._C (the cpu backend) is not built")


def _layers():
    torch.manual_seed(0)
    return [
        ("dilated_gru", DilatedResidualGRU(7, 3, 2, backend="cpu"), (2, 11, 7)),
        ("dilated_gru_feedback", DilatedResidualGRU(5, 2, 2, feedback=True, backend="cpu"),
         (1, 6, 5)),
        ("video_predictor", VideoPredictor(5, 3, directional=True, backend="cpu"),
         (2, 3, 5, 7, 6)),
        ("dirconv_gru", DirConvGRU(3, 4, 5, orientation="w", backend="cpu"), (1, 4, 3, 6, 5)),
    ]


def _run(layer, x):
    out = layer(x)[0]
    return out


@pytest.mark.parametrize("name, layer, shape", _layers(), ids=[n for n, _, _ in _layers()])
def test_fused_layer_under_cpu_autocast(name, layer, shape):
    torch.manual_seed(1)
    x = torch.randn(*shape, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = _run(layer, x)
    assert y.dtype == torch.float32  # x's dtype, as the eager layer gives

    # Exactly the op on bfloat16 inputs and weights.
    by_hand = copy.deepcopy(layer).to(torch.bfloat16)
    with torch.no_grad():
        y16 = _run(by_hand, x.detach().to(torch.bfloat16))
    assert torch.equal(y.detach(), y16.float())

    # Close to the eager layer under the same autocast (both round to bf16).
    eager = copy.deepcopy(layer)
    eager.backend = "eager"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_ref = _run(eager, x)
    err = ((y - y_ref).abs().max() / y_ref.abs().max()).item()
    assert err < 5e-2, err

    # The backward reaches x and every float32 parameter.
    y.float().square().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32
    assert torch.isfinite(x.grad).all()
    for pname, p in layer.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32, pname
        assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name, layer, shape", _layers(), ids=[n for n, _, _ in _layers()])
def test_bf16_input_from_an_earlier_autocast_op(name, layer, shape):
    """Inside autocast, x may arrive in bfloat16 (made by an earlier autocast op) while
    the parameters stay float32: the layer takes it on both backends, as autocast's
    own ops do; outside autocast the dtype mismatch is still an error."""
    torch.manual_seed(2)
    x = torch.randn(*shape).to(torch.bfloat16).requires_grad_(True)
    eager = copy.deepcopy(layer)
    eager.backend = "eager"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = _run(layer, x)
        y_ref = _run(eager, x)
    assert y.dtype == y_ref.dtype == torch.bfloat16
    err = ((y.float() - y_ref.float()).abs().max() / y_ref.float().abs().max()).item()
    assert err < 5e-2, err
    y.float().square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad.float()).all()
    assert all(p.grad is not None and p.grad.dtype == torch.float32
               for p in layer.parameters())
    with pytest.raises(TypeError, match="dtype"):
        _run(layer, x.detach())
