"""One-shot training data: a video's frames and per-frame audio features (SPEC §7).

:func:`prepare_clip` decodes a video once into uint8 frames ``[N, S, S, 3]``
and features ``[N, F]`` and caches them under ``<run_dir>/cache/`` keyed by
the file's content hash and every preprocessing option, so a second run (or a
``--resume``) reuses them. The first 80 % of the frames train, the last 20 %
validate. :class:`SequenceSampler` walks the training frames in consecutive,
non-overlapping T-frame windows so that recurrent states carry from one batch
to the next; at the end of the data a stream draws a new random offset in
``[0, T)`` and asks for a state reset. B > 1 runs B such streams at different
offsets.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from .audio import features as audio_features
from .audio import first_frame_seconds
from .checkpoint import first_line, save_atomic

CACHE_VERSION = 1
TRAIN_FRACTION = 0.8
SAMPLE_RATE = 64000


def finite_number(value) -> bool:
    """A finite real number: int or float, not a bool, not a string, not inf or NaN."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


@dataclass(frozen=True)
class ClipOptions:
    """Every option that changes the cached tensors (part of the cache key)."""
    size: int = 128
    fps: float = 20.0
    crop: Optional[Tuple[int, int, int, int]] = None
    feature_kind: str = "lms"
    bands: int = 64
    chunk: float = 0.085

    def validate(self) -> None:
        if not (finite_number(self.fps) and self.fps > 0):
            raise ValueError(f"fps: expected a positive frame rate, got {self.fps!r}")
        if self.fps > MAX_FPS:
            raise ValueError(f"fps: at most {MAX_FPS} frames per second, got {self.fps:g}")
        if self.size < 1:
            raise ValueError(f"size: expected a positive frame size, got {self.size}")


# Above this the sound's hop between frames falls under 64 samples (at 64 kHz):
# no clip is filmed that fast, and a typo (--fps 1e6) would ask for terabytes.
MAX_FPS = 1000


@dataclass
class Clip:
    """A prepared clip: ``frames`` uint8 ``[N, S, S, 3]``, ``features`` float32 ``[N, F]``."""
    frames: torch.Tensor
    features: torch.Tensor
    options: ClipOptions
    source: str
    digest: str = ""  # SHA-256 of the source file's bytes (set by prepare_clip)

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def split(self) -> int:
        """Index of the first validation frame."""
        return int(self.num_frames * TRAIN_FRACTION)

    def train(self) -> "Clip":
        return Clip(self.frames[:self.split], self.features[:self.split], self.options,
                    self.source)

    def validation(self) -> "Clip":
        return Clip(self.frames[self.split:], self.features[self.split:], self.options,
                    self.source)


def file_digest(path, block: int = 1 << 20) -> str:
    """SHA-256 of the file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(block), b""):
            h.update(piece)
    return h.hexdigest()


def cache_key(path, options: ClipOptions, digest: str | None = None) -> str:
    """Cache entry name of ``path`` decoded with ``options`` (``digest``: the file's
    SHA-256 when the caller has it already)."""
    payload = json.dumps({"file": digest or file_digest(path), "options": asdict(options),
                          "version": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def min_frames(seq_len: int) -> int:
    """Smallest clip length whose 80 % holds one T-frame window and whose 20 % is not empty."""
    n = math.ceil(seq_len / TRAIN_FRACTION)
    while int(n * TRAIN_FRACTION) < seq_len or n - int(n * TRAIN_FRACTION) < 1:
        n += 1
    return n


def _check_decoded_size(path, duration, options: ClipOptions) -> None:
    """Refuse a clip whose decoded frames would not fit in half the machine's memory
    (a long clip at a high --fps or --size), before decoding any of it."""
    from .media import MediaError

    if not duration:
        return
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return
    frames = int(duration * options.fps)
    need = frames * (3 * options.size * options.size + 4 * options.bands)
    if need > memory / 2:
        raise MediaError(f"{path}: {duration:.1f} s at {options.fps:g} fps is {frames:,} frames, "
                         f"{need / 2**30:.1f} GiB decoded at {options.size} px: more than half "
                         f"of this machine's memory; lower --fps or --size, or cut the clip")


def decode_clip(path, options: ClipOptions, progress: bool = False) -> Clip:
    """Decode frames and features of ``path`` (no cache)."""
    from .media import MediaError, iter_frames, read_clip_audio, video_info

    options.validate()
    info = video_info(path)
    if not info.has_audio:
        raise MediaError(f"{path}: has no audio stream; the model is driven by the clip's "
                         f"sound")
    _check_decoded_size(path, info.duration, options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Sound sample 0 at the instant of video frame 0: the streams of a file may
        # start at different times.
        wave = read_clip_audio(path, SAMPLE_RATE)
    for w in caught:
        warnings.warn(str(w.message), stacklevel=3)
    feats = audio_features(torch.from_numpy(wave), SAMPLE_RATE, options.fps,
                           options.feature_kind, options.bands, options.chunk)
    frames = []
    total = int(info.duration * options.fps) if info.duration else None
    iterator = iter_frames(path, options.fps, options.size, options.crop,
                           max_frames=feats.shape[0] or None)
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, total=min(total or feats.shape[0], feats.shape[0]),
                        desc="decoding", unit="frame")
    for frame in iterator:
        frames.append(frame)
    n = min(len(frames), feats.shape[0])
    if total and feats.shape[0] < 0.9 * total - 1:
        warnings.warn(f"{path}: the sound lasts {feats.shape[0] / options.fps:.2f} s of the "
                      f"{total / options.fps:.2f} s video; only that part is used",
                      stacklevel=3)
    stacked = np.stack(frames[:n]) if n else np.zeros((0, options.size, options.size, 3),
                                                      np.uint8)
    return Clip(torch.from_numpy(stacked), feats[:n].contiguous(), options, os.fspath(path))


def prepare_clip(path, run_dir, options: ClipOptions = ClipOptions(), seq_len: int = 32,
                 progress: bool = True) -> Clip:
    """Decoded, cached clip; raises a clear error when it is too short for ``seq_len``."""
    from .media import MediaError, check_input_file

    path = check_input_file(path, "a video file")
    options.validate()
    cache_dir = os.path.join(os.fspath(run_dir), "cache")
    digest = file_digest(path)  # read once: the cache key and the run's record of its clip
    cache_file = os.path.join(cache_dir, f"clip-{cache_key(path, options, digest)}.pt")
    clip = _load_cached(cache_file, options, path)
    if clip is None:
        clip = decode_clip(path, options, progress)
        os.makedirs(cache_dir, exist_ok=True)
        # Atomic (a crash or a full disk never leaves a half-written entry), and
        # ranks of one run racing here each write their own temporary file.
        save_atomic({"frames": clip.frames, "features": clip.features,
                     "options": asdict(options), "source": path}, cache_file,
                    "decoded-clip cache")
    clip.digest = digest
    needed = min_frames(seq_len)
    if clip.num_frames < needed:
        # num_frames counts frames that have both a picture and a complete sound
        # chunk (SPEC §1), so it is not the file's duration times fps; frame i's
        # chunk ends one analysis window after i / fps.
        seconds = (needed - 1) / options.fps + first_frame_seconds(options.chunk)
        got = f"{clip.num_frames} frame{'' if clip.num_frames == 1 else 's'}"
        raise MediaError(
            f"{path}: too short: it gives {got} with sound at {options.fps:g} fps, but "
            f"T = {seq_len} frames plus a 20 % validation part need {needed} frames "
            f"(about {seconds:.2f} s of video with sound)")
    if not torch.any(clip.features != clip.features[0]):
        warnings.warn(f"{path}: the audio features do not change over the clip (silent or "
                      f"constant sound); the model cannot learn sound-driven motion",
                      stacklevel=2)
    return clip


def _load_cached(cache_file: str, options: ClipOptions, path: str) -> Optional[Clip]:
    """The cached clip, or None when there is none. The cache is derived data: an entry
    that cannot be read (a partial copy, a damaged disk) is dropped with a warning and
    the clip is decoded again."""
    if not os.path.isfile(cache_file):
        return None
    try:
        data = torch.load(cache_file, weights_only=True)
        clip = Clip(data["frames"], data["features"], options, path)
        if clip.frames.shape[0] != clip.features.shape[0] or clip.frames.dtype != torch.uint8:
            raise ValueError("frames and features disagree")
        return clip
    except Exception as exc:  # noqa: BLE001 - any unreadable entry is rebuilt
        warnings.warn(f"{cache_file}: unreadable decoded-clip cache ({first_line(exc)}); "
                      f"decoding the video again", stacklevel=3)
        try:
            os.remove(cache_file)
        except OSError:
            pass
        return None


class SequenceSampler:
    """Consecutive non-overlapping T-frame windows for B parallel streams (SPEC §7).

    ``starts, reset = sampler.next()``: ``starts [B]`` first frame of each stream's
    window, ``reset [B]`` (bool) true where that stream begins anew (first call, or
    it ran past the end and drew a new random offset in ``[0, T)``), i.e. where the
    caller must zero that sequence's recurrent state.
    """

    def __init__(self, num_frames: int, seq_len: int, batch: int = 1, seed: int = 0):
        if seq_len < 1 or batch < 1:
            raise ValueError(f"seq_len and batch must be >= 1, got {seq_len}, {batch}")
        if num_frames < seq_len:
            raise ValueError(f"num_frames: {num_frames} frames cannot hold one window of "
                             f"{seq_len}")
        self.num_frames, self.seq_len, self.batch = num_frames, seq_len, batch
        self.rng = np.random.default_rng(seed)
        windows = num_frames // seq_len
        # Spread the streams over the clip so they see different content at once.
        self.positions = [((b * windows) // batch) * seq_len + self._offset()
                          for b in range(batch)]
        self.positions = [p if p + seq_len <= num_frames else self._offset()
                          for p in self.positions]
        self.fresh = [True] * batch

    def _offset(self) -> int:
        offset = int(self.rng.integers(0, self.seq_len))
        return offset if offset + self.seq_len <= self.num_frames else 0

    def next(self) -> Tuple[torch.Tensor, torch.Tensor]:
        starts, reset = [], []
        for b in range(self.batch):
            if self.positions[b] + self.seq_len > self.num_frames:
                self.positions[b] = self._offset()
                self.fresh[b] = True
            starts.append(self.positions[b])
            reset.append(self.fresh[b])
            self.fresh[b] = False
            self.positions[b] += self.seq_len
        return torch.tensor(starts), torch.tensor(reset)

    def state_dict(self) -> dict:
        return {"positions": list(self.positions), "fresh": list(self.fresh),
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.positions = list(state["positions"])
        self.fresh = list(state["fresh"])
        self.rng.bit_generator.state = state["rng"]


def batch_windows(clip: Clip, starts: torch.Tensor, seq_len: int):
    """Frames ``[B, T, 3, S, S]`` in [-1, 1] (float32) and features ``[B, T, F]``."""
    index = starts[:, None] + torch.arange(seq_len)
    frames = clip.frames[index].permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0
    return frames, clip.features[index]
