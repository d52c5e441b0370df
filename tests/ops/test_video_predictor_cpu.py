"""The C++ CPU kernels of the video predictor and of the single-cell dirconv_gru op
(backend='cpu') against the eager reference."""
import glob
import importlib
import os

import pytest
import torch

from s2v._extension import build_info
from s2v.ops import dirconv_gru, video_predictor
from s2v.ops.dirconv_gru import cpu_kernels_unavailable, directional_taps, dirconv_gru_backends
from s2v.ops.video_predictor import video_predictor_backends
from tests.helpers import rel_err

# The module (s2v.ops re-exports the function video_predictor under its name).
vp_ops = importlib.import_module("s2v.ops.video_predictor")

pytestmark = pytest.mark.skipif(cpu_kernels_unavailable() is not None,
                                reason=f"CPU kernels unavailable: {cpu_kernels_unavailable()}")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FP32_TOL = 1e-4  # SPEC §10, fused kernels in float32
BF16_TOL = 2e-2


def make_layer(C, k, directional, dtype=torch.float32):
    """Random weights in the layout of s2v.ops (gates r, u, o), scaled so the gates
    are neither saturated nor linear."""
    C_hid = C if directional else C + 1
    scale = 1.0 / (2 * C) ** 0.5
    cells = [(k, k)] + ([(directional_taps(k),)] * 2 if directional else [])
    weights = [torch.randn(3, C_hid, C + C_hid, *taps, dtype=dtype) * scale / len(taps)
               for taps in cells]
    biases = [torch.randn(3, C_hid, dtype=dtype) * 0.5 for _ in cells]
    blend_w = torch.randn(C + 1, 5 * C_hid, dtype=dtype) / (5 * C_hid) ** 0.5 \
        if directional else None
    blend_b = torch.randn(C + 1, dtype=dtype) * 0.5 if directional else None
    return weights, biases, blend_w, blend_b


def leaves(*tensors):
    return [None if t is None else t.detach().clone().requires_grad_() for t in tensors]


def run_layer(backend, x, xh, state, weights, biases, blend_w, blend_b, dy, dstate):
    """Forward, then the gradients of Σ y·dy + Σ state·dstate w.r.t. every input."""
    n = len(weights)
    args = leaves(x, xh, *state, *weights, *biases, blend_w, blend_b)
    x_, xh_ = args[:2]
    state_ = args[2:2 + len(state)]
    w_ = args[2 + len(state):2 + len(state) + n]
    b_ = args[2 + len(state) + n:2 + len(state) + 2 * n]
    bw_, bb_ = args[-2:]
    y, new_state = video_predictor(x_, xh_, tuple(state_), w_, b_, bw_, bb_, backend=backend)
    loss = (y * dy).sum() + sum((s * d).sum() for s, d in zip(new_state, dstate))
    present = [a for a in args if a is not None]
    grads = torch.autograd.grad(loss, present)
    return y, new_state, grads


CASES = [
    # variant, C, H, W, k, T, B
    pytest.param("dir", 5, 13, 11, 3, 4, 3, id="dir-c5-13x11-k3-t4-b3"),
    pytest.param("dir", 5, 16, 16, 5, 1, 1, id="dir-c5-16x16-k5-t1-b1"),
    pytest.param("dir", 32, 16, 16, 3, 4, 1, id="dir-c32-16x16-k3-t4-b1"),
    pytest.param("dir", 32, 13, 11, 5, 1, 3, id="dir-c32-13x11-k5-t1-b3"),
    pytest.param("basic", 5, 13, 11, 5, 4, 1, id="basic-c5-13x11-k5-t4-b1"),
    pytest.param("basic", 32, 16, 16, 3, 1, 3, id="basic-c32-16x16-k3-t1-b3"),
    # every pixel within k/2 of an edge (on the per-tap GEMM path: gathers only)
    pytest.param("dir", 5, 4, 3, 5, 2, 2, id="dir-c5-4x3-k5-t2-b2"),
]


def check_layer_against_eager(variant, C, H, W, k, T, B):
    """Forward, returned states and every gradient of the cpu backend within
    FP32_TOL of eager on random inputs."""
    directional = variant == "dir"
    weights, biases, blend_w, blend_b = make_layer(C, k, directional)
    C_hid = C if directional else C + 1
    flows = 5 if directional else 1
    x, xh = torch.randn(B, T, C, H, W), torch.randn(B, T, C, H, W)
    state = [torch.randn(B, C_hid, H, W) * 0.5 for _ in range(flows)]
    dy = torch.randn(B, T, C, H, W)
    dstate = [torch.randn(B, C_hid, H, W) for _ in range(flows)]
    args = (x, xh, state, weights, biases, blend_w, blend_b, dy, dstate)
    y_ref, s_ref, g_ref = run_layer("eager", *args)
    y, s, g = run_layer("cpu", *args)
    assert rel_err(y, y_ref) < FP32_TOL
    for a, b in zip(s, s_ref):
        assert rel_err(a, b) < FP32_TOL
    # x, xh, every state, every weight and bias, the blend parameters
    assert len(g) == len(g_ref) == 2 + flows + 2 * len(weights) + (2 if directional else 0)
    for i, (a, b) in enumerate(zip(g, g_ref)):
        assert rel_err(a, b) < FP32_TOL, f"gradient of input {i}"


@pytest.mark.parametrize("gates", ["saved", "recomputed"])
@pytest.mark.parametrize("variant,C,H,W,k,T,B", CASES)
def test_layer_forward_backward_match_eager(variant, C, H, W, k, T, B, gates, monkeypatch):
    # The forward keeps its gates for the backward unless they exceed the budget;
    # a zero budget forces the backward to recompute them.
    if gates == "recomputed":
        monkeypatch.setattr(vp_ops, "SAVED_GATES_MAX_BYTES", 0)
    check_layer_against_eager(variant, C, H, W, k, T, B)


TAP_CASES = [
    # variant, C, H, W, k, T, B: channel counts that give every column-panel
    # shape of the AVX-512 tap kernel (O = 2·C_hid and C_hid, up to 64 columns a
    # panel, tails of 1-15), frames whose pixel count is not a multiple of its
    # 6-row tiles or 48-row blocks, and more than 256 pixels (the weight
    # gradient's chunk).
    pytest.param("dir", 1, 9, 10, 3, 2, 1, id="dir-c1-9x10-k3"),
    pytest.param("dir", 40, 12, 9, 3, 2, 1, id="dir-c40-12x9-k3"),
    pytest.param("basic", 33, 10, 13, 5, 2, 2, id="basic-c33-10x13-k5"),
    pytest.param("dir", 7, 23, 17, 5, 3, 1, id="dir-c7-23x17-k5"),
    # wide enough for the kernel to split the input channels into passes
    pytest.param("basic", 70, 7, 8, 3, 1, 1, id="basic-c70-7x8-k3"),
]


@pytest.mark.parametrize("taps", ["fused", "gemm"])
@pytest.mark.parametrize("variant,C,H,W,k,T,B", TAP_CASES)
def test_both_tap_paths_match_eager(variant, C, H, W, k, T, B, taps, monkeypatch):
    """S2V_VP_CPU_TAPS=gemm runs one library GEMM per tap (the path of CPUs without
    AVX-512); otherwise the AVX-512 register-blocked kernel runs where the CPU has
    it. Forward and every gradient against eager, for both."""
    if taps == "gemm":
        monkeypatch.setenv("S2V_VP_CPU_TAPS", "gemm")
    torch.manual_seed(C * 1000 + H * 10 + k)
    check_layer_against_eager(variant, C, H, W, k, T, B)


@pytest.mark.skipif(not build_info().get("cpu_fused_taps"),
                    reason="this CPU runs the per-tap GEMM path (no AVX-512), whose library "
                           "GEMMs promise no fixed summation order across thread counts")
def test_fused_taps_are_deterministic_across_thread_counts():
    """Each output row of the AVX-512 tap kernel sums in a fixed order whatever the
    thread split (resumed training runs rely on bit-identical steps)."""
    weights, biases, blend_w, blend_b = make_layer(6, 3, True)
    x, xh = torch.randn(1, 2, 6, 17, 15), torch.randn(1, 2, 6, 17, 15)
    state = [torch.randn(1, 6, 17, 15) for _ in range(5)]
    dy = torch.randn(1, 2, 6, 17, 15)
    dstate = [torch.zeros(1, 6, 17, 15) for _ in range(5)]
    args = (x, xh, state, weights, biases, blend_w, blend_b, dy, dstate)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        y1, _, g1 = run_layer("cpu", *args)
        torch.set_num_threads(2)
        y2, _, g2 = run_layer("cpu", *args)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(y1, y2)
    for a, b in zip(g1, g2):
        assert torch.equal(a, b)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("orientation,direction",
                         [(None, 1), ("h", 1), ("h", -1), ("w", 1), ("w", -1)],
                         ids=["square", "h+", "h-", "w+", "w-"])
def test_single_cell_matches_eager(orientation, direction, k):
    B, T, C_in, C_hid, H, W = 2, 3, 4, 6, 9, 7
    shape = (3, C_hid, C_in + C_hid) + ((k, k) if orientation is None else
                                        (directional_taps(k),))
    x = torch.randn(B, T, C_in, H, W)
    h0 = torch.randn(B, C_hid, H, W)
    w = torch.randn(shape) * 0.3
    b = torch.randn(3, C_hid)
    dh = torch.randn(B, T, C_hid, H, W)
    out = {}
    for backend in ("eager", "cpu"):
        x_, h0_, w_, b_ = leaves(x, h0, w, b)
        h = dirconv_gru(x_, h0_, w_, b_, orientation, direction, backend=backend)
        out[backend] = (h, *torch.autograd.grad((h * dh).sum(), (x_, h0_, w_, b_)))
    for a, ref in zip(out["cpu"], out["eager"]):
        assert rel_err(a, ref) < FP32_TOL


def test_state_carried_across_two_calls():
    """Call 2 starts from call 1's state; the gradient flows back through it."""
    C, H, W, k = 5, 8, 7, 3
    weights, biases, blend_w, blend_b = make_layer(C, k, True)
    x1, x2 = torch.randn(2, 3, C, H, W), torch.randn(2, 2, C, H, W)
    results = {}
    for backend in ("eager", "cpu"):
        x1_, x2_, *params = leaves(x1, x2, *weights, *biases, blend_w, blend_b)
        w_, b_, (bw, bb) = params[:3], params[3:6], params[6:]
        y1, s1 = video_predictor(x1_, None, None, w_, b_, bw, bb, backend=backend)
        y2, s2 = video_predictor(x2_, None, s1, w_, b_, bw, bb, backend=backend)
        loss = y1.square().sum() + (y2 * y2.flip(-1)).sum() + s2[3].sum()
        results[backend] = (y2, *s2, *torch.autograd.grad(loss, [x1_, x2_, *params]))
    for a, ref in zip(results["cpu"], results["eager"]):
        assert rel_err(a, ref) < FP32_TOL


@pytest.mark.parametrize("reaches", ["output", "states"])
def test_gradient_from_the_output_alone_or_the_states_alone(reaches):
    """Outputs that get no gradient reach the backward as None (not materialised
    zeros): the kernel must treat a missing dy or state gradient as zero."""
    C, H, W, k = 4, 7, 6, 3
    weights, biases, blend_w, blend_b = make_layer(C, k, True)
    x = torch.randn(2, 3, C, H, W)
    results = {}
    for backend in ("eager", "cpu"):
        x_, *params = leaves(x, *weights, *biases, blend_w, blend_b)
        w_, b_, (bw, bb) = params[:3], params[3:6], params[6:]
        y, s = video_predictor(x_, None, None, w_, b_, bw, bb, backend=backend)
        loss = (y * y.flip(-2)).sum() if reaches == "output" else s[1].sum() + s[4].square().sum()
        grads = torch.autograd.grad(loss, [x_, *params], allow_unused=True)
        results[backend] = [torch.zeros(()) if g is None else g for g in grads]
    for a, ref in zip(results["cpu"], results["eager"]):
        assert rel_err(a, ref) < FP32_TOL


@pytest.mark.parametrize("directional", [True, False], ids=["dir", "basic"])
def test_bfloat16_within_2e2_of_float32_eager(directional):
    C, H, W, k, T, B = 6, 10, 9, 3, 3, 2
    weights, biases, blend_w, blend_b = make_layer(C, k, directional)
    x = torch.randn(B, T, C, H, W)
    dy = torch.randn(B, T, C, H, W)
    params = [t for t in (*weights, *biases, blend_w, blend_b) if t is not None]
    out = {}
    for backend, dtype in (("eager", torch.float32), ("cpu", torch.bfloat16)):
        x_, *p_ = leaves(x.to(dtype), *(t.to(dtype) for t in params))
        n = len(weights)
        bw, bb = (p_[2 * n:] if directional else (None, None))
        y, s = video_predictor(x_, None, None, p_[:n], p_[n:2 * n], bw, bb, backend=backend)
        assert y.dtype == dtype and s[0].dtype == dtype
        out[backend] = (y, *s, *torch.autograd.grad((y * dy.to(dtype)).sum(), [x_, *p_]))
    for a, ref in zip(out["cpu"], out["eager"]):
        assert rel_err(a.float(), ref) < BF16_TOL


def test_float64_gradcheck():
    C, H, W, k, T, B = 2, 4, 3, 3, 2, 1
    weights, biases, blend_w, blend_b = make_layer(C, k, True, torch.float64)
    x, xh = torch.randn(B, T, C, H, W, dtype=torch.float64), torch.randn(B, T, C, H, W,
                                                                          dtype=torch.float64)
    state = [torch.randn(B, C, H, W, dtype=torch.float64) * 0.5 for _ in range(5)]
    inputs = leaves(x, xh, *state, *weights, *biases, blend_w, blend_b)

    def f(x, xh, s0, s1, s2, s3, s4, w0, w1, w2, b0, b1, b2, bw, bb):
        y, s = video_predictor(x, xh, (s0, s1, s2, s3, s4), (w0, w1, w2), (b0, b1, b2), bw, bb,
                               backend="cpu")
        return y, *s

    # fast_mode checks J·v for random v instead of building the whole Jacobian.
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, fast_mode=True)


@pytest.mark.parametrize("orientation", [None, "w"])
def test_float64_gradcheck_single_cell(orientation):
    k, C_in, C_hid = 3, 2, 3
    shape = (3, C_hid, C_in + C_hid) + ((k, k) if orientation is None else
                                        (directional_taps(k),))
    inputs = leaves(torch.randn(1, 2, C_in, 4, 3, dtype=torch.float64),
                    torch.randn(1, C_hid, 4, 3, dtype=torch.float64),
                    torch.randn(shape, dtype=torch.float64) * 0.4,
                    torch.randn(3, C_hid, dtype=torch.float64))
    assert torch.autograd.gradcheck(
        lambda x, h0, w, b: dirconv_gru(x, h0, w, b, orientation, -1, backend="cpu"), inputs,
        fast_mode=True)


def test_custom_ops_pass_opcheck():
    """Schema, fake (shape) implementations and autograd registration of the custom ops."""
    weights, biases, blend_w, blend_b = make_layer(3, 3, True)
    x = torch.randn(1, 2, 3, 5, 4)
    h0 = torch.randn(5, 1, 3, 5, 4)
    args = (x, x.clone(), h0, weights[0], biases[0], weights[1], biases[1], weights[2],
            biases[2], blend_w, blend_b)
    for save_gates in (False, True):
        torch.library.opcheck(torch.ops.s2v.video_predictor_fwd.default,
                              (*(a.requires_grad_() for a in args), save_gates))
    w = torch.randn(3, 4, 7, directional_taps(3)) * 0.3
    torch.library.opcheck(torch.ops.s2v.dirconv_gru_fwd.default,
                          (x.requires_grad_(), torch.randn(1, 4, 5, 4), w, torch.randn(3, 4), 1,
                           -1))


def test_torch_compile_fullgraph():
    from s2v.nn import VideoPredictor
    layer = VideoPredictor(3, 3, backend="cpu")
    x = torch.randn(1, 2, 3, 6, 5, requires_grad=True)
    y_eager, s_eager = layer(x)
    # aot_eager: dynamo tracing, fake-tensor shape propagation and the autograd
    # graph, without spending seconds in inductor's code generation.
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    y, s = compiled(x, s_eager)
    y_ref, _ = layer(x, s_eager)
    assert y.shape == x.shape and rel_err(y, y_ref) < 1e-6
    (gx,) = torch.autograd.grad(y.sum(), x)
    (gx_ref,) = torch.autograd.grad(y_ref.sum(), x)
    assert rel_err(gx, gx_ref) < 1e-6


def test_auto_picks_cpu_kernels():
    cpu = torch.device("cpu")
    assert video_predictor_backends.resolve("auto", cpu) is \
        video_predictor_backends.resolve("cpu", cpu)
    assert dirconv_gru_backends.resolve("auto", cpu) is dirconv_gru_backends.resolve("cpu", cpu)


def test_non_contiguous_inputs_are_made_contiguous():
    weights, biases, blend_w, blend_b = make_layer(4, 3, True)
    x = torch.randn(1, 2, 4, 7, 6).transpose(3, 4)  # [1, 2, 4, 6, 7], not contiguous
    assert not x.is_contiguous()
    wt = weights[0].transpose(3, 4)  # a square weight given transposed
    args = (None, None, [wt, *weights[1:]], biases, blend_w, blend_b)
    y, _ = video_predictor(x, *args, backend="cpu")
    y_ref, _ = video_predictor(x.contiguous(), *args, backend="eager")
    assert rel_err(y, y_ref) < FP32_TOL


def test_bad_arguments_fail_before_any_kernel():
    weights, biases, blend_w, blend_b = make_layer(4, 3, True)
    x = torch.randn(1, 2, 4, 6, 5)
    state = tuple(torch.zeros(1, 4, 6, 5) for _ in range(4))
    with pytest.raises(ValueError, match="tuple of 5"):
        video_predictor(x, None, state, weights, biases, blend_w, blend_b, backend="cpu")
    with pytest.raises(TypeError, match="dtype"):
        video_predictor(x.double(), None, None, weights, biases, blend_w, blend_b,
                        backend="cpu")
    with pytest.raises(ValueError, match="blend_weight"):
        video_predictor(x, None, None, weights, biases, blend_w[:, 1:], blend_b, backend="cpu")
    # The binding checks too, for callers that bypass the Python op.
    from s2v._extension import load_extension
    ext = load_extension()
    h0 = torch.zeros(5, 1, 4, 6, 5)
    good = [x, x, h0, weights[0], biases[0], weights[1], biases[1], weights[2], biases[2],
            blend_w, blend_b]
    for i, bad, message in [(0, x.transpose(3, 4).contiguous().transpose(3, 4), "contiguous"),
                            # The numbers in the message (this one crashed a CUDA build
                            # once, see csrc/check.h).
                            (2, h0[:4], r"h0: expected shape \[5, 1, 4, 6, 5\], got \[4, 1, 4, 6, 5\]"),
                            (5, weights[1].double(), "dtype"),
                            (9, blend_w[:-1], "blend_w")]:
        args = list(good)
        args[i] = bad
        with pytest.raises(RuntimeError, match=message):
            ext.video_predictor_forward(*args)


GOLDEN = sorted(glob.glob(os.path.join(ROOT, "tests", "golden", "vp_*.npz")) +
                glob.glob(os.path.join(ROOT, "tests", "golden_extra", "vp_*.npz")))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("path", GOLDEN, ids=[os.path.basename(p) for p in GOLDEN])
def test_golden(path, precision):
    from s2v.testing.golden import run_file, tolerance
    result = run_file(path, "cpu", precision)
    tol = tolerance("cpu", precision)
    assert result.errors and result.passed(tol), result.worst(tol)


def test_pooled_outputs_are_not_reused_while_alive():
    """Large outputs come from a recycling pool (csrc/buffer_pool.h): a live
    output must keep its values through later calls, and a recycled buffer must be
    fully rewritten (poisoned in the tests, so any stale element shows as NaN)."""
    from s2v.nn import VideoPredictor
    torch.manual_seed(0)
    eager = VideoPredictor(32, 3, backend="eager")
    fused = VideoPredictor(32, 3, backend="cpu")
    fused.load_state_dict(eager.state_dict())
    xs = [torch.randn(1, 8, 32, 64, 64) for _ in range(3)]  # h_seq: 21 MB, pooled
    with torch.no_grad():
        first = fused(xs[0])
        for x in xs[1:]:
            y, state = fused(x)
            y_ref, state_ref = eager(x)
            assert rel_err(y, y_ref) < FP32_TOL
            assert all(rel_err(a, b) < FP32_TOL for a, b in zip(state, state_ref))
        y0_ref, s0_ref = eager(xs[0])
    assert rel_err(first[0], y0_ref) < FP32_TOL
    assert all(rel_err(a, b) < FP32_TOL for a, b in zip(first[1], s0_ref))


@pytest.mark.parametrize("directional,C,k,B,T,H,W", [
    (True, 3, 3, 2, 3, 7, 1), (True, 2, 5, 1, 2, 3, 6), (False, 5, 5, 3, 1, 1, 1),
    (True, 4, 3, 1, 4, 9, 11)], ids=["dir-7x1", "dir-k5-3x6", "basic-1x1", "dir-9x11"])
@pytest.mark.parametrize("gates", ["saved", "recomputed"])
def test_float64_matches_eager_to_float64_precision(directional, C, k, B, T, H, W, gates,
                                                   monkeypatch):
    """float64 runs in double end to end (odd and degenerate frame sizes included):
    no float32 constant or temporary may cost it digits, which the gradcheck's
    tolerances would not see."""
    from s2v.nn import VideoPredictor
    if gates == "recomputed":
        monkeypatch.setattr(vp_ops, "SAVED_GATES_MAX_BYTES", 0)
    eager = VideoPredictor(C, k, directional=directional, backend="eager").double()
    fused = VideoPredictor(C, k, directional=directional, backend="cpu").double()
    fused.load_state_dict(eager.state_dict())
    x = torch.randn(B, T, C, H, W, dtype=torch.float64)
    results = []
    for layer in (eager, fused):
        x_ = x.clone().requires_grad_()
        y, state = layer(x_)
        loss = (y * torch.cos(y)).sum() + sum((s * s).sum() for s in state)
        results.append((y, *state, *torch.autograd.grad(loss, [x_, *layer.parameters()])))
    for i, (a, b) in enumerate(zip(*results)):
        assert rel_err(a, b) < 1e-12, f"output {i}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_pixel_frame_leaves_the_blend_bias_alone(dtype):
    """B·T·H·W = 1: the blend's bias rows are one contiguous row, which must still be
    copied before the GEMMs accumulate into it (else every call shifts the bias)."""
    from s2v.nn import VideoPredictor

    torch.manual_seed(0)
    vp = VideoPredictor(2, 3, backend="cpu").to(dtype)
    with torch.no_grad():
        for p in vp.parameters():
            p.normal_(0, 0.3)
    ref = VideoPredictor(2, 3, backend="eager").to(dtype)
    ref.load_state_dict(vp.state_dict())
    x = torch.randn(1, 1, 2, 1, 1, dtype=dtype, requires_grad=True)
    bias = vp.blend_bias.detach().clone()
    for _ in range(3):
        y = vp(x)[0]
        y.square().sum().backward()
        assert torch.equal(vp.blend_bias.detach(), bias)
        assert rel_err(y.detach(), ref(x)[0].detach()) < 1e-5


def test_channels_last_state_is_accepted():
    from s2v.nn import VideoPredictor

    torch.manual_seed(0)
    x = torch.randn(1, 2, 3, 4, 5)
    state = tuple(torch.randn(1, 3, 4, 5).contiguous(memory_format=torch.channels_last)
                  for _ in range(5))
    vp = VideoPredictor(3, backend="cpu")
    ref = VideoPredictor(3, backend="eager")
    ref.load_state_dict(vp.state_dict())
    assert rel_err(vp(x, state)[0], ref(x, state)[0]) < 1e-5


@pytest.mark.parametrize("layer", ["video_predictor", "dirconv_gru", "dilated_gru"])
def test_double_backward_names_the_way_out(layer):
    """A gradient of a gradient through a fused layer: a clear error, not torch's
    generic 'no autograd formula'; first derivatives with create_graph still work."""
    from s2v.nn import DilatedResidualGRU, DirConvGRU, VideoPredictor

    torch.manual_seed(0)
    if layer == "video_predictor":
        m, x = VideoPredictor(3, backend="cpu"), torch.randn(1, 2, 3, 4, 5)
    elif layer == "dirconv_gru":
        m, x = DirConvGRU(3, 4, backend="cpu"), torch.randn(2, 3, 3, 4, 5)
    else:
        m, x = DilatedResidualGRU(4, 2, 2, backend="cpu"), torch.randn(1, 5, 4)
    x.requires_grad_(True)
    g, = torch.autograd.grad(m(x)[0].square().sum(), x, create_graph=True)
    assert torch.isfinite(g).all()
    with pytest.raises(NotImplementedError, match=f"{layer}: .*backend='eager'"):
        g.square().sum().backward()
