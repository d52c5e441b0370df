"""Layer contracts: state carry-over, batch independence, odd sizes, T = 1, bad input."""
import pytest
import torch

from s2v.nn import DilatedResidualGRU, DirConvGRU, VideoPredictor
from s2v.ops import BackendUnavailableError
from tests.helpers import rel_err


def _randomise(module):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)
    return module


@pytest.mark.parametrize("directional", [True, False], ids=["dir", "basic"])
@pytest.mark.parametrize("k", [3, 5])
def test_video_predictor_two_calls_equal_one_long_call(directional, k):
    vp = _randomise(VideoPredictor(3, k, directional))
    x, xh = torch.randn(2, 7, 3, 6, 5), torch.randn(2, 7, 3, 6, 5)
    y_long, s_long = vp(x, hallucinated=xh)
    y1, s = vp(x[:, :3], hallucinated=xh[:, :3])
    y2, s = vp(x[:, 3:], s, hallucinated=xh[:, 3:])
    assert rel_err(torch.cat([y1, y2], 1), y_long) < 1e-6
    assert len(s) == (5 if directional else 1)
    for a, b in zip(s, s_long):
        assert rel_err(a, b) < 1e-6 and not a.requires_grad


@pytest.mark.parametrize("orientation", [None, "h", "w"])
def test_dirconv_gru_two_calls_equal_one_long_call(orientation):
    cell = _randomise(DirConvGRU(2, 3, 3, orientation))
    x = torch.randn(1, 5, 2, 4, 6)
    h_long, s_long = cell(x, direction=-1)
    h1, s = cell(x[:, :2], direction=-1)
    h2, s = cell(x[:, 2:], s, direction=-1)
    assert rel_err(torch.cat([h1, h2], 1), h_long) < 1e-6
    assert rel_err(s, s_long) < 1e-6 and rel_err(s, h_long[:, -1]) == 0


def test_video_predictor_batch_equals_independent_sequences():
    vp = _randomise(VideoPredictor(4, 3))
    x = torch.randn(3, 4, 4, 5, 7)
    state = tuple(torch.randn(3, 4, 5, 7) for _ in range(5))
    y, s = vp(x, state)
    for b in range(3):
        yb, sb = vp(x[b:b + 1], tuple(t[b:b + 1] for t in state))
        assert rel_err(y[b], yb[0]) < 1e-6
        for a, c in zip(s, sb):
            assert rel_err(a[b], c[0]) < 1e-6


def test_odd_sizes_forward_backward_and_default_hallucinated():
    vp = _randomise(VideoPredictor(5, 5))
    x = torch.randn(2, 3, 5, 13, 11, requires_grad=True)
    y, s = vp(x)
    y_explicit, _ = vp(x, hallucinated=x)
    assert y.shape == (2, 3, 5, 13, 11) and torch.equal(y, y_explicit)
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for p in vp.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_single_frame_and_one_pixel():
    vp = _randomise(VideoPredictor(2, 3))
    y, s = vp(torch.randn(1, 1, 2, 1, 1))
    assert y.shape == (1, 1, 2, 1, 1) and s[0].shape == (1, 2, 1, 1)
    cell = DirConvGRU(2, 3, 5, "w")
    h, s = cell(torch.randn(2, 1, 2, 3, 1))
    assert h.shape == (2, 1, 3, 3, 1) and torch.equal(s, h[:, 0])


def test_state_dict_layout_is_backend_independent():
    keys = set(VideoPredictor(4, backend="eager").state_dict())
    assert keys == set(VideoPredictor(4, backend="auto").state_dict())
    assert keys == {f"cells.{i}.{n}" for i in range(3) for n in ("weight", "bias")} | {
        "blend_weight", "blend_bias"}
    assert set(VideoPredictor(4, directional=False).state_dict()) == {"cells.0.weight",
                                                                      "cells.0.bias"}


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="odd"):
        VideoPredictor(4, kernel_size=4)
    with pytest.raises(ValueError, match="odd"):
        DirConvGRU(2, 3, 2)
    with pytest.raises(ValueError, match="expected one of"):
        VideoPredictor(4, backend="fastest")
    with pytest.raises(TypeError, match="int"):
        VideoPredictor(4.0)
    vp = VideoPredictor(4)
    with pytest.raises(ValueError, match="5-D"):
        vp(torch.randn(3, 4, 5, 5))
    with pytest.raises(ValueError, match="weight"):
        vp(torch.randn(1, 2, 3, 5, 5))  # 3 channels into a 4-channel layer
    with pytest.raises(ValueError, match="T, H, W >= 1"):
        vp(torch.randn(1, 0, 4, 5, 5))
    with pytest.raises(TypeError, match="floating"):
        vp(torch.ones(1, 2, 4, 5, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="tuple of 5"):
        vp(torch.randn(1, 2, 4, 5, 5), (torch.zeros(1, 4, 5, 5),))
    with pytest.raises(ValueError, match=r"state\[2\]"):
        vp(torch.randn(1, 2, 4, 5, 5), tuple(torch.zeros(1, 4, 5, 5 if i != 2 else 6)
                                             for i in range(5)))
    with pytest.raises(ValueError, match="hallucinated"):
        vp(torch.randn(1, 2, 4, 5, 5), hallucinated=torch.randn(1, 3, 4, 5, 5))


@pytest.mark.parametrize("backend", ["cpu", "triton", "cuda"])
def test_unimplemented_backend_says_why_and_how(backend):
    if backend == "cuda":  # the video predictor's GPU kernels are Triton, not CUDA C++
        with pytest.raises(BackendUnavailableError, match="backend='eager' or 'auto'"):
            VideoPredictor(4, backend=backend)
    elif backend == "cpu":  # C++ in s2v._C
        from s2v._extension import build_info
        if build_info()["available"]:
            assert VideoPredictor(4, backend="cpu").backend == "cpu"
            assert DirConvGRU(4, 4, backend="cpu").backend == "cpu"
        else:
            with pytest.raises(BackendUnavailableError, match="pip install"):
                VideoPredictor(4, backend="cpu")
    else:
        from s2v.kernels._triton_support import triton_available
        if triton_available():
            assert VideoPredictor(4, backend="triton").backend == "triton"
            # On CPU tensors: where a GPU exists, move there; where none does, say so.
            match = "cuda tensors" if torch.cuda.is_available() else "none is visible"
            with pytest.raises(BackendUnavailableError, match=match):
                VideoPredictor(4, backend="triton")(torch.randn(1, 1, 4, 3, 3))
        else:
            with pytest.raises(BackendUnavailableError, match="Triton is not installed"):
                VideoPredictor(4, backend="triton")
    if backend == "triton":
        with pytest.raises(BackendUnavailableError, match="dilated_gru"):
            DilatedResidualGRU(4, backend=backend)


def test_dilated_gru_fused_backends_say_why_when_unavailable():
    # 'cpu' needs s2v._C; 'cuda' also needs its CUDA part and a GPU.
    from s2v._extension import build_info
    info = build_info()
    if info["available"]:
        assert DilatedResidualGRU(4, backend="cpu").backend == "cpu"
    else:
        with pytest.raises(BackendUnavailableError, match="pip install"):
            DilatedResidualGRU(4, backend="cpu")
    if not (info["with_cuda"] and torch.cuda.is_available()):
        with pytest.raises(BackendUnavailableError, match="CUDA|cuda"):
            DilatedResidualGRU(4, backend="cuda")


def test_video_predictor_cells_show_the_layers_backend():
    """The cells only hold weights; their backend follows the layer's, also when it
    is changed later, so repr does not show a backend that never runs."""
    import copy

    from s2v.nn import VideoPredictor

    vp = VideoPredictor(3, backend="eager")
    assert {c.backend for c in vp.cells} == {"eager"}
    vp.backend = "auto"
    assert {c.backend for c in vp.cells} == {"auto"}
    assert copy.deepcopy(vp).backend == "auto"
    with pytest.raises(ValueError, match="backend"):
        vp.backend = "fast"


def test_cells_validate_backend_direction_and_flags():
    """Backends are checked when set (not at the next forward); direction is the int
    ±1 on every backend; flags are booleans; an absurd dilation span is refused
    before any state is allocated."""
    gru = DilatedResidualGRU(4)
    with pytest.raises(ValueError, match="backend"):
        gru.backend = "bogus"
    cell = DirConvGRU(2, 3, 3, "h")
    with pytest.raises(ValueError, match="backend"):
        cell.backend = "bogus"
    x = torch.randn(1, 2, 2, 5, 5)
    for direction in (-1.0, True, 2):
        with pytest.raises(ValueError, match="direction"):
            cell(x, direction=direction)
    with pytest.raises(TypeError, match="feedback"):
        DilatedResidualGRU(4, feedback="no")
    with pytest.raises(TypeError, match="directional"):
        VideoPredictor(4, directional="no")
    with pytest.raises(ValueError, match="steps back"):
        DilatedResidualGRU(4, num_layers=8, dilation=100)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("layer", ["vp", "cell", "dgru"])
def test_function_transforms_and_states_edited_in_place(layer):
    """torch.func's differentiating transforms run eager under 'auto' and are refused by
    a named fused backend (they cannot see the custom ops' autograd: jvp gave zero
    tangents); vmap runs fused. Returned states are copies: editing one in place
    changes neither the output nor the backward."""
    from s2v.ops.dilated_gru import dilated_gru_backends

    if dilated_gru_backends.why_unavailable("cpu") is not None:
        pytest.skip("the C++ extension s2v._C is not built")

    def make(backend):
        torch.manual_seed(0)
        if layer == "vp":
            return VideoPredictor(3, backend=backend), torch.randn(1, 2, 3, 5, 4)
        if layer == "cell":
            return DirConvGRU(2, 3, 3, "h", backend=backend), torch.randn(1, 2, 2, 5, 4)
        return DilatedResidualGRU(4, backend=backend), torch.randn(1, 3, 4)

    def first(out):
        return out[0]

    (eager, x), (auto, _), (fused, _) = make("eager"), make("auto"), make("cpu")
    tangent = torch.ones_like(x)
    want = torch.func.jvp(lambda v: first(eager(v)), (x,), (tangent,))[1]
    assert want.abs().sum() > 0
    got = torch.func.jvp(lambda v: first(auto(v)), (x,), (tangent,))[1]
    assert torch.allclose(got, want, atol=1e-6)
    grad_auto = torch.func.grad(lambda v: first(auto(v)).sum())(x)
    assert torch.allclose(grad_auto, torch.func.grad(lambda v: first(eager(v)).sum())(x),
                          atol=1e-6)
    for transform in (lambda f: torch.func.jvp(f, (x,), (tangent,)),
                      lambda f: torch.func.grad(lambda v: f(v).sum())(x)):
        with pytest.raises(NotImplementedError, match="torch.func"):
            transform(lambda v: first(fused(v)))
    batched = torch.func.vmap(lambda v: first(fused(v[None])))(x)
    assert torch.allclose(batched[:, 0], first(eager(x)), atol=1e-5)

    xg = x.clone().requires_grad_(True)
    y, state = fused(xg)
    kept = y.detach().clone()
    for s in (state if isinstance(state, tuple) else (state,)):
        s.zero_()
    assert torch.equal(y.detach(), kept)
    y.sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


def test_video_predictor_cells_take_the_layers_backend_only():
    vp = VideoPredictor(3, backend="eager")
    with pytest.raises(AttributeError, match="set the VideoPredictor's backend"):
        vp.cells[0].backend = "cpu"
    vp.backend = "auto"
    assert all(cell.backend == "auto" for cell in vp.cells)
    import copy
    assert copy.deepcopy(vp).cells[1].backend == "auto"
