"""Metrics computed from feature networks: FID (Inception), LPIPS (VGG16), FVD (I3D).

The networks are the de-facto standard TorchScript archives that the GAN metric code
of NVlabs and of StyleGAN-V is built on. s2v never downloads them: the user passes
local files, which are opened with :func:`torch.jit.load` only (TorchScript's own
loader; s2v never unpickles a detector, so the ``.pkl`` variants are refused).

The calling conventions below were checked against the source of the projects that
publish and use these files (a description, no code of theirs is used here):

``inception-2015-12-05.pt`` (FID)
    TorchScript port of TensorFlow's 2015-12-05 Inception graph, published with
    NVlabs/stylegan2-ada-pytorch. Its ``metrics/metric_utils.py`` feeds uint8 NCHW
    images in [0, 255] of any size (the network resizes to 299 inside) and
    ``metrics/frechet_inception_distance.py`` calls it with ``return_features=True``
    for the 2048-d pool features ([N, 2048]); GaParmar/clean-fid
    (``cleanfid/inception_torchscript.py``) wraps the same file.
``vgg16.pt`` (LPIPS)
    VGG16 with the LPIPS channel weights, published with NVlabs/stylegan2-ada-pytorch.
    Its ``projector.py`` and ``metrics/perceptual_path_length.py`` call it as
    ``detector(images, resize_images=False, return_lpips=True)`` with **float32** NCHW
    images in [0, 255] (``projector.py`` casts its uint8 target to float32 and
    area-downsamples anything larger than 256 px to 256 × 256) and take
    ``(a - b).square().sum(1)`` of the returned normalised features as the LPIPS
    distance of each pair. s2v passes the 8-bit values of the frames as float32.
``i3d_torchscript.pt`` (FVD)
    Kinetics-400 I3D published with StyleGAN-V (universome/stylegan-v). Its
    ``src/metrics/frechet_video_distance.py`` calls it with ``rescale=True,
    resize=True, return_features=True`` (400-d features before the softmax) and its
    ``src/metrics/metric_utils.py`` feeds uint8 videos ``[B, 3, T, H, W]`` in
    [0, 255] (``rescale`` maps them to [-1, 1], ``resize`` to 224 × 224 inside);
    ``src/metrics/metric_main.py`` scores 16-frame clips (``fvd2048_16f``).

Fréchet distances use the mean and the covariance normalised by N (as the
``FeatureStats.get_mean_cov`` of those repositories), in float64. With few samples
they are biased upwards: an evaluation on N frames (FID) or clips (FVD) estimates a
covariance of rank at most N - 1 in a 2048- (400-) dimensional space, so a
:class:`SmallSampleWarning` is issued when N is below the feature dimension, and
values are only comparable between evaluations on the same number of frames. They
are not comparable with published FID/FVD figures computed on 50 000 images or
2048 clips.
"""
from __future__ import annotations

import os
import warnings
import zipfile
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CLIP_LEN = 16        # frames per FVD clip (StyleGAN-V's fvd2048_16f)
BATCH = 32           # images per detector call (I3D: BATCH // CLIP_LEN clips)
LPIPS_MAX_SIZE = 256  # larger frames are area-downsampled first, as projector.py does


class SmallSampleWarning(UserWarning):
    """A Fréchet distance from fewer samples than feature dimensions (biased upwards)."""


@dataclass(frozen=True)
class DetectorSpec:
    metric: str            # result key
    flag: str              # command-line flag that names the file
    filename: str          # the published file
    origin: str            # who publishes it (no address: s2v never downloads)
    kwargs: tuple[str, ...]  # keyword arguments forward() must accept


DETECTORS: dict[str, DetectorSpec] = {
    "inception": DetectorSpec(
        "fid", "--inception", "inception-2015-12-05.pt",
        "published with the metrics of NVlabs' stylegan2-ada-pytorch",
        ("return_features",)),
    "vgg": DetectorSpec(
        "lpips", "--vgg", "vgg16.pt",
        "published with the metrics of NVlabs' stylegan2-ada-pytorch",
        ("resize_images", "return_lpips")),
    "i3d": DetectorSpec(
        "fvd", "--i3d", "i3d_torchscript.pt",
        "published with the FVD metric of StyleGAN-V, universome/stylegan-v",
        ("rescale", "resize", "return_features")),
}


class Detector:
    """A loaded TorchScript feature network and where it came from (for messages)."""

    def __init__(self, module, spec: DetectorSpec, path: str, device):
        self.module, self.spec, self.path, self.device = module, spec, path, device

    def __call__(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        try:
            out = self.module(x.to(self.device), **kwargs)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, torch.jit.Error) as exc:  # jit.Error: an assert in the script
            first = str(exc).strip().splitlines()
            raise ValueError(f"{self.spec.flag} {self.path}: the network failed on "
                             f"{x.dtype} input of shape {tuple(x.shape)} "
                             f"({first[-1][:160] if first else type(exc).__name__}); is "
                             f"it {self.spec.filename}?") from exc
        if not isinstance(out, torch.Tensor) or out.shape[0] != x.shape[0]:
            raise ValueError(f"{self.spec.flag} {self.path}: expected one feature row per "
                             f"input from {self.spec.filename}, got "
                             f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}")
        return out.reshape(x.shape[0], -1)


def _expected(spec: DetectorSpec) -> str:
    return (f"expected a TorchScript archive such as {spec.filename}, {spec.origin} "
            f"(s2v never downloads it)")


def load_detector(path, kind: str, device="cpu") -> Detector:
    """Load the TorchScript feature network ``kind`` (``inception``, ``vgg`` or ``i3d``)
    from the local file ``path`` onto ``device``; one-line errors name the flag."""
    spec = DETECTORS[kind]
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{spec.flag} {path}: is a directory; give the file itself "
                                f"({spec.metric.upper()} needs {spec.filename}, a local "
                                f"TorchScript file)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{spec.flag} {path}: no such file ({spec.metric.upper()} "
                                f"needs {spec.filename}, a local TorchScript file)")
    if path.lower().endswith((".pkl", ".pickle")):
        raise ValueError(f"{spec.flag} {path}: a Python pickle, which s2v does not load "
                         f"(unpickling can run arbitrary code); {_expected(spec)}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{spec.flag} {path}: not a TorchScript archive; {_expected(spec)}")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if not any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        raise ValueError(f"{spec.flag} {path}: a torch.save() archive (weights, not a "
                         f"scripted network); {_expected(spec)}")
    try:
        with warnings.catch_warnings():  # torch >= 2.10 flags TorchScript as deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(path, map_location=torch.device(device))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(f"{spec.flag} {path}: unreadable TorchScript archive "
                         f"({first[0][:120] if first else type(exc).__name__}); "
                         f"{_expected(spec)}") from None
    try:
        args = [a.name for a in module.forward.schema.arguments][1:]
    except AttributeError:
        args = []
    missing = [k for k in spec.kwargs if k not in args]
    if missing:
        raise ValueError(f"{spec.flag} {path}: its forward({', '.join(args)}) lacks "
                         f"{', '.join(missing)}, so it is not {spec.filename} "
                         f"({spec.metric.upper()})")
    return Detector(module.eval(), spec, path, device)


def load_detectors(inception=None, vgg=None, i3d=None, device="cpu") -> dict[str, Detector]:
    """The detectors whose files are given, keyed ``inception``/``vgg``/``i3d``."""
    given = {"inception": inception, "vgg": vgg, "i3d": i3d}
    return {k: load_detector(p, k, device) for k, p in given.items() if p}


# ----------------------------------------------------------------------------- Fréchet


def _sym_sqrt(m: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (eigh; tiny negative
    eigenvalues from rounding clamped to 0)."""
    w, v = torch.linalg.eigh((m + m.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance_from_moments(mu1, sigma1, mu2, sigma2) -> float:
    """``|mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)`` in float64, without scipy.

    ``tr((S1 S2)^½) = tr((S1^½ S2 S1^½)^½)``, the sum of the square roots of the
    eigenvalues of the symmetric PSD matrix ``S1^½ S2 S1^½``; both steps use
    symmetric eigendecompositions, with rounding's tiny negatives clamped to 0."""
    mu1, mu2 = (torch.as_tensor(m, dtype=torch.float64).cpu() for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(s, dtype=torch.float64).cpu() for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.numel(),) * 2:
        raise ValueError(f"Fréchet distance: mismatched moments {tuple(mu1.shape)}, "
                         f"{tuple(s1.shape)} vs {tuple(mu2.shape)}, {tuple(s2.shape)}")
    root1 = _sym_sqrt(s1)
    inner = root1 @ s2 @ root1
    covmean_trace = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    d = (mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * covmean_trace
    return max(float(d), 0.0)


def feature_moments(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (normalised by N) of ``feats [N, D]`` in float64."""
    x = torch.as_tensor(feats).double().reshape(feats.shape[0], -1)
    if x.shape[0] < 1:
        raise ValueError("Fréchet distance: no samples")
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / x.shape[0]


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to ``feats_a [N, D]``, ``feats_b [M, D]``."""
    return frechet_distance_from_moments(*feature_moments(feats_a), *feature_moments(feats_b))


def _warn_small(metric: str, n: int, dim: int, what: str) -> None:
    if n < dim:
        warnings.warn(f"{metric} from {n} {what} with {dim}-dimensional features is "
                      f"biased upwards (its covariance has rank at most {n - 1}); compare "
                      f"it only between evaluations on the same number of {what}",
                      SmallSampleWarning, stacklevel=3)


# -------------------------------------------------------------------- feature extraction


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """``[..., 3, H, W]`` in [0, 1] -> uint8 in [0, 255] (rounded, as a video frame)."""
    return (frames.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def _check_frames(frames: torch.Tensor, name: str) -> None:
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"{name}: expected frames [N, 3, H, W], got {tuple(frames.shape)}")


@torch.no_grad()
def inception_features(detector: Detector, frames: torch.Tensor,
                       batch: int = BATCH) -> torch.Tensor:
    """Pool features ``[N, D]`` (float64, CPU) of ``frames [N, 3, H, W]`` in [0, 1],
    fed as uint8 NCHW with ``return_features=True``, ``batch`` images per call."""
    _check_frames(frames, "inception")
    return torch.cat([detector(to_uint8(frames[i:i + batch]), return_features=True)
                      .double().cpu() for i in range(0, frames.shape[0], batch)])


def _vgg_input(frames: torch.Tensor) -> torch.Tensor:
    x = to_uint8(frames).float()  # the 8-bit values, as float32 (projector.py's input)
    if max(x.shape[-2:]) > LPIPS_MAX_SIZE:
        x = F.interpolate(x, size=(LPIPS_MAX_SIZE, LPIPS_MAX_SIZE), mode="area")
    return x


@torch.no_grad()
def lpips_features(detector: Detector, frames: torch.Tensor) -> torch.Tensor:
    """Normalised LPIPS features ``[N, D]`` (on the detector's device) of ``frames`` in
    [0, 1], fed as float32 NCHW with the 8-bit values, ``resize_images=False``."""
    _check_frames(frames, "lpips")
    return detector(_vgg_input(frames), resize_images=False, return_lpips=True)


def clip_windows(frames: torch.Tensor, clip_len: int = CLIP_LEN,
                 stride: int = 1) -> torch.Tensor:
    """Every ``clip_len``-frame window of ``frames [N, 3, H, W]`` starting at multiples of
    ``stride``: a view ``[K, clip_len, 3, H, W]``, K = (N - clip_len) // stride + 1."""
    _check_frames(frames, "fvd")
    if frames.shape[0] < clip_len:
        raise ValueError(f"FVD needs at least {clip_len} held-out frames (it scores "
                         f"{clip_len}-frame clips, as StyleGAN-V does) but there are only "
                         f"{frames.shape[0]}; evaluate on a longer clip or leave out --i3d")
    return frames.unfold(0, clip_len, stride).permute(0, 4, 1, 2, 3)


@torch.no_grad()
def i3d_features(detector: Detector, clips: torch.Tensor,
                 batch: int = BATCH) -> torch.Tensor:
    """Features ``[K, D]`` (float64, CPU) of ``clips [K, T, 3, H, W]`` in [0, 1], fed as
    uint8 ``[B, 3, T, H, W]`` with ``rescale=True, resize=True, return_features=True``,
    ``max(1, batch // T)`` clips per call."""
    per_call = max(1, batch // clips.shape[1])
    return torch.cat([
        detector(to_uint8(clips[i:i + per_call]).permute(0, 2, 1, 3, 4).contiguous(),
                 rescale=True, resize=True, return_features=True).double().cpu()
        for i in range(0, clips.shape[0], per_call)])


# ----------------------------------------------------------------------------- metrics


def _same_shape(fake: torch.Tensor, real: torch.Tensor) -> None:
    if fake.shape != real.shape:
        raise ValueError(f"frames: shapes differ, {tuple(fake.shape)} vs {tuple(real.shape)}")


def fid(detector: Detector, fake: torch.Tensor, real: torch.Tensor,
        batch: int = BATCH) -> float:
    """FID between the frames ``fake`` and ``real`` (``[N, 3, H, W]`` in [0, 1]), each set
    of frames taken as a sample of images. Biased upwards when N is below the feature
    dimension (2048 for the real Inception): a :class:`SmallSampleWarning` says so."""
    return compare({"inception": detector}, fake, real, batch=batch, baseline=False)[0]["fid"]


def lpips(detector: Detector, fake: torch.Tensor, real: torch.Tensor,
          batch: int = BATCH) -> float:
    """Mean LPIPS distance over the pairs ``(fake[i], real[i])``."""
    return compare({"vgg": detector}, fake, real, batch=batch, baseline=False)[0]["lpips"]


def fvd(detector: Detector, fake: torch.Tensor, real: torch.Tensor,
        batch: int = BATCH, stride: int = 1) -> float:
    """FVD between the 16-frame clips of the sequences ``fake`` and ``real`` (see
    :func:`compare` for which clips)."""
    return compare({"i3d": detector}, fake, real, batch=batch, baseline=False,
                   fvd_stride=stride)[0]["fvd"]


def compare(detectors: dict[str, Detector], fake: torch.Tensor, real: torch.Tensor,
            batch: int = BATCH, baseline: bool = True,
            fvd_stride: int = 1) -> tuple[dict[str, float], dict[str, float] | None]:
    """FID / LPIPS / FVD (for the detectors given) of the frame sequence ``fake`` against
    ``real`` (both ``[N, 3, H, W]`` in [0, 1], frame i of one paired with frame i of the
    other), and with ``baseline`` the same metrics of the mean real frame repeated N
    times (its features are computed once and repeated: the same numbers as feeding N
    copies, whose covariance is zero); the real features are computed once per network
    and shared by both. With ``i3d`` the first dict also holds ``fvd_clips`` (int).

    * FID: the N frames of each side as samples of images.
    * LPIPS: the mean over the N pairs.
    * FVD: every 16-frame window of each sequence (stride ``fvd_stride``, default 1:
      N - 15 overlapping clips), i.e. each clip that StyleGAN-V's random-offset
      sampling of 16 consecutive frames could draw from the held-out part, once. This
      gives the most samples a short held-out part allows (neighbouring clips are
      correlated, so it is no substitute for more footage); fewer than 16 frames is
      an error, not a shorter clip, as I3D features of shorter clips are not the
      same metric.
    """
    _check_frames(real, "real")
    _same_shape(fake, real)
    n = real.shape[0]
    if n < 1:
        raise ValueError("frames: no held-out frames to score")
    if "i3d" in detectors:  # fail before any network runs
        clip_windows(real, CLIP_LEN, fvd_stride)
    mean_frame = real.double().mean(0, keepdim=True).float()
    model: dict[str, float] = {}
    base: dict[str, float] = {}
    if "inception" in detectors:
        det = detectors["inception"]
        real_f = inception_features(det, real, batch)
        model["fid"] = frechet_distance(inception_features(det, fake, batch), real_f)
        _warn_small("FID", n, real_f.shape[1], "frames")
        if baseline:
            mean_f = inception_features(det, mean_frame, batch).expand(n, -1)
            base["fid"] = frechet_distance(mean_f, real_f)
    if "vgg" in detectors:
        det = detectors["vgg"]
        mean_f = lpips_features(det, mean_frame) if baseline else None
        step = max(1, batch // 2)  # fake and real of a pair share one call
        total = base_total = 0.0
        for i in range(0, n, step):
            k = min(step, n - i)
            feats = lpips_features(det, torch.cat([fake[i:i + k], real[i:i + k]]))
            fake_f, real_f = feats[:k], feats[k:]
            total += float((fake_f - real_f).square().sum(dtype=torch.float64))
            if mean_f is not None:
                base_total += float((mean_f - real_f).square().sum(dtype=torch.float64))
        model["lpips"] = total / n
        if baseline:
            base["lpips"] = base_total / n
    if "i3d" in detectors:
        det = detectors["i3d"]
        real_c = clip_windows(real, CLIP_LEN, fvd_stride)
        real_f = i3d_features(det, real_c, batch)
        model["fvd"] = frechet_distance(
            i3d_features(det, clip_windows(fake, CLIP_LEN, fvd_stride), batch), real_f)
        model["fvd_clips"] = real_c.shape[0]
        _warn_small("FVD", real_c.shape[0], real_f.shape[1], "clips")
        if baseline:
            still = mean_frame.expand(CLIP_LEN, -1, -1, -1)[None]
            mean_f = i3d_features(det, still, batch).expand(real_c.shape[0], -1)
            base["fvd"] = frechet_distance(mean_f, real_f)
    return model, (base if baseline else None)


__all__ = ["CLIP_LEN", "DETECTORS", "Detector", "SmallSampleWarning", "clip_windows",
           "compare", "feature_moments", "fid", "frechet_distance",
           "frechet_distance_from_moments", "fvd", "i3d_features", "inception_features",
           "load_detector", "load_detectors", "lpips", "lpips_features", "to_uint8"]
