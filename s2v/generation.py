"""``s2v generate``: re-animate the trained scene from any audio file, streamed.

Audio is decoded block by block, features are computed incrementally
(:class:`s2v.audio.FeatureStream`), the generator runs on T-frame chunks with
its states carried, and frames are encoded as they are produced together with
the sound, so memory does not grow with the audio's length. The output is
written under a temporary name and renamed over ``out`` only when complete.
"""
from __future__ import annotations

import contextlib
import numbers
import os
import signal
import time
import warnings

import torch

from . import checkpoint as ckpt
from .audio import FeatureStream, first_frame_seconds
from .devices import tune_for_fixed_shapes
from .evaluation import load
from .metrics import to_unit

SAMPLE_RATE = 64000


class Terminated(KeyboardInterrupt):
    """SIGTERM while generating: unwinds like Ctrl-C, so the partial output is removed
    and an existing file of that name stays as it was."""
    exit_status = 128 + signal.SIGTERM


@contextlib.contextmanager
def _sigterm_unwinds():
    def handle(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread: leave the process's handler alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _checkpoint_file(checkpoint):
    """The checkpoint file ``checkpoint`` names (itself or RUN_DIR/checkpoint.pt), or
    None where there is none (loading it reports that)."""
    try:
        return ckpt.resolve(checkpoint)
    except (OSError, ValueError):
        return None


def generate(checkpoint, audio, out, seed: int = 0, device: str = "cpu",
             backend: str = "auto", precision: str = "fp32", progress: bool = True) -> dict:
    """Write ``out`` (H.264 + AAC) re-animated from ``audio``; returns a summary with the
    real-time factor (seconds of output per second of compute)."""
    from tqdm import tqdm

    from .media import (MediaError, VideoWriter, check_input_file, check_output_file,
                        iter_audio, partial_path, path_argument)

    checkpoint = path_argument(checkpoint, "checkpoint")
    audio = path_argument(audio, "audio")
    out = path_argument(out, "out")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed: expected an integer, got {seed!r}")
    seed = int(seed)
    if not -(2**63) <= seed < 2**64:  # what torch.Generator.manual_seed takes
        raise ValueError(f"--seed: expected a 64-bit integer, got {seed}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"--precision: expected fp32 or bf16, got {precision!r}")
    audio = check_input_file(audio, "an audio or video file")
    out = check_output_file(out, "--out", inputs=((audio, "the input sound file"),
                                                  (_checkpoint_file(checkpoint),
                                                   "the checkpoint")))
    if os.path.splitext(out)[1].lower() not in (".mp4", ".m4v", ".mov"):
        warnings.warn(f"--out {out}: the file is written as MP4 (H.264 + AAC) whatever its "
                      f"extension", stacklevel=2)
    g = load(checkpoint, device, backend)
    cfg = g.s2v_config["data"]
    fps, size, T = cfg["fps"], cfg["size"], cfg["seq_len"]
    stream = FeatureStream(SAMPLE_RATE, fps, cfg["feature_kind"], cfg["bands"], cfg["chunk"])
    noise = torch.Generator().manual_seed(seed)
    dev = torch.device(device)
    tune_for_fixed_shapes(dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    tmp = partial_path(out)
    state, pending, frames, samples = None, [], 0, 0
    peak = 0.0  # loudest sample: all-zero sound drives no motion
    start = time.perf_counter()

    def run(rows: torch.Tensor):
        nonlocal state, frames
        e = torch.rand(1, rows.shape[0], g.e_motion, generator=noise).to(dev)
        z = torch.rand(1, rows.shape[0], g.z_content, generator=noise).to(dev)
        with torch.no_grad(), autocast:
            video, state = g(rows[None].to(dev), e_motion=e, z_content=z, state=state)
        pixels = (to_unit(video[0]).clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        writer.write_frames(pixels.permute(0, 2, 3, 1).cpu().numpy())
        frames += rows.shape[0]

    bar = tqdm(desc="generating", unit="frame", disable=not progress)
    try:
        with _sigterm_unwinds(), torch.random.fork_rng(devices=[]), \
                VideoWriter(tmp, fps, (size, size), SAMPLE_RATE) as writer:
            torch.manual_seed(seed)
            for block in iter_audio(audio, SAMPLE_RATE):
                writer.write_audio(block)
                samples += block.size
                if block.size:
                    peak = max(peak, float(abs(block).max()))
                pending.append(stream.push(torch.from_numpy(block)))
                rows = torch.cat(pending)
                while rows.shape[0] >= T:
                    run(rows[:T])
                    bar.update(T)
                    rows = rows[T:]
                pending = [rows]
            rows = torch.cat(pending + [stream.finish()])
            for first in range(0, rows.shape[0], T):
                run(rows[first:first + T])
                bar.update(min(T, rows.shape[0] - first))
            # (the video lasts as long as the sound: under half a frame period
            # of sound is no frame, whatever the model produced)
            if frames == 0 or round(samples / SAMPLE_RATE * fps) < 1:
                # The first frame needs its whole analysis window (SPEC §1: W
                # spectrogram frames, the first centred on sample 0) and half a frame
                # period of sound.
                needed = max(first_frame_seconds(cfg["chunk"]), 0.5 / fps)
                raise MediaError(f"{audio}: too short to drive even one frame "
                                 f"({samples / SAMPLE_RATE:.3f} s of sound; the first frame "
                                 f"at {fps:g} fps needs at least {needed:.3f} s)")
            if peak == 0.0:
                warnings.warn(f"{audio}: the sound is silent throughout; the video will "
                              f"hardly move", stacklevel=2)
        frames = writer.frames_written  # the last frame is held to the end of the sound
        os.replace(tmp, out)
    finally:
        bar.close()
        if os.path.exists(tmp):
            os.remove(tmp)
    seconds = time.perf_counter() - start
    duration = samples / SAMPLE_RATE
    return {"out": out, "frames": frames, "audio_seconds": duration,
            "compute_seconds": seconds, "real_time_factor": duration / max(seconds, 1e-9),
            "ms_per_frame": 1000 * seconds / max(frames, 1)}
