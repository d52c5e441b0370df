"""FID / LPIPS / FVD (s2v.feature_metrics and ``s2v evaluate --inception/--vgg/--i3d``).

Nothing is downloaded: the detectors are tiny TorchScript modules with the same call
signatures as the published files (inception-2015-12-05.pt, vgg16.pt,
i3d_torchscript.pt) that assert the input layout, dtype and range s2v promises and
return features computed from the pixels, so every metric can be checked against a
direct computation.
"""
import json
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s2v import feature_metrics as fm
from s2v.cli import main

# ----------------------------------------------------------------------- fake detectors


def inception_like(img: torch.Tensor) -> torch.Tensor:
    x = img.float() / 255
    pooled = F.adaptive_avg_pool2d(x, 2).flatten(1)
    return torch.cat([pooled, (x * x).mean(dim=(2, 3)), x.amax(dim=(2, 3))], 1)


def vgg_like(img: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(img / 255, 2).flatten(1)


def i3d_like(video: torch.Tensor) -> torch.Tensor:
    x = video.float() / 127.5 - 1
    motion = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(2, 3, 4))
    return torch.cat([x.mean(dim=(3, 4)).flatten(1), motion], 1)


class FakeInception(torch.nn.Module):
    """inception-2015-12-05.pt's call: uint8 NCHW in [0, 255], return_features=True."""

    def forward(self, img: torch.Tensor, return_features: bool = False,
                use_fp16: bool = False, no_output_bias: bool = False) -> torch.Tensor:
        assert img.dtype == torch.uint8, "inception: expected uint8"
        assert img.dim() == 4 and img.shape[1] == 3, "inception: expected NCHW RGB"
        assert return_features, "inception: expected return_features=True"
        return inception_like(img)


class FakeVGG(torch.nn.Module):
    """vgg16.pt's call: float32 NCHW in [0, 255], resize_images=False, return_lpips=True."""

    def forward(self, img: torch.Tensor, resize_images: bool = True,
                return_features: bool = False, return_lpips: bool = False) -> torch.Tensor:
        assert img.dtype == torch.float32, "vgg: expected float32"
        assert img.dim() == 4 and img.shape[1] == 3, "vgg: expected NCHW RGB"
        assert bool(img.min() >= 0) and bool(img.max() <= 255), "vgg: expected [0, 255]"
        assert max(img.shape[2], img.shape[3]) <= 256, "vgg: expected at most 256 px"
        assert not resize_images, "vgg: expected resize_images=False"
        assert return_lpips, "vgg: expected return_lpips=True"
        return vgg_like(img)


class FakeI3D(torch.nn.Module):
    """i3d_torchscript.pt's call (StyleGAN-V): uint8 [B, 3, T, H, W] in [0, 255],
    rescale=True, resize=True, return_features=True."""

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        assert x.dtype == torch.uint8, "i3d: expected uint8"
        assert x.dim() == 5 and x.shape[1] == 3, "i3d: expected [B, 3, T, H, W]"
        assert x.shape[2] == 16, "i3d: expected 16-frame clips"
        assert rescale and resize and return_features, "i3d: expected the StyleGAN-V kwargs"
        return i3d_like(x)


class Broken(torch.nn.Module):
    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert False, "this network always fails"
        return img


def _script(module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    return {"inception": _script(FakeInception(), folder / "inception-2015-12-05.pt"),
            "vgg": _script(FakeVGG(), folder / "vgg16.pt"),
            "i3d": _script(FakeI3D(), folder / "i3d_torchscript.pt")}


@pytest.fixture(scope="module")
def detectors(weights):
    return {k: fm.load_detector(p, k) for k, p in weights.items()}


def _frames(n, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def _u8(frames):
    return (frames.clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8)


# ------------------------------------------------------------------------------ Fréchet


def _closed_form_diagonal(mu1, v1, mu2, v2):
    return float(((mu1 - mu2) ** 2).sum() + (v1 + v2 - 2 * np.sqrt(v1 * v2)).sum())


def _random_spd(rng, d):
    a = rng.standard_normal((d, 2 * d))
    return a @ a.T / (2 * d) + 0.1 * np.eye(d)


def test_identical_sets_give_zero():
    feats = torch.randn(300, 12, dtype=torch.float64) * 3 + 1
    assert fm.frechet_distance(feats, feats) == pytest.approx(0, abs=1e-9)


def test_moments_against_the_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(1)
    for d in (1, 5, 40):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        v1, v2 = rng.uniform(0.1, 4, size=d), rng.uniform(0.1, 4, size=d)
        got = fm.frechet_distance_from_moments(mu1, np.diag(v1), mu2, np.diag(v2))
        assert got == pytest.approx(_closed_form_diagonal(mu1, v1, mu2, v2), rel=1e-10)


def test_moments_against_eigenvalues_of_the_product_for_full_covariances():
    # tr((S1 S2)^½) is the sum of the square roots of the (real, positive) eigenvalues
    # of S1 S2: an independent route from the symmetric one the module takes.
    rng = np.random.default_rng(2)
    for d in (2, 16, 64):
        s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        tr_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
        want = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
        got = fm.frechet_distance_from_moments(mu1, s1, mu2, s2)
        assert got == pytest.approx(want, rel=1e-9)


def test_moments_against_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(3)
    s1, s2 = _random_spd(rng, 32), _random_spd(rng, 32)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    root = linalg.sqrtm(s1 @ s2).real
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root)
    assert fm.frechet_distance_from_moments(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-8)


def test_large_gaussian_samples_approach_the_closed_form():
    rng = np.random.default_rng(4)
    d, n = 4, 400_000
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.5, 3, size=d), rng.uniform(0.5, 3, size=d)
    a = torch.from_numpy(mu1 + np.sqrt(v1) * rng.standard_normal((n, d)))
    b = torch.from_numpy(mu2 + np.sqrt(v2) * rng.standard_normal((n, d)))
    want = _closed_form_diagonal(mu1, v1, mu2, v2)
    assert fm.frechet_distance(a, b) == pytest.approx(want, rel=0.02, abs=0.02)


def test_frechet_distance_is_symmetric_and_uses_biased_moments():
    a = torch.randn(50, 10, dtype=torch.float64)
    b = torch.randn(70, 10, dtype=torch.float64) * 2 + 0.5
    assert fm.frechet_distance(a, b) == pytest.approx(fm.frechet_distance(b, a), rel=1e-9)
    mu, cov = fm.feature_moments(a)
    assert torch.allclose(mu, a.mean(0))
    assert np.allclose(cov.numpy(), np.cov(a.numpy(), rowvar=False, bias=True))
    # A single repeated vector (the mean-frame baseline) has a zero covariance.
    v = torch.randn(1, 10, dtype=torch.float64).expand(20, -1)
    assert torch.count_nonzero(fm.feature_moments(v)[1]) == 0


# ------------------------------------------------------------------------------ loading


def test_bad_weight_files_are_refused_clearly(tmp_path, weights):
    with pytest.raises(FileNotFoundError, match="--inception .*no such file"):
        fm.load_detector(tmp_path / "missing.pt", "inception")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(ValueError, match="--vgg .*not a TorchScript archive.*vgg16.pt"):
        fm.load_detector(junk, "vgg")
    state = tmp_path / "state.pt"
    torch.save(FakeInception().state_dict() | {"w": torch.zeros(3)}, state)
    with pytest.raises(ValueError, match="torch.save.*inception-2015-12-05.pt"):
        fm.load_detector(state, "inception")
    pkl = tmp_path / "inception-2015-12-05.pkl"
    pkl.write_bytes(weights["inception"].read_bytes())
    with pytest.raises(ValueError, match="pickle"):
        fm.load_detector(pkl, "inception")
    with pytest.raises(ValueError, match="--i3d .*lacks rescale, resize"):
        fm.load_detector(weights["vgg"], "i3d")


def test_a_failing_network_is_a_one_line_value_error(tmp_path):
    det = fm.load_detector(_script(Broken(), tmp_path / "broken.pt"), "inception")
    with pytest.raises(ValueError, match="--inception .*failed.*always fails"):
        fm.fid(det, _frames(4), _frames(4, seed=1))


# ------------------------------------------------------------------- metrics via fakes


def _windows(frames):
    return torch.stack([frames[i:i + 16] for i in range(frames.shape[0] - 15)])


def _i3d_direct(frames):
    return i3d_like(_u8(_windows(frames)).permute(0, 2, 1, 3, 4)).double()


def test_metrics_match_a_direct_computation(detectors):
    fake, real = _frames(40, seed=1), _frames(40, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fm.SmallSampleWarning)
        model, base = fm.compare(detectors, fake, real, batch=7)
    want_fid = fm.frechet_distance(inception_like(_u8(fake)).double(),
                                   inception_like(_u8(real)).double())
    assert model["fid"] == pytest.approx(want_fid, rel=1e-6)
    want_lpips = (vgg_like(_u8(fake).float()) - vgg_like(_u8(real).float())).square().sum(1)
    assert model["lpips"] == pytest.approx(float(want_lpips.double().mean()), rel=1e-6)
    assert model["fvd_clips"] == 40 - 15
    want_fvd = fm.frechet_distance(_i3d_direct(fake), _i3d_direct(real))
    assert model["fvd"] == pytest.approx(want_fvd, rel=1e-6)

    # The baseline: the mean real frame, repeated, through the same networks.
    still = real.mean(0, keepdim=True).expand_as(real).contiguous()
    want_base_fid = fm.frechet_distance(inception_like(_u8(still)).double(),
                                        inception_like(_u8(real)).double())
    assert base["fid"] == pytest.approx(want_base_fid, rel=1e-6)
    want_base_lpips = (vgg_like(_u8(still).float()) - vgg_like(_u8(real).float()))
    assert base["lpips"] == pytest.approx(float(want_base_lpips.square().sum(1).mean()),
                                          rel=1e-6)
    want_base_fvd = fm.frechet_distance(_i3d_direct(still), _i3d_direct(real))
    assert base["fvd"] == pytest.approx(want_base_fvd, rel=1e-6)

    # The single-metric functions agree, and the batch size changes nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fm.SmallSampleWarning)
        assert fm.fid(detectors["inception"], fake, real, batch=32) == pytest.approx(
            model["fid"], rel=1e-6)
        assert fm.lpips(detectors["vgg"], fake, real, batch=2) == pytest.approx(
            model["lpips"], rel=1e-6)
        assert fm.fvd(detectors["i3d"], fake, real, batch=16) == pytest.approx(
            model["fvd"], rel=1e-6)
    assert fm.fid(detectors["inception"], real, real) == pytest.approx(0, abs=1e-9)
    assert fm.lpips(detectors["vgg"], real, real) == 0


def test_fvd_clip_rule(detectors):
    frames = _frames(20)
    assert fm.clip_windows(frames).shape == (5, 16, 3, 16, 16)
    assert torch.equal(fm.clip_windows(frames), _windows(frames))
    assert fm.clip_windows(_frames(48), stride=16).shape[0] == 3
    with pytest.raises(ValueError, match="at least 16 held-out frames.*only 15"):
        fm.fvd(detectors["i3d"], _frames(15), _frames(15, seed=1))


def test_few_samples_warn_but_do_not_fail(detectors):
    fake, real = _frames(10, seed=1), _frames(10, seed=2)  # 10 frames < 18 features
    with pytest.warns(fm.SmallSampleWarning, match="FID from 10 frames .* biased"):
        value = fm.fid(detectors["inception"], fake, real)
    assert math.isfinite(value) and value > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", fm.SmallSampleWarning)
        fm.fid(detectors["inception"], _frames(30, seed=1), _frames(30, seed=2))


def test_large_frames_are_downsampled_to_256_for_lpips(detectors):
    fake, real = _frames(3, size=512, seed=1), _frames(3, size=512, seed=2)
    a = F.interpolate(_u8(fake).float(), size=(256, 256), mode="area")
    b = F.interpolate(_u8(real).float(), size=(256, 256), mode="area")
    want = (vgg_like(a) - vgg_like(b)).square().sum(1).double().mean()
    assert fm.lpips(detectors["vgg"], fake, real) == pytest.approx(float(want), rel=1e-6)


# ---------------------------------------------------------------- s2v evaluate, end to end


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny 2-step run on a 5 s clip: 100 frames at 20 fps, 20 of them held out."""
    pytest.importorskip("av", reason="PyAV is not installed")
    from tests.media.factory import tone, write_video

    folder = tmp_path_factory.mktemp("fm_run")
    n = 150
    frames = np.zeros((n, 24, 24, 3), np.uint8)
    for i in range(n):
        frames[i, :, i % 24] = 255
        frames[i, (3 * i) % 24, :, 1] = 128
    clip = folder / "clip.mp4"
    write_video(clip, frames, fps=30, audio=tone(5.0, 44100, freq=300, channels=2))
    out = folder / "run"
    assert main(["train", str(clip), "--out", str(out), "--steps", "2", "--size", "16",
                 "--frames", "4", "--channels-base", "16", "--max-channels", "8",
                 "--validate-every", "1000", "--no-progress"]) == 0
    return out


def _held_out(run):
    """The frames `evaluate` compares, rebuilt from the public pieces."""
    from s2v.data import ClipOptions, prepare_clip
    from s2v.evaluation import load, reanimate_holdout
    from s2v.metrics import to_unit

    g = load(run)
    cfg = g.s2v_config["data"]
    options = ClipOptions(size=cfg["size"], fps=cfg["fps"], crop=None,
                          feature_kind=cfg["feature_kind"], bands=cfg["bands"],
                          chunk=cfg["chunk"])
    clip = prepare_clip(cfg["video"], run, options, cfg["seq_len"], progress=False)
    fake = to_unit(reanimate_holdout(g, clip, cfg["seq_len"])).clamp(0, 1)
    return fake, clip.validation().frames.permute(0, 3, 1, 2).float() / 255


def test_cli_evaluate_adds_fid_lpips_fvd(run, weights, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fm.SmallSampleWarning)
        assert main(["evaluate", str(run), "--inception", str(weights["inception"]),
                     "--vgg", str(weights["vgg"]), "--i3d", str(weights["i3d"]),
                     "--json", str(out)]) == 0
    table = capsys.readouterr().out
    for key in ("psnr", "fid", "lpips", "fvd", "mean frame", "5 16-frame clips"):
        assert key in table, table
    result = json.loads(out.read_text())
    assert result["frames"] == 20 and result["fvd_clips"] == 5
    for key in ("mse", "psnr", "ssim", "fid", "lpips", "fvd"):
        assert math.isfinite(result[key]), key
        assert math.isfinite(result["baseline_mean_frame"][key]), key

    fake, real = _held_out(run)
    assert fake.shape == real.shape == (20, 3, 16, 16)
    want_fid = fm.frechet_distance(inception_like(_u8(fake)).double(),
                                   inception_like(_u8(real)).double())
    assert result["fid"] == pytest.approx(want_fid, rel=1e-6)
    want_lpips = (vgg_like(_u8(fake).float()) - vgg_like(_u8(real).float())).square().sum(1)
    assert result["lpips"] == pytest.approx(float(want_lpips.double().mean()), rel=1e-5)
    assert result["fvd"] == pytest.approx(
        fm.frechet_distance(_i3d_direct(fake), _i3d_direct(real)), rel=1e-6)


def test_python_api_computes_only_what_is_asked(run, weights):
    import s2v

    result = s2v.evaluate(run, vgg=weights["vgg"])
    assert "lpips" in result and "lpips" in result["baseline_mean_frame"]
    assert not {"fid", "fvd", "fvd_clips"} & set(result)
    assert not {"fid", "fvd"} & set(result["baseline_mean_frame"])


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_cli_bad_weight_files_give_one_line(run, weights, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    base = ["evaluate", str(run), "--json", str(out)]
    line = _one_line_error(capsys, base + ["--inception", str(tmp_path / "none.pt")])
    assert "--inception" in line and "no such file" in line
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    line = _one_line_error(capsys, base + ["--vgg", str(junk)])
    assert "--vgg" in line and "not a TorchScript archive" in line and "vgg16.pt" in line
    state = tmp_path / "i3d.pt"
    torch.save({"conv.weight": torch.zeros(2, 3)}, state)
    line = _one_line_error(capsys, base + ["--i3d", str(state)])
    assert "--i3d" in line and "torch.save" in line and "i3d_torchscript.pt" in line
    pkl = tmp_path / "inception-2015-12-05.pkl"
    pkl.write_bytes(b"\x80\x04K\x01.")
    assert "pickle" in _one_line_error(capsys, base + ["--inception", str(pkl)])
    line = _one_line_error(capsys, base + ["--inception", str(weights["i3d"])])
    assert "lacks return_features" not in line and "--inception" in line
    assert not out.exists()
