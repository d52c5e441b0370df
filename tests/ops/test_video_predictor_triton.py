"""The Triton video-predictor kernels (s2v.kernels.video_predictor) against the eager op.

Forward (y and every hidden state) and backward (x, xh, h0 and every weight, with a
nonzero gradient on the returned last state) are compared with
``video_predictor_ref`` + torch.autograd in float64, on the same (dtype-rounded)
inputs: float32 within 1e-4 and bfloat16 within 2e-2 of SPEC §10's relative error.
The single-cell entry points (DirConvGRU) are checked the same way against
``dirconv_gru_ref`` with a gradient on every returned state.

Without CUDA the kernels run under Triton's interpreter. ``triton.jit`` decides
at decoration time, from ``TRITON_INTERPRET``, whether a kernel is interpreted,
and the kernel module stays cached in ``sys.modules``; setting the variable in
this process would turn the kernels into interpreted functions for every later
test too (the offline-compile test needs real JIT functions). So the interpreted
launches run in one child process with ``TRITON_INTERPRET=1`` (this file run as a
script), which returns the kernel outputs; references and assertions stay here.
Real CUDA runs (``requires_cuda``) are in-process.
"""
import os
import subprocess
import sys
import zlib

import pytest
import torch

from s2v.kernels._triton_support import triton_available

requires_triton = pytest.mark.skipif(not triton_available(),
                                     reason="triton is not installed (GPU-only dependency)")
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                   reason="needs a CUDA GPU (real Triton launches)")

GRAD_NAMES = ("dx", "dxh", "dh0", "dw_sq", "db_sq", "dw_h", "db_h", "dw_w", "db_w",
              "dblend_w", "dblend_b")
TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2}


def _case(directional, k, H, W, B, T, dtype=torch.float32, C=5, tiles=None, per_frame=False):
    kind = "dir" if directional else "basic"
    name = f"{kind}-k{k}-{H}x{W}-B{B}-T{T}-C{C}-{str(dtype)[6:]}" + ("-tiled" if tiles else "") \
        + ("-dh_seq" if per_frame else "")
    return dict(name=name, directional=directional, k=k, H=H, W=W, B=B, T=T, C=C,
                dtype=dtype, tiles=tiles, per_frame=per_frame)


# Every size of the brief appears: H×W 5×4 and 3×6, k 3 and 5, T 1 and 3, B 1 and 2,
# dir and basic, fp32 and bf16; pairs are spread so the interpreter stays fast.
# "tiled" shrinks the tiles so pixels and channels span several programs and the
# channel loop runs more than once (hidden width 18 over 16-wide tiles).
INTERP_CASES = [
    _case(True, 3, 5, 4, 2, 3),
    # A gradient on every returned state (dh_last shaped like h_seq), not just the last.
    _case(True, 5, 3, 6, 1, 3, per_frame=True),
    _case(False, 5, 3, 6, 2, 3),
    _case(False, 3, 5, 4, 1, 1),
    _case(True, 3, 5, 4, 1, 3, torch.bfloat16),
    _case(False, 3, 3, 6, 2, 3, torch.bfloat16),
    _case(False, 3, 5, 4, 1, 2, C=17, tiles=dict(_CPU_BLOCK_P=16, _MAX_BLOCK_N=16,
                                                 _MAX_BLOCK_K=16)),
    # Degenerate image: k = 5 taps clamp past a 2-row border and a 1-column one.
    _case(True, 5, 2, 1, 1, 1, C=3),
]


def _cell(orientation, direction, k, H, W, B, T, dtype=torch.float32, C=3, Ch=4):
    o = {None: "sq", "h": "h", "w": "w"}[orientation]
    d = "" if orientation is None else "%+d" % direction
    name = f"cell-{o}{d}-k{k}-{H}x{W}-B{B}-T{T}-C{C}-Ch{Ch}-{str(dtype)[6:]}"
    return dict(name=name, cell=True, orientation=orientation, direction=direction, k=k,
                H=H, W=W, B=B, T=T, C=C, Ch=Ch, dtype=dtype, tiles=None)


# The single-cell entry points (DirConvGRU): every orientation and direction, C_in != C_hid.
CELL_CASES = [
    _cell(None, 1, 3, 5, 4, 2, 3),
    _cell("h", 1, 5, 3, 6, 1, 3),
    _cell("h", -1, 3, 3, 6, 1, 3, torch.bfloat16),
    _cell("w", 1, 3, 5, 4, 1, 1),
    _cell("w", -1, 5, 5, 4, 2, 2),
]

GPU_CASES = [
    _case(True, 3, 13, 11, 3, 4, C=32),
    _case(True, 5, 16, 16, 1, 4, C=32),
    _case(False, 3, 16, 16, 3, 4, C=32),
    _case(True, 5, 13, 11, 1, 1),
    _case(False, 5, 13, 11, 3, 4),
    _case(True, 3, 16, 16, 3, 4, torch.bfloat16, C=32),
    _case(False, 5, 13, 11, 1, 4, torch.bfloat16, C=32),
]


def make_inputs(case, device="cpu"):
    """Launcher arguments (x, xh, h0, weights..., dy, dh_last) in the case's dtype."""
    g = torch.Generator().manual_seed(zlib.crc32(case["name"].encode()))
    directional, k, C = case["directional"], case["k"], case["C"]
    B, T, H, W = case["B"], case["T"], case["H"], case["W"]
    Ch = C if directional else C + 1
    Fn = 5 if directional else 1
    n_taps = ((k + 1) // 2) ** 2

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    # Weight scale ~ 1/sqrt(fan-in) keeps the gates away from saturation.
    ws = 1.0 / (2 * C) ** 0.5
    empty = torch.empty(0, dtype=torch.float64)
    args = dict(x=rnd(B, T, C, H, W), xh=rnd(B, T, C, H, W), h0=rnd(Fn, B, Ch, H, W, scale=0.5),
                w_sq=rnd(3, Ch, C + Ch, k, k, scale=ws / k), b_sq=rnd(3, Ch, scale=0.3))
    if directional:
        args.update(w_h=rnd(3, Ch, C + Ch, n_taps, scale=ws), b_h=rnd(3, Ch, scale=0.3),
                    w_w=rnd(3, Ch, C + Ch, n_taps, scale=ws), b_w=rnd(3, Ch, scale=0.3),
                    blend_w=rnd(C + 1, 5 * Ch, scale=0.5), blend_b=rnd(C + 1, scale=0.3))
    else:
        args.update(w_h=empty, b_h=empty, w_w=empty, b_w=empty, blend_w=empty, blend_b=empty)
    args.update(dy=rnd(B, T, C, H, W),
                dh_last=rnd(Fn, B, T, Ch, H, W) if case["per_frame"] else rnd(Fn, B, Ch, H, W))
    return {n: a.to(case["dtype"]).to(device) for n, a in args.items()}


FWD_ARGS = ("x", "xh", "h0", "w_sq", "b_sq", "w_h", "b_h", "w_w", "b_w", "blend_w", "blend_b")


ORIENTATION_CODE = {None: 0, "h": 1, "w": 2}


def make_cell_inputs(case, device="cpu"):
    """Single-cell arguments (x, h0, weight, bias, dh_seq) in the case's dtype."""
    g = torch.Generator().manual_seed(zlib.crc32(case["name"].encode()))
    k, C, Ch = case["k"], case["C"], case["Ch"]
    B, T, H, W = case["B"], case["T"], case["H"], case["W"]
    taps = (k, k) if case["orientation"] is None else (((k + 1) // 2) ** 2,)
    ws = 1.0 / (C + Ch) ** 0.5 / (k if case["orientation"] is None else 2)
    args = dict(x=torch.randn(B, T, C, H, W, generator=g, dtype=torch.float64),
                h0=torch.randn(B, Ch, H, W, generator=g, dtype=torch.float64) * 0.5,
                weight=torch.randn(3, Ch, C + Ch, *taps, generator=g, dtype=torch.float64) * ws,
                bias=torch.randn(3, Ch, generator=g, dtype=torch.float64) * 0.3,
                dh_seq=torch.randn(B, T, Ch, H, W, generator=g, dtype=torch.float64))
    return {n: a.to(case["dtype"]).to(device) for n, a in args.items()}


def run_cell_kernels(vp, case, a):
    code, d = ORIENTATION_CODE[case["orientation"]], case["direction"]
    h_seq = vp.dirconv_gru_fwd(a["x"], a["h0"], a["weight"], a["bias"], code, d)
    grads = vp.dirconv_gru_bwd(a["dh_seq"], a["x"], a["h0"], h_seq, a["weight"], a["bias"],
                               code, d)
    return dict(h_seq=h_seq, **dict(zip(("dx", "dh0", "dweight", "dbias"), grads)))


def cell_reference(case, a):
    """float64 eager h_seq and the autograd gradients of ``Σ h_seq ⊙ dh_seq``."""
    from s2v.ops.dirconv_gru import dirconv_gru_ref

    leaves = {n: a[n].detach().cpu().double().requires_grad_() for n in
              ("x", "h0", "weight", "bias")}
    h_seq = dirconv_gru_ref(leaves["x"], leaves["h0"], leaves["weight"], leaves["bias"],
                            case["orientation"], case["direction"])
    (h_seq * a["dh_seq"].cpu().double()).sum().backward()
    return dict(h_seq=h_seq.detach(), dx=leaves["x"].grad, dh0=leaves["h0"].grad,
                dweight=leaves["weight"].grad, dbias=leaves["bias"].grad)


def run_kernels(vp, a):
    y, h_seq = vp.video_predictor_fwd(*(a[n] for n in FWD_ARGS))
    grads = vp.video_predictor_bwd(a["dy"], a["dh_last"], a["x"], a["xh"], a["h0"], h_seq,
                                   *(a[n] for n in FWD_ARGS[3:]))
    # A custom op's outputs may not alias one another (torch refuses the op then).
    distinct = len({id(t) for t in (y, h_seq, *grads)}) == 2 + len(grads)
    return dict(y=y, h_seq=h_seq, **dict(zip(GRAD_NAMES, grads)),
                _outputs_distinct=distinct)


def reference(a, directional):
    """float64 eager forward (y, every state) and autograd gradients of
    ``Σ y ⊙ dy + Σ h_last ⊙ dh_last`` (or ``Σ h_seq ⊙ dh_last`` when dh_last has a
    frame axis) w.r.t. every input."""
    from s2v.ops.dirconv_gru import dirconv_gru_ref
    from s2v.ops.video_predictor import FLOWS, video_predictor_ref

    leaves = {n: a[n].detach().cpu().double().requires_grad_(a[n].numel() > 0)
              for n in FWD_ARGS}
    L = leaves
    if directional:
        weights, biases = (L["w_sq"], L["w_h"], L["w_w"]), (L["b_sq"], L["b_h"], L["b_w"])
        flows = FLOWS
        blend = (L["blend_w"], L["blend_b"])
    else:
        weights, biases, flows, blend = (L["w_sq"],), (L["b_sq"],), FLOWS[:1], (None, None)
    state = tuple(L["h0"].unbind(0))
    y, last = video_predictor_ref(L["x"], L["xh"], state, weights, biases, *blend)
    h_seq = torch.stack([dirconv_gru_ref(L["x"], L["h0"][f], weights[cell], biases[cell],
                                         orientation, d)
                         for f, (cell, orientation, d) in enumerate(flows)])
    dh = a["dh_last"].cpu().double()
    states = h_seq if dh.dim() == h_seq.dim() else torch.stack(last)
    ((y * a["dy"].cpu().double()).sum() + (states * dh).sum()).backward()
    out = dict(y=y.detach(), h_seq=h_seq.detach())
    for g, n in zip(GRAD_NAMES, ("x", "xh", "h0") + FWD_ARGS[3:]):
        out[g] = L[n].grad if L[n].grad is not None else torch.empty(0)
    return out


def check_against_reference(case, inputs, got):
    from tests.helpers import rel_err

    ref = cell_reference(case, inputs) if case.get("cell") else \
        reference(inputs, case["directional"])
    tol = TOL[case["dtype"]]
    errors = {}
    for name, want in ref.items():
        have = got[name]
        assert have.dtype == case["dtype"], f"{name}: dtype {have.dtype}"
        assert tuple(have.shape) == tuple(want.shape), \
            f"{name}: shape {tuple(have.shape)}, expected {tuple(want.shape)}"
        if want.numel():
            errors[name] = rel_err(have.cpu(), want)
    bad = {n: e for n, e in errors.items() if not e <= tol}
    assert not bad, f"relative errors above {tol}: {bad} (all: {errors})"


# ----------------------------------------------------------------------- interpreter


def _worker(in_path, out_path):
    """Child process: run the launchers under the interpreter for every case."""
    import time

    assert os.environ.get("TRITON_INTERPRET") == "1"
    triton_before = "triton" in sys.modules
    from s2v.kernels import video_predictor as vp
    imports_triton = "triton" in sys.modules and not triton_before
    # This file runs as a script here, outside pytest: install conftest's NaN-poisoned
    # torch.empty by hand so the launchers' buffers start as NaN like in-process.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    from tests.conftest import nan_poison

    payload = torch.load(in_path)
    results = {"_module_imports_triton": imports_triton}
    defaults = {n: getattr(vp, n) for n in ("_CPU_BLOCK_P", "_MAX_BLOCK_N", "_MAX_BLOCK_K")}
    for name, (case, inputs) in payload.items():
        start = time.time()
        for attr, value in {**defaults, **(case["tiles"] or {})}.items():
            setattr(vp, attr, value)
        with nan_poison():
            results[name] = run_cell_kernels(vp, case, inputs) if case.get("cell") else \
                run_kernels(vp, inputs)
        print(f"{name}: {time.time() - start:.1f} s", file=sys.stderr)
    torch.save(results, out_path)


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    """{case name: kernel outputs}, from one interpreter child process."""
    if not triton_available():
        pytest.skip("triton is not installed (GPU-only dependency)")
    tmp = tmp_path_factory.mktemp("vp_triton")
    in_path, out_path = tmp / "inputs.pt", tmp / "outputs.pt"
    inputs = {c["name"]: make_cell_inputs(c) if c.get("cell") else make_inputs(c)
              for c in INTERP_CASES + CELL_CASES}
    torch.save({c["name"]: (c, inputs[c["name"]]) for c in INTERP_CASES + CELL_CASES}, in_path)
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, __file__, str(in_path), str(out_path)], env=env,
                          capture_output=True, text=True, timeout=900,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.returncode == 0, f"interpreter child failed:\n{proc.stderr[-6000:]}"
    return inputs, torch.load(out_path)


@requires_triton
def test_kernel_module_imports_without_triton(interpreted):
    _, results = interpreted
    assert results["_module_imports_triton"] is False


@requires_triton
@pytest.mark.parametrize("case", INTERP_CASES, ids=lambda c: c["name"])
def test_interpreted_matches_eager(case, interpreted):
    inputs, results = interpreted
    check_against_reference(case, inputs[case["name"]], results[case["name"]])


@requires_triton
@pytest.mark.parametrize("case", INTERP_CASES, ids=lambda c: c["name"])
def test_interpreted_outputs_are_distinct_tensors(case, interpreted):
    """The launchers back the custom ops, whose outputs may not alias each other (the
    basic variant's absent weights once shared one empty tensor)."""
    _, results = interpreted
    assert results[case["name"]]["_outputs_distinct"] is True


@requires_triton
@pytest.mark.parametrize("case", CELL_CASES, ids=lambda c: c["name"])
def test_interpreted_single_cell_matches_eager(case, interpreted):
    inputs, results = interpreted
    check_against_reference(case, inputs[case["name"]], results[case["name"]])


# ----------------------------------------------------------------------- real GPU


@pytest.fixture
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@requires_triton
@requires_cuda
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: c["name"])
def test_gpu_matches_eager(case, no_tf32):
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.skip("TRITON_INTERPRET is set: this test needs compiled kernels")
    from s2v.kernels import video_predictor as vp

    inputs = make_inputs(case, "cuda")
    check_against_reference(case, inputs, run_kernels(vp, inputs))


@requires_triton
@requires_cuda
@pytest.mark.parametrize("case", [
    _cell(None, 1, 5, 13, 11, 3, 4, C=32, Ch=32), _cell("h", -1, 3, 16, 16, 1, 4, C=5, Ch=7),
    _cell("w", 1, 5, 13, 11, 3, 4, torch.bfloat16, C=32, Ch=32)], ids=lambda c: c["name"])
def test_gpu_single_cell_matches_eager(case, no_tf32):
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.skip("TRITON_INTERPRET is set: this test needs compiled kernels")
    from s2v.kernels import video_predictor as vp

    inputs = make_cell_inputs(case, "cuda")
    check_against_reference(case, inputs, run_cell_kernels(vp, case, inputs))


# ----------------------------------------------------------------------- validation


def _valid_args(directional=True, dtype=torch.float32):
    case = _case(directional, 3, 4, 3, 1, 2, dtype)
    return {n: v for n, v in make_inputs(case).items() if n in FWD_ARGS}


def _call_fwd(args):
    from s2v.kernels import video_predictor as vp
    return vp.video_predictor_fwd(*(args[n] for n in FWD_ARGS))


@pytest.mark.parametrize("mutate, error, match", [
    (lambda a: a.update(x=a["x"].double()), TypeError, "x: expected float32"),
    (lambda a: a.update(xh=a["xh"].to(torch.bfloat16)), TypeError, "xh: expected dtype"),
    (lambda a: a.update(x=[1.0]), TypeError, "x: expected a torch.Tensor"),
    (lambda a: a.update(x=a["x"][0]), ValueError, r"x: expected \[B, T, C, H, W\]"),
    (lambda a: a.update(h0=a["h0"][:4]), ValueError, "h0: expected shape"),
    (lambda a: a.update(w_h=a["w_h"][..., :3].contiguous()), ValueError, "w_h: expected shape"),
    (lambda a: a.update(blend_b=a["blend_b"][:-1].contiguous()), ValueError, "blend_b"),
    (lambda a: a.update(xh=a["xh"].transpose(3, 4).contiguous().transpose(3, 4)),
     ValueError, "xh: expected a contiguous tensor"),
    (lambda a: a.update(w_sq=a["w_sq"][..., :2, :2].contiguous()), ValueError, "w_sq"),
], ids=["float64", "mixed-dtype", "not-a-tensor", "x-4d", "h0-flows", "w_h-taps",
        "blend_b", "non-contiguous", "even-k"])
def test_rejects_bad_inputs(mutate, error, match):
    args = _valid_args()
    mutate(args)
    with pytest.raises(error, match=match):
        _call_fwd(args)


def test_basic_rejects_blend_weights():
    args = _valid_args(directional=False)
    args["blend_b"] = torch.zeros(6)
    with pytest.raises(ValueError, match="blend_b: the basic variant"):
        _call_fwd(args)


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="need CUDA tensors"):
        _call_fwd(_valid_args())


def test_backward_rejects_bad_state_gradient():
    from s2v.kernels import video_predictor as vp

    a = _valid_args()
    h_seq = torch.zeros(5, 1, 2, 5, 4, 3)
    with pytest.raises(ValueError, match="dh_last: expected shape"):
        vp.video_predictor_bwd(torch.zeros_like(a["x"]), a["h0"][:, :, :4].contiguous(),
                               a["x"], a["xh"], a["h0"], h_seq,
                               *(a[n] for n in FWD_ARGS[3:]))


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])


CONV_CASES = [
    (3, 5, 7, 13, 11, (3, 3), (1, 1)),   # square k 3
    (2, 4, 6, 9, 8, (1, 3), (0, 1)),     # a directional sub-kernel along W
    (2, 4, 6, 9, 8, (3, 1), (1, 0)),     # ... along H
    (1, 3, 2, 1, 1, (5, 5), (2, 2)),     # one pixel: every tap but the centre is padding
    (4, 2, 3, 64, 64, (1, 5), (0, 2)),   # several pixel chunks per image
    (2, 3, 4, 33, 17, (7, 7), (3, 3)),   # odd sizes, k 7
]


def _planes_case(N, Cs, O, H, W, kernel, padding, P=None, dtype=torch.float64):
    from s2v.kernels import padded_plane_conv as ppc

    torch.manual_seed(0)
    planes = ppc.Planes(N, H, W, max(padding) if P is None else P, "cpu", dtype)
    x = torch.randn(N, Cs, H, W, dtype=dtype)
    w = torch.randn(O, Cs, *kernel, dtype=dtype)
    b = torch.randn(O, dtype=dtype)
    g = torch.randn(N, O, H, W, dtype=dtype)
    return ppc, planes, x, w, b, g


def _rel(got, ref):
    return ((got - ref).abs().max() / ref.abs().max()).item()


# P: the planes' padding; larger than the kernel's (a directional sub-kernel on
# the layer's planes) must not change anything.
@pytest.mark.parametrize("N, Cs, O, H, W, kernel, padding", CONV_CASES)
@pytest.mark.parametrize("extra_pad", [0, 2])
def test_plane_conv_weight_grad_matches_conv2d_weight(N, Cs, O, H, W, kernel, padding,
                                                      extra_pad, monkeypatch):
    """The weight gradient the Triton backward uses (per-tap GEMMs on padded planes, no
    triton or GPU needed): equal to torch's conv2d_weight in float64, with one chunk
    or many chunks of positions."""
    ppc, planes, x, _, _, g = _planes_case(N, Cs, O, H, W, kernel, padding,
                                           P=max(padding) + extra_pad)
    ref = torch.nn.grad.conv2d_weight(x, (O, Cs) + kernel, g, padding=padding)
    for splits in (ppc._SPLITS, 1):
        monkeypatch.setattr(ppc, "_SPLITS", splits)
        monkeypatch.setattr(ppc, "_MIN_CHUNK", 1)
        planes = ppc.Planes(N, H, W, planes.P, "cpu", torch.float64)
        got = ppc.conv2d_weight(planes, planes.pack(g), planes.pack(x), kernel, padding)
        assert got.shape == ref.shape
        assert _rel(got, ref) < 1e-13, splits


@pytest.mark.parametrize("N, Cs, O, H, W, kernel, padding", CONV_CASES)
@pytest.mark.parametrize("extra_pad", [0, 2])
def test_plane_convolutions_match_conv2d(N, Cs, O, H, W, kernel, padding, extra_pad,
                                        monkeypatch):
    """The convolutions around the scans (input gates forward; the input gradient, the
    transposed convolution) as per-tap GEMMs on padded planes: equal to F.conv2d and
    conv2d_input in float64."""
    ppc, planes, x, w, b, g = _planes_case(N, Cs, O, H, W, kernel, padding,
                                           P=max(padding) + extra_pad)
    ref = torch.nn.functional.conv2d(x, w, b, padding=padding)
    ref_in = torch.nn.grad.conv2d_input(x.shape, w, g, padding=padding)
    # per-tap GEMMs, and taps grouped per kernel row or column (forced both ways)
    for gain in (0.0, float("inf")):
        monkeypatch.setattr(ppc, "_GROUP_GAIN", gain)
        got = planes.output_interior(ppc.conv2d(planes, planes.pack(x), w, b, padding))
        assert _rel(got.transpose(0, 1), ref) < 1e-13, gain
        got = planes.output_interior(ppc.conv2d(planes, planes.pack(x), w, None, padding))
        assert _rel(got.transpose(0, 1), ref - b.view(1, -1, 1, 1)) < 1e-13, gain
    acc = torch.zeros(Cs, planes.Kc, dtype=torch.float64)
    ppc.conv2d_input_add(planes, acc, planes.pack(g), w, padding)
    ppc.conv2d_input_add(planes, acc, planes.pack(g), w, padding)  # it adds
    assert _rel(planes.output_interior(acc).transpose(0, 1), 2 * ref_in) < 1e-13


def test_plane_offsets_past_32_bits_are_refused_before_any_launch():
    """The step kernels' in-tile offsets into a gate buffer are 32-bit: a problem
    whose Ch rows of planes pass 2^31 elements is a clear error, not garbage."""
    from s2v.kernels import padded_plane_conv as ppc
    from s2v.kernels import video_predictor as launcher

    ok = ppc.Planes(16, 128, 128, 1, "cpu")        # geometry only, nothing allocated
    launcher._check_plane_offsets(ok, 32)
    huge = ppc.Planes(1024, 512, 512, 1, "cpu")
    with pytest.raises(ValueError, match="32-bit offsets"):
        launcher._check_plane_offsets(huge, 32)


def test_plane_offset_limit_is_checked_where_the_gate_planes_are_made(monkeypatch):
    """The input gates (the first thing either scan does) apply the limit before any
    buffer is filled: with the limit lowered, a small problem is refused there."""
    from s2v.kernels import video_predictor as launcher

    x = torch.randn(1, 2, 3, 5, 4)
    w = torch.randn(3, 4, 7, 3, 3)
    b = torch.randn(3, 4)
    flows = ((0, None, 1),)
    launcher._input_gates(x, (w,), (b,), flows, 3)          # fits: runs (pure torch)
    monkeypatch.setattr(launcher, "_MAX_PLANE_OFFSET", 4)
    with pytest.raises(ValueError, match="32-bit offsets"):
        launcher._input_gates(x, (w,), (b,), flows, 3)


def test_plane_conv_refuses_a_padding_past_its_planes():
    ppc, planes, x, w, b, _ = _planes_case(1, 2, 3, 5, 5, (5, 5), (2, 2), P=1)
    with pytest.raises(ValueError, match="padding"):
        ppc.conv2d(planes, planes.pack(x), w, b, (2, 2))


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 2, 1, 7), (2, 2, 6, 1)])
@pytest.mark.parametrize("axis", [2, 3])
def test_add_shifted_is_the_replicate_shift(shape, axis):
    """The in-place shifted add of the Triton launcher's input gates equals adding the
    replicate-shifted copy, for every shift, including shifts past the edge."""
    from s2v.kernels import video_predictor as launcher

    torch.manual_seed(0)
    n = shape[axis]
    for shift in range(-n - 2, n + 3):
        a = torch.randn(shape, dtype=torch.float64)
        out = torch.randn(shape, dtype=torch.float64)
        ref = out + a.index_select(axis, launcher._shift_index(n, shift, a.device))
        launcher._add_shifted(out, a, shift, axis)
        assert torch.equal(out, ref), shift


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 2, 1, 7), (2, 2, 6, 1)])
@pytest.mark.parametrize("axis", [2, 3])
def test_adjoint_shift_is_the_adjoint(shape, axis):
    """<shift(a), g> = <a, adjoint_shift(g)> for every shift (the backward of the
    replicate shift), including shifts past the edge."""
    from s2v.kernels import video_predictor as launcher

    torch.manual_seed(0)
    n = shape[axis]
    for shift in range(-n - 2, n + 3):
        a = torch.randn(shape, dtype=torch.float64)
        g = torch.randn(shape, dtype=torch.float64)
        shifted = a.index_select(axis, launcher._shift_index(n, shift, a.device))
        lhs = (shifted * g).sum()
        rhs = (a * launcher._adjoint_shift(g, shift, axis)).sum()
        assert abs(lhs - rhs).item() < 1e-12, shift
        # Written into a zero-filled view of another layout (the padded planes).
        out = torch.zeros((shape[1], shape[0]) + shape[2:], dtype=torch.float64)
        launcher._adjoint_shift(g, shift, axis, out=out.transpose(0, 1))
        assert torch.equal(out.transpose(0, 1), launcher._adjoint_shift(g, shift, axis))
