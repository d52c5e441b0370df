"""The drop-in layers on the 'cpu' backend against 'eager' over seeded random
configurations: odd channel counts and frame sizes (1 included), both kernel sizes,
either variant and orientation, carried states, non-contiguous inputs, float32 and
float64. Each case runs two calls (the second from the first's returned state) and
compares both outputs, the input and state gradients and every parameter gradient.

The fixed-shape tests of each op name the sizes the issues list; these cover the
combinations nobody listed (e.g. a 1-row frame with k = 5 and a carried state).
"""
import random

import pytest
import torch

from s2v.nn import DilatedResidualGRU, DirConvGRU, VideoPredictor
from s2v.ops.dilated_gru import dilated_gru_backends
from s2v.ops.video_predictor import video_predictor_backends
from tests.helpers import rel_err

pytestmark = pytest.mark.skipif(
    any(r.why_unavailable("cpu") is not None
        for r in (video_predictor_backends, dilated_gru_backends)),
    reason="the C++ extension s2v._C is not built")

TOL = {torch.float32: 1e-4, torch.float64: 1e-9}
N_CASES = 16


def _perturbed_pair(make, dtype, rnd_seed):
    """Two copies (eager, cpu) of a layer with equal, nonzero-bias parameters."""
    torch.manual_seed(rnd_seed)
    eager, fused = make("eager").to(dtype), make("cpu").to(dtype)
    with torch.no_grad():
        for p, q in zip(eager.parameters(), fused.parameters()):
            p.add_(0.1 * torch.randn_like(p))
            q.copy_(p)
    return eager, fused


def _maybe_noncontiguous(rnd, shape, dtype):
    """A [.., C, H, W]-shaped tensor, half the time a permuted (non-contiguous) view."""
    if rnd.random() < 0.5:
        return torch.randn(*shape, dtype=dtype)
    t = torch.randn(*shape[:-3], shape[-1], shape[-2], shape[-3], dtype=dtype)
    return t.permute(*range(len(shape) - 3), -1, -2, -3)


def _run_twice(layer, x, state, call):
    """Outputs and gradients of two chained calls (the second from the returned state)."""
    x = x.detach().clone().requires_grad_(True)
    if state is not None:
        state = tuple(s.detach().clone().requires_grad_(True) for s in state)
    y1, carried = call(layer, x, state)
    y2, _ = call(layer, 0.5 * x, carried)
    weight = torch.linspace(-1, 1, y1.numel(), dtype=y1.dtype).view_as(y1)
    ((y1 * weight).sum() + (y2 ** 2).sum()).backward()
    grads = [x.grad] + ([] if state is None else [s.grad for s in state])
    return [y1.detach(), y2.detach()] + grads + [p.grad for p in layer.parameters()]


def _compare(got, want, dtype, what):
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        assert a is not None and b is not None, f"{what}: output {i} missing"
        assert a.shape == b.shape, f"{what}: output {i} shape {a.shape} vs {b.shape}"
        err = rel_err(a, b)
        assert err <= TOL[dtype], f"{what}: output {i} relative error {err:.2e}"


@pytest.mark.parametrize("seed", range(N_CASES))
def test_video_predictor_random_config(seed):
    rnd = random.Random(seed)
    dtype = rnd.choice([torch.float32, torch.float64])
    B, T, C = rnd.randint(1, 3), rnd.randint(1, 4), rnd.choice([1, 2, 3, 5, 8])
    H, W, k = rnd.randint(1, 10), rnd.randint(1, 10), rnd.choice([3, 5])
    directional = rnd.random() < 0.7
    what = f"VideoPredictor(C={C}, k={k}, dir={directional}) x[{B},{T},{C},{H},{W}] {dtype}"
    eager, fused = _perturbed_pair(lambda b: VideoPredictor(C, k, directional, backend=b),
                                   dtype, seed)
    x = _maybe_noncontiguous(rnd, (B, T, C, H, W), dtype)
    state = None
    if rnd.random() < 0.5:
        flows, ch = (5, C) if directional else (1, C + 1)
        state = tuple(0.5 * torch.randn(B, ch, H, W, dtype=dtype) for _ in range(flows))

    def call(layer, x, s):
        return layer(x, s)
    _compare(_run_twice(fused, x, state, call), _run_twice(eager, x, state, call), dtype, what)


@pytest.mark.parametrize("seed", range(N_CASES))
def test_dirconv_gru_random_config(seed):
    rnd = random.Random(1000 + seed)
    dtype = rnd.choice([torch.float32, torch.float64])
    B, T = rnd.randint(1, 3), rnd.randint(1, 4)
    C, Ch = rnd.choice([1, 2, 3, 6]), rnd.choice([1, 2, 5, 7])
    H, W = rnd.randint(1, 10), rnd.randint(1, 10)
    k, orientation, direction = rnd.choice([1, 3, 5]), rnd.choice([None, "h", "w"]), \
        rnd.choice([1, -1])
    what = (f"DirConvGRU({C}, {Ch}, k={k}, {orientation!r}, d={direction}) "
            f"x[{B},{T},{C},{H},{W}] {dtype}")
    eager, fused = _perturbed_pair(lambda b: DirConvGRU(C, Ch, k, orientation, backend=b),
                                   dtype, 1000 + seed)
    x = _maybe_noncontiguous(rnd, (B, T, C, H, W), dtype)
    state = (0.5 * torch.randn(B, Ch, H, W, dtype=dtype),) if rnd.random() < 0.5 else None

    def call(layer, x, s):
        h_seq, _ = layer(x, None if s is None else s[0], direction)
        # The returned state is detached; carry the live last frame so its gradient
        # reaches the first call too.
        return h_seq, (h_seq[:, -1],)
    _compare(_run_twice(fused, x, state, call), _run_twice(eager, x, state, call), dtype, what)


@pytest.mark.parametrize("seed", range(N_CASES))
def test_dilated_gru_random_config(seed):
    rnd = random.Random(2000 + seed)
    dtype = rnd.choice([torch.float32, torch.float64])
    B, T, D = rnd.randint(1, 3), rnd.choice([1, 2, 3, 7, 20, 33]), rnd.choice([1, 2, 5, 17, 33])
    L, dilation, feedback = rnd.randint(1, 5), rnd.choice([1, 2, 3]), rnd.random() < 0.3
    if dilation ** (L - 1) > 64:
        L = 3
    what = f"DilatedResidualGRU({D}, L={L}, dilation={dilation}, feedback={feedback}) " \
           f"x[{B},{T},{D}] {dtype}"
    eager, fused = _perturbed_pair(
        lambda b: DilatedResidualGRU(D, L, dilation, feedback, backend=b), dtype, 2000 + seed)
    if rnd.random() < 0.5:
        x = torch.randn(B, T, D, dtype=dtype)
    else:
        x = torch.randn(B, D, T, dtype=dtype).transpose(1, 2)  # non-contiguous
    state = None
    if rnd.random() < 0.5:
        state = tuple(0.5 * torch.randn(B, dilation ** layer, D, dtype=dtype)
                      for layer in range(L))

    def call(layer, x, s):
        return layer(x, s)
    _compare(_run_twice(fused, x, state, call), _run_twice(eager, x, state, call), dtype, what)
