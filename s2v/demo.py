"""``s2v demo``: the whole product on a clip whose ground truth is known.

1. Synthesise a clip: a sequence of tones; a disk whose height follows the
   pitch and whose radius follows the loudness of the current tone.
2. Train the full model on it briefly (CPU, a few minutes by default).
3. Re-animate the held-out last 20 % from its own sound, write the video and a
   contact sheet (ground truth above, generated below), and print PSNR/SSIM against
   the ground truth next to a trivial baseline: the mean training frame. When
   the model does not beat the baseline, the demo says so.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from .image_io import contact_sheet, write_png

SAMPLE_RATE = 44100


def synth_notes(seconds: float, seed: int = 0):
    """Notes as (start, end, pitch Hz, loudness 0..1), back to back."""
    rng = np.random.default_rng(seed)
    notes, t = [], 0.0
    while t < seconds:
        length = float(rng.uniform(0.3, 0.9))
        notes.append((t, min(t + length, seconds), float(220 * 2 ** rng.uniform(0, 2)),
                      float(rng.uniform(0.15, 1.0))))
        t += length
    return notes


def synth_clip(path: str, seconds: float = 30.0, fps: float = 20.0, size: int = 32,
               seed: int = 0) -> None:
    """Write the demo clip (H.264 + AAC) whose picture is a function of its sound."""
    from .media import VideoWriter

    notes = synth_notes(seconds, seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = np.zeros_like(t)
    for start, end, pitch, loud in notes:
        on = (t >= start) & (t < end)
        ramp = np.minimum(1, np.minimum(t[on] - start, end - t[on]) / 0.01)  # no clicks
        wave[on] = 0.5 * loud * ramp * np.sin(2 * np.pi * pitch * (t[on] - start))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    frames = []
    for i in range(int(seconds * fps)):
        now = i / fps
        _, _, pitch, loud = next(n for n in notes if n[0] <= now < n[1] or n is notes[-1])
        height = np.log2(pitch / 220) / 2          # 0 (low) .. 1 (high)
        cy = size * (0.8 - 0.6 * height)
        radius = size * (0.08 + 0.2 * loud)
        disk = ((yy - cy) ** 2 + (xx - size / 2) ** 2) <= radius ** 2
        img = np.full((size, size, 3), 40, np.uint8)
        img[disk] = (255, 200, 60)
        frames.append(img)
    with VideoWriter(path, fps, (size, size), SAMPLE_RATE) as w:
        w.write_audio(wave.astype(np.float32))
        w.write_frames(np.stack(frames))


def run_demo(out_dir: str, minutes: float = 3.0, steps: int = 4000, size: int = 32,
             seconds: float = 30.0, seed: int = 0, device: str = "cpu", backend: str = "auto",
             progress: bool = True) -> dict:
    """Synthesise, train, re-animate and score; everything lands in ``out_dir``."""
    import s2v
    from .evaluation import load, reanimate_holdout
    from .metrics import frame_metrics, to_unit

    from .data import finite_number, min_frames

    shortest = min_frames(8) / 20.0  # T = 8 frames at 20 fps, plus the held-out part
    if not (finite_number(seconds) and seconds >= shortest):
        raise ValueError(f"--seconds: expected a clip length of at least {shortest:g} s, "
                         f"got {seconds!r}")
    os.makedirs(out_dir, exist_ok=True)
    clip_path = os.path.join(out_dir, "demo_clip.mp4")
    synth_clip(clip_path, seconds=seconds, size=size, seed=seed)
    run_dir = os.path.join(out_dir, "run")
    summary = s2v.train(clip_path, run_dir, force=os.path.isdir(run_dir), size=size, frames=8,
                        steps=steps, minutes=minutes, checkpoint_every=max(1, steps),
                        channels_base=128, max_channels=64, config="full", seed=seed,
                        device=device, backend=backend, samples=False, progress=progress)
    g = load(run_dir, device, backend)
    from .data import ClipOptions, prepare_clip

    clip = prepare_clip(clip_path, run_dir, ClipOptions(size=size, fps=20.0), 8, False)
    fake = reanimate_holdout(g, clip, 8, device)
    real = clip.validation().frames.permute(0, 3, 1, 2).float() / 255
    model = frame_metrics(to_unit(fake), real)
    mean_frame = clip.train().frames.float().mean(dim=0).permute(2, 0, 1) / 255
    baseline = frame_metrics(mean_frame.expand_as(real), real)

    generated = (to_unit(fake).clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)
    truth = clip.validation().frames
    picks = np.linspace(0, len(truth) - 1, num=min(8, len(truth))).astype(int)
    pairs = np.concatenate([truth.numpy()[picks], generated.numpy()[picks]])
    write_png(os.path.join(out_dir, "side_by_side.png"),
              contact_sheet(pairs, columns=len(picks)))
    _write_holdout_video(os.path.join(out_dir, "reanimated_holdout.mp4"), clip, generated)
    beats = model["psnr"] > baseline["psnr"] and model["ssim"] > baseline["ssim"]
    result = {"model": model, "mean_frame_baseline": baseline, "beats_baseline": beats,
              "steps": summary["step"], "stopped": summary["stopped"],
              "clip": clip_path, "run_dir": run_dir}
    with open(os.path.join(out_dir, "demo_result.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def _write_holdout_video(path: str, clip, generated: torch.Tensor) -> None:
    """Ground truth | generated, side by side, with the held-out sound."""
    from .media import VideoWriter, read_clip_audio

    rate = 64000
    wave = read_clip_audio(clip.source, rate)
    fps = clip.options.fps
    first = int(round(clip.split / fps * rate))
    frames = np.concatenate([clip.validation().frames.numpy(), generated.numpy()], axis=2)
    with VideoWriter(path, fps, frames.shape[1:3], rate) as w:
        w.write_audio(wave[first:first + int(round(len(frames) / fps * rate))])
        w.write_frames(frames)
