"""``s2v evaluate``: re-animate the held-out 20 % from its own sound and compare.

The generator's states are warmed on the preceding frames' audio, the motion
noise is drawn with seed 0, and MSE, PSNR and SSIM (11×11 Gaussian, σ 1.5) on
RGB in [0, 1] are averaged over the held-out frames. Given local TorchScript
weight files (never downloaded), FID, LPIPS and FVD are added
(:mod:`s2v.feature_metrics`). Every metric is also computed for the mean real
frame repeated, a baseline that any useful model must beat.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings

import torch

from . import checkpoint as ckpt
from .data import SAMPLE_RATE, ClipOptions, prepare_clip
from .devices import resolve_device
from .metrics import frame_metrics, to_unit

# Below this many held-out frames evaluate warns that its averages are noisy.
FEW_FRAMES = 10


def load(checkpoint, device: str = "cpu", backend: str = "auto"):
    """The trained generator of ``checkpoint`` (file or run dir), in eval mode.

    Its ``s2v_config`` attribute holds the checkpoint's configuration (frame size,
    fps, features) so that callers need no other flags.
    """
    from .media import path_argument
    from .models import Generator
    from .ops.backend import BackendUnavailableError

    checkpoint = path_argument(checkpoint, "checkpoint")
    dev = resolve_device(device)
    saved = ckpt.load(checkpoint)
    path = ckpt.resolve(checkpoint)
    try:
        g = Generator(**saved["config"]["generator"], backend=backend)
        g.load_state_dict(saved["generator"])
        _check_data_config(saved["config"]["data"], g.output_size)
    except BackendUnavailableError:
        raise  # the checkpoint is fine: the backend is not available here
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise ckpt.CheckpointError(f"{path}: incompatible checkpoint "
                                   f"({_state_dict_problem(exc)})") from None
    bad = [name for name, t in g.state_dict().items()
           if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ckpt.CheckpointError(f"{path}: the generator holds non-finite weights (NaN or "
                                   f"inf in {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}"
                                   f"): the run diverged or the file was altered; use an "
                                   f"earlier checkpoint")
    g.s2v_config = saved["config"]
    g.s2v_step = int(saved["step"])
    return g.to(dev).eval()


def _check_data_config(data: dict, output_size: int) -> None:
    """ValueError unless the checkpoint's preprocessing settings are usable (a
    hand-edited or foreign config would otherwise fail deep inside generation)."""
    from .audio import FeatureStream

    ClipOptions(size=data["size"], fps=data["fps"], feature_kind=data["feature_kind"],
                bands=data["bands"], chunk=data["chunk"]).validate()
    if data["size"] != output_size:
        raise ValueError(f"config: frame size {data['size']} but the generator makes "
                         f"{output_size}-px frames")
    seq_len = data["seq_len"]
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"config: seq_len must be a positive integer, got {seq_len!r}")
    FeatureStream(SAMPLE_RATE, data["fps"], data["feature_kind"], data["bands"], data["chunk"])


def _state_dict_problem(exc: BaseException) -> str:
    """The first concrete problem in a load_state_dict error (a missing key, a size
    mismatch), not its "Error(s) in loading state_dict" heading."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        return lines[1][:200]
    return ckpt.first_line(exc, 200)


@torch.no_grad()
def reanimate(g, features: torch.Tensor, seq_len: int, first_output: int = 0,
              seed: int = 0, device=None) -> torch.Tensor:
    """Run ``g`` over ``features [N, F]`` in ``seq_len`` chunks, states carried, and
    return the frames from ``first_output`` on (``[N - first_output, 3, S, S]`` in
    [-1, 1]). The global RNG is left untouched (noise injection draws from a fork)."""
    device = device or next(g.parameters()).device
    noise = torch.Generator().manual_seed(seed)
    kept, state = [], None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, features.shape[0], seq_len):
            chunk = features[start:start + seq_len].to(device)
            e = torch.rand(1, chunk.shape[0], g.e_motion, generator=noise).to(device)
            z = torch.rand(1, chunk.shape[0], g.z_content, generator=noise).to(device)
            video, state = g(chunk[None], e_motion=e, z_content=z, state=state)
            if start + chunk.shape[0] > first_output:
                kept.append(video[0, max(first_output - start, 0):].float().cpu())
    return torch.cat(kept) if kept else torch.zeros(0)


def reanimate_holdout(g, clip, seq_len: int, device=None, warmup: int | None = None,
                      seed: int = 0) -> torch.Tensor:
    """Frames for ``clip``'s validation part; states warmed on (the last ``warmup`` of)
    the preceding frames' audio (all of them when ``warmup`` is None)."""
    first = 0 if warmup is None else max(0, clip.split - warmup)
    return reanimate(g, clip.features[first:], seq_len, clip.split - first, seed, device)


def write_sample(path: str, fake: torch.Tensor, clip) -> None:
    """An mp4 of generated validation frames with the clip's own sound for that span."""
    from .media import VideoWriter, partial_path, read_clip_audio

    rate = 64000
    wave = read_clip_audio(clip.source, rate)
    fps = clip.options.fps
    first = round(clip.split / fps * rate)
    last = round((clip.split + fake.shape[0]) / fps * rate)
    frames = (to_unit(fake).clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = partial_path(path)
    try:
        with VideoWriter(tmp, fps, tuple(frames.shape[1:3]), rate) as w:
            w.write_audio(wave[first:last])
            w.write_frames(frames.numpy())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def evaluate(checkpoint, video=None, json_path=None, device: str = "cpu",
             backend: str = "auto", inception=None, vgg=None, i3d=None,
             progress: bool = False) -> dict:
    """Metrics of the checkpoint's re-animation of the held-out 20 % of ``video``
    (default: the training video recorded in the checkpoint).

    Returns ``{"mse", "psnr", "ssim", "frames", "step", "video",
    "baseline_mean_frame": {...}}`` and, for each weight file given, ``"fid"``
    (``inception``: path of the TorchScript ``inception-2015-12-05.pt``), ``"lpips"``
    (``vgg``: ``vgg16.pt``) and ``"fvd"`` (``i3d``: ``i3d_torchscript.pt``, needs at
    least 16 held-out frames; ``"fvd_clips"`` says how many 16-frame clips it
    compared); ``baseline_mean_frame`` holds the same metrics for the mean real
    frame. The files are local TorchScript archives, loaded onto ``device`` with
    ``torch.jit.load`` and never downloaded (see :mod:`s2v.feature_metrics` for their
    interfaces); they are checked before anything else runs. FID and FVD from a short
    held-out part are biased upwards (a warning says so): compare them only between
    evaluations on the same clip. ``json_path``: also write the result there.

    Example::

        s2v.evaluate("runs/clip", inception="inception-2015-12-05.pt",
                     vgg="vgg16.pt", i3d="i3d_torchscript.pt")
    """
    from .feature_metrics import compare, load_detectors
    from .media import check_input_file, check_output_file, path_argument

    checkpoint = path_argument(checkpoint, "checkpoint")
    video = path_argument(video, "video", optional=True)
    json_path = path_argument(json_path, "json_path", optional=True)
    resolve_device(device)  # before the metric networks load onto it
    detectors = load_detectors(inception=inception, vgg=vgg, i3d=i3d, device=device)
    g = load(checkpoint, device, backend)
    cfg = g.s2v_config["data"]
    checkpoint_file = ckpt.resolve(checkpoint)
    if video is None:
        video = cfg["video"]
        if not os.path.isfile(video):
            raise FileNotFoundError(f"{video}: the training video is not there any more; "
                                    f"pass --video with the clip to evaluate on")
    else:
        check_input_file(video, "a video file", "--video")
    if json_path is not None:  # checked before minutes of work, not after
        json_path = check_output_file(json_path, "--json",
                                      inputs=((checkpoint_file, "the checkpoint"),
                                              (video, "the video being evaluated")))
    options = ClipOptions(size=cfg["size"], fps=cfg["fps"],
                          crop=tuple(cfg["crop"]) if cfg["crop"] else None,
                          feature_kind=cfg["feature_kind"], bands=cfg["bands"],
                          chunk=cfg["chunk"])
    run_dir = os.path.dirname(checkpoint_file)
    with tempfile.TemporaryDirectory() as scratch:
        cache = run_dir if os.access(run_dir, os.W_OK) else scratch
        clip = prepare_clip(video, cache, options, cfg["seq_len"], progress)
    fake = reanimate_holdout(g, clip, cfg["seq_len"], device)
    real = clip.validation().frames.permute(0, 3, 1, 2).float() / 255
    if real.shape[0] < FEW_FRAMES:
        warnings.warn(f"{video}: only {real.shape[0]} held-out frame"
                      f"{'' if real.shape[0] == 1 else 's'} to score: the metrics are noisy; "
                      f"a longer clip gives steadier figures", stacklevel=2)
    result = frame_metrics(to_unit(fake), real)
    mean_frame = real.mean(dim=0, keepdim=True).expand_as(real)
    baseline = frame_metrics(mean_frame, real)
    baseline = {k: baseline[k] for k in ("mse", "psnr", "ssim")}
    if detectors:
        model, base = compare(detectors, to_unit(fake).clamp(0, 1), real)
        result.update(model)
        baseline.update(base)
    result.update({"baseline_mean_frame": baseline, "step": g.s2v_step,
                   "video": os.fspath(video)})
    if json_path is not None:
        ckpt.write_atomic(json_path, lambda f: f.write(json.dumps(result, indent=2).encode()),
                          "metrics JSON")
    return result


FORMATS = (("mse", "{:.5f}"), ("psnr", "{:.2f} dB"), ("ssim", "{:.4f}"),
           ("fid", "{:.2f}"), ("lpips", "{:.4f}"), ("fvd", "{:.2f}"))


def format_table(result: dict) -> str:
    """The metrics present in ``result``, model and mean-frame baseline side by side."""
    base = result["baseline_mean_frame"]
    rows = [f"{'metric':<8}{'model':>12}{'mean frame':>14}"]
    for key, fmt in FORMATS:
        if key in result:
            b = fmt.format(base[key]) if key in base else "-"
            rows.append(f"{key:<8}{fmt.format(result[key]):>12}{b:>14}")
    tail = f"{result['frames']} held-out frame{'' if result['frames'] == 1 else 's'}"
    if "fvd_clips" in result:
        tail += f" ({result['fvd_clips']} 16-frame clips for FVD)"
    rows.append(f"{tail}, checkpoint step {result['step']}")
    return "\n".join(rows)


__all__ = ["evaluate", "format_table", "load", "reanimate", "reanimate_holdout",
           "write_sample"]
