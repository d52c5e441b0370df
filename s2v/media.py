"""Reading and writing media with PyAV (imported lazily; no ffmpeg binary).

* :func:`video_info` / :func:`iter_frames`: a video's frames at a target fps,
  chosen by timestamp (sample-and-hold: output frame i is the source frame on
  screen at ``t_i = i / fps``), optionally cropped to ``(x, y, w, h)`` and
  resized to ``S×S`` with an area (antialiased) filter, as uint8 ``[S, S, 3]``,
  streamed: only one decoded frame is alive at a time, and frames that are not
  selected are never converted.
* :func:`iter_audio` / :func:`read_audio`: the audio track of any file PyAV
  decodes, any sample format or channel layout, resampled with swresample's
  band-limited (windowed-sinc) resampler and averaged to mono float32, placed
  by its timestamps: gaps in the track become silence, and given a time origin
  (the first video frame's, :func:`video_start_time`) sample 0 is the sound at
  that instant, so frames and sound stay in step when the streams start at
  different times.
* :class:`VideoWriter`: H.264 (yuv420p) with the driving audio muxed as AAC,
  frames encoded as they arrive, both streams trimmed to the audio's duration.

Every problem with a file raises :class:`MediaError` (a ``ValueError``) whose
one-line message names the file and the problem; a missing file raises
``FileNotFoundError``.
"""
from __future__ import annotations

import math
import os
import uuid
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np


class MediaError(ValueError):
    """A media file cannot be used: not media, corrupt, or lacking a needed stream."""


def _av():
    try:
        import av
    except ImportError as exc:  # pragma: no cover - exercised only without PyAV
        raise ImportError("reading and writing media needs PyAV: pip install av") from exc
    return av


def path_argument(value, name: str, optional: bool = False):
    """``value`` (str, bytes or os.PathLike) as a str path, for the Python API's path
    arguments; a TypeError naming the argument for anything else (None only where
    ``optional``: then None is returned)."""
    if value is None and optional:
        return None
    if isinstance(value, (str, bytes, os.PathLike)):
        return os.fsdecode(os.fspath(value))
    raise TypeError(f"{name}: expected a path (str, bytes or os.PathLike), got "
                    f"{type(value).__name__} {value!r}")


def check_input_file(path, what: str, flag: str = "") -> str:
    """``path`` as a string if it names an existing file; else FileNotFoundError or
    IsADirectoryError, one line, prefixed with ``flag`` (e.g. ``"--video"``) if given.
    For the commands' up-front checks, before any decoding (needs no PyAV)."""
    path = os.fspath(path)
    name = f"{flag} {path}" if flag else path
    if os.path.isdir(path):
        raise IsADirectoryError(f"{name}: is a directory, not {what}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: no such file")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{name}: permission denied (the file is not readable)")
    return path


def check_output_file(path, flag: str, inputs=()) -> str:
    """``path`` as a string if a file can be written there: not a directory, in an
    existing, writable folder; else one-line IsADirectoryError, FileNotFoundError or
    PermissionError naming ``flag``. Checked before any long work, not after.

    ``inputs``: ``(path, what)`` pairs of the command's own input files (the
    checkpoint, the sound, the video); an output that is one of them is refused
    (ValueError), since writing it would destroy the input.

    Outputs are written to a temporary file and renamed over ``path``: a symbolic
    link is followed (the file it points to is replaced, the link stays), and an
    existing device, pipe or socket is refused, since a rename would replace it.
    """
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{flag}: the path is empty; give a file name")
    if os.path.islink(path):
        path = os.path.realpath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"{flag} {path}: is a directory; give a file name")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"{flag} {path}: is not a regular file (a device, pipe or socket); "
                         f"give a file name")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{flag} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{flag} {path}: the folder {folder} is not writable")
    if os.path.exists(path):
        for other, what in inputs:
            if other is not None and os.path.exists(other) and os.path.samefile(path, other):
                raise ValueError(f"{flag} {path}: is {what}; write the output elsewhere")
    return path


def partial_path(path: str) -> str:
    """A fresh name beside ``path`` for writing it before the final rename: hidden,
    unique (a user's own ``OUT.part.mp4`` is never touched) and short (a name at the
    file system's limit still works), ending in ``.mp4``."""
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.join(folder, f".s2v-{uuid.uuid4().hex[:12]}.part.mp4")


def _ffmpeg_path(path: str) -> str:
    """``path`` as FFmpeg must see it to take it for a file: an absolute path, since
    a relative name with a colon (``take1:final.mp4``, ``10:30.mp4``) would be
    read as a protocol."""
    return os.path.abspath(path)


def _open(path, what: str):
    """Open ``path`` for reading; one-line errors for missing or non-media files."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise MediaError(f"{path}: is a directory, not a {what} file")
    av = _av()
    try:
        return av.open(_ffmpeg_path(path))
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: not a readable {what} file ({_reason(exc)})") from None


def _is_cover_art(stream) -> bool:
    """A still picture attached to an audio file (album art), not a video."""
    disposition = getattr(stream, "disposition", None)
    flag = getattr(getattr(_av(), "stream", None), "Disposition", None)
    if disposition is not None and flag is not None and hasattr(flag, "attached_pic"):
        return bool(disposition & flag.attached_pic)
    return False


def _open_stream(path, kind: str):
    """``(container, first stream of kind)`` (``"video"`` or ``"audio"``); the container is
    closed again when the file has no such stream. Cover art is not a video stream."""
    container = _open(path, kind)
    if kind == "video":
        streams = [s for s in container.streams.video if not _is_cover_art(s)]
        if not streams and container.streams.video:
            container.close()
            raise MediaError(f"{path}: has no video stream (only a cover picture)")
    else:
        streams = container.streams.audio
    if not streams:
        container.close()
        raise MediaError(f"{path}: has no {kind} stream")
    return container, streams[0]


def _reason(exc) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(";")[0].strip().rstrip(".").lower() or type(exc).__name__


# --- video ---------------------------------------------------------------------------

@dataclass
class VideoInfo:
    """What a video file holds, from its headers (duration may be estimated)."""
    path: str
    width: int
    height: int
    fps: float
    duration: float          # seconds, 0 when unknown
    has_audio: bool


def video_info(path) -> VideoInfo:
    container, stream = _open_stream(path, "video")
    try:
        rate = stream.average_rate or stream.guessed_rate or 0
        duration = 0.0
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            # The container's span runs from its earliest stream's start; the video's
            # own span ends with the container but starts at the video's first frame.
            duration = container.duration / 1_000_000
            if container.start_time is not None and stream.start_time is not None:
                late = float(stream.start_time * stream.time_base) - container.start_time / 1e6
                duration -= max(late, 0.0)
        return VideoInfo(os.fspath(path), stream.codec_context.width,
                         stream.codec_context.height, float(rate), duration,
                         bool(container.streams.audio))
    finally:
        container.close()


def check_crop(crop, width: int, height: int, path="") -> Optional[Tuple[int, int, int, int]]:
    """Validate a crop box ``(x, y, w, h)`` against a ``width × height`` frame."""
    if crop is None:
        return None
    if len(crop) != 4 or any(isinstance(v, bool) or int(v) != v for v in crop):
        raise ValueError(f"crop: expected four integers (x, y, w, h), got {tuple(crop)}")
    x, y, w, h = (int(v) for v in crop)
    if w < 1 or h < 1:
        raise ValueError(f"crop: width and height must be at least 1, got w={w}, h={h}")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise MediaError(f"{path}: crop box (x={x}, y={y}, w={w}, h={h}) lies outside the "
                         f"{width}x{height} frame")
    return x, y, w, h


def _rotation_filters(rotation: int):
    """ffmpeg filters that show a frame upright given its display rotation (degrees CCW)."""
    rotation %= 360
    if rotation == 90:
        return [("transpose", "cclock")]
    if rotation == 270:
        return [("transpose", "clock")]
    if rotation == 180:
        return [("hflip", None), ("vflip", None)]
    return []


class _Converter:
    """Crop + area resize + RGB conversion in one libavfilter graph (C speed)."""

    def __init__(self, stream, frame, size: int, crop, path):
        av = _av()
        self.graph = av.filter.Graph()
        nodes = [self.graph.add_buffer(template=stream)]
        rotation = int(getattr(frame, "rotation", 0) or 0)
        for name, args in _rotation_filters(rotation):
            nodes.append(self.graph.add(name, args) if args else self.graph.add(name))
        width, height = frame.width, frame.height
        if rotation % 180 == 90:
            width, height = height, width
        box = check_crop(crop, width, height, path)
        if box is not None:
            x, y, w, h = box
            nodes.append(self.graph.add("crop", f"{w}:{h}:{x}:{y}:exact=1"))
        nodes.append(self.graph.add("scale", f"{size}:{size}:flags=area"))
        nodes.append(self.graph.add("format", "rgb24"))
        nodes.append(self.graph.add("buffersink"))
        for a, b in zip(nodes, nodes[1:]):
            a.link_to(b)
        self.graph.configure()

    def __call__(self, frame) -> np.ndarray:
        self.graph.push(frame)
        return self.graph.pull().to_ndarray()


def iter_frames(path, fps: float, size: int, crop: Sequence[int] | None = None,
                max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield the video's frames at ``fps`` as uint8 ``[size, size, 3]`` RGB arrays.

    Output frame i shows what is on screen at ``i / fps`` seconds after the first
    frame (variable frame rate and 29.97/59.94 fps sources included): the last
    source frame whose timestamp is ≤ that time. ``crop = (x, y, w, h)`` is applied
    (in upright, display orientation) before resizing.
    """
    if not fps or fps <= 0:
        raise ValueError(f"fps: expected a positive frame rate, got {fps}")
    if size < 1:
        raise ValueError(f"size: expected a positive frame size, got {size}")
    av = _av()
    container, stream = _open_stream(path, "video")
    try:
        stream.thread_type = "AUTO"  # frame + slice threads: decoding is the floor
        convert, start, held, emitted = None, None, None, 0
        # Half a microsecond of slack so 1/fps grids meet frame timestamps exactly.
        eps = 5e-7
        try:
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else (
                    start or 0.0) + emitted / fps
                if start is None:
                    start = t
                    convert = _Converter(stream, frame, size, crop, path)
                # Emit every output time before this frame's timestamp from the held one.
                while held is not None and start + emitted / fps < t - eps:
                    yield convert(held)
                    emitted += 1
                    if max_frames is not None and emitted >= max_frames:
                        return
                held = frame
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: corrupt or truncated video ({_reason(exc)})") from None
        if held is None:
            raise MediaError(f"{path}: the video stream holds no decodable frame")
        # The last frame stays on screen for one source frame interval.
        last = held.time if held.time is not None else start
        rate = float(stream.average_rate or stream.guessed_rate or fps)
        end = last + 1.0 / rate
        while start + emitted / fps < end - eps and (max_frames is None or emitted < max_frames):
            yield convert(held)
            emitted += 1
    finally:
        container.close()


def video_start_time(path) -> Optional[float]:
    """Timestamp (seconds) of the video's first decodable frame, the instant that
    :func:`iter_frames`'s frame 0 shows; None when the file gives no timestamps."""
    av = _av()
    container, stream = _open_stream(path, "video")
    try:
        for frame in container.decode(stream):
            return frame.time
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: corrupt or truncated video ({_reason(exc)})") from None
    finally:
        container.close()
    raise MediaError(f"{path}: the video stream holds no decodable frame")


def read_frames(path, fps: float, size: int, crop=None, max_frames=None) -> np.ndarray:
    """All frames of :func:`iter_frames` as one uint8 array ``[N, size, size, 3]``."""
    frames = list(iter_frames(path, fps, size, crop, max_frames))
    return np.stack(frames) if frames else np.zeros((0, size, size, 3), np.uint8)


# --- audio ---------------------------------------------------------------------------

# Timestamp jumps shorter than this are jitter (millisecond time bases), not gaps.
_GAP_SECONDS = 0.01


def iter_audio(path, sample_rate: int = 64000, block: int = 1 << 16,
               origin: Optional[float] = None) -> Iterator[np.ndarray]:
    """Yield the first audio track as mono float32 blocks of about ``block`` samples.

    Every channel is resampled to ``sample_rate`` by swresample's band-limited
    resampler, then the channels are averaged (SPEC §1: average to mono), so
    memory stays bounded for hour-long files. Samples follow the track's
    timestamps: a gap (missing packets) becomes silence of its length, and
    sample 0 is the sound at time ``origin`` (seconds on the file's timeline):
    silence is prepended when the track starts later, samples are dropped when
    it starts earlier. ``origin=None``: the track's own first timestamp.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate: expected a positive rate, got {sample_rate}")
    av = _av()
    container, stream = _open_stream(path, "audio")
    try:
        resampler, pending, count = None, [], 0
        placed = 0   # samples put on the timeline (after origin) so far
        drop = 0     # samples before origin still to discard
        started = False

        def put(x):
            nonlocal placed, drop, count
            if drop:
                k = min(drop, x.size)
                x, drop = x[k:], drop - k
            if x.size:
                pending.append(x)
                placed += x.size
                count += x.size

        try:
            for frame in container.decode(stream):
                if resampler is None:
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout,
                                                  rate=sample_rate)
                if frame.time is not None:
                    if origin is None:
                        origin = frame.time
                    # Where this frame's first sample belongs, against where the
                    # samples so far end (up to the resampler's few-sample delay).
                    ahead = round((frame.time - origin) * sample_rate) - (placed - drop)
                    if not started and ahead < 0:
                        drop = -ahead  # the track starts before the origin
                    elif ahead > (_GAP_SECONDS * sample_rate if started else 0):
                        put(np.zeros(ahead, np.float32))  # starts later, or a hole
                started = True
                for out in resampler.resample(frame):
                    put(out.to_ndarray().mean(axis=0, dtype=np.float32))
                if count >= block:
                    yield np.concatenate(pending)
                    pending, count = [], 0
            if resampler is not None:
                for out in resampler.resample(None):
                    put(out.to_ndarray().mean(axis=0, dtype=np.float32))
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: corrupt or truncated audio ({_reason(exc)})") from None
        if resampler is None:
            raise MediaError(f"{path}: the audio stream holds no decodable sound")
        if pending:
            yield np.concatenate(pending)
    finally:
        container.close()


def read_audio(path, sample_rate: int = 64000, origin: Optional[float] = None) -> np.ndarray:
    """The whole first audio track as mono float32 ``[n]`` at ``sample_rate``, placed
    on the timeline as :func:`iter_audio` says (``origin``).

    Warns (the message contains "silent") when the track is digital silence.
    """
    blocks = list(iter_audio(path, sample_rate, origin=origin))
    wave = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if wave.size == 0 or not np.any(wave):
        warnings.warn(f"{path}: the audio track is silent; a model trained on it cannot "
                      f"learn sound-driven motion", stacklevel=2)
    return wave


def read_clip_audio(path, sample_rate: int = 64000) -> np.ndarray:
    """A video's sound aligned with its frames: sample ``round(i / fps · rate)`` is the
    sound at the instant of :func:`iter_frames`'s frame i (:func:`read_audio` with the
    first video frame's time as origin)."""
    return read_audio(path, sample_rate, origin=video_start_time(path))


# --- writing -------------------------------------------------------------------------

class VideoWriter:
    """H.264 + AAC writer whose output lasts exactly as long as its audio (±1 frame).

    ``size = (height, width)`` of the frames. ``write_frames`` takes uint8 ``[N, H, W, 3]`` (or ``[H, W, 3]``); ``write_audio``
    takes mono float32 samples at ``audio_rate``. Frames are encoded as soon as the
    audio written so far covers them, so interleaving the two calls keeps memory
    bounded; on :meth:`close` the video is cut or extended (last frame held) to
    ``round(audio_seconds · fps)`` frames. Odd frame sizes are padded to even by
    repeating the last row/column (yuv420p needs even sizes). Use as a context
    manager; a failure removes the partial file.
    """

    def __init__(self, path, fps: float, size: Tuple[int, int], audio_rate: int,
                 crf: int = 18, audio_bitrate: int = 160_000):
        if not fps or fps <= 0:
            raise ValueError(f"fps: expected a positive frame rate, got {fps}")
        height, width = (int(v) for v in size)
        if height < 1 or width < 1:
            raise ValueError(f"size: expected (height, width) >= 1, got {tuple(size)}")
        if audio_rate <= 0:
            raise ValueError(f"audio_rate: expected a positive rate, got {audio_rate}")
        av = _av()
        self.path = os.fspath(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.audio_rate = int(audio_rate)
        self._container = av.open(_ffmpeg_path(self.path), "w")
        # Both streams must exist before the first packet is muxed (the header is
        # written then), hence the frame size up front.
        self._shape = (height, width)
        self._video = self._container.add_stream("libx264", rate=self.fps)
        self._video.width = width + width % 2
        self._video.height = height + height % 2
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": "veryfast"}
        self._audio = self._container.add_stream("aac", rate=_aac_rate(self.audio_rate))
        self._audio.layout = "mono"
        self._audio.bit_rate = audio_bitrate
        self._resampler = av.AudioResampler(format="fltp", layout="mono",
                                            rate=self._audio.rate)
        self._queue = []
        self._frames = 0
        self._samples = 0
        self._last = None
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.close()
            except BaseException:
                self.abort()  # e.g. the disk filled while finishing: no partial file
                raise
        else:
            self.abort()
        return False

    def write_frames(self, frames) -> None:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames: expected uint8 [N, H, W, 3], got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        if frames.shape[1:3] != self._shape:
            raise ValueError(f"frames: expected size {self._shape}, got {frames.shape[1:3]}")
        self._queue.extend(frames)
        self._flush(self._due())

    def write_audio(self, samples) -> None:
        samples = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        if samples.size == 0:
            return
        av = _av()
        frame = av.AudioFrame.from_ndarray(samples[None], format="fltp", layout="mono")
        frame.sample_rate = self.audio_rate
        # Real timestamps (in samples from 0), not None: from them the AAC encoder
        # dates its first packet before 0 by its priming delay (1024 samples) and
        # the muxer writes the edit list that makes players skip those samples;
        # without them every output's sound was 1024 samples late.
        frame.pts = self._samples
        frame.time_base = Fraction(1, self.audio_rate)
        for out in self._resampler.resample(frame):
            for packet in self._audio.encode(out):
                self._mux(packet)
        self._samples += samples.size
        self._flush(self._due())

    def _due(self) -> int:
        """Frames the audio written so far covers."""
        return round(self._samples / self.audio_rate * self.fps)

    def _flush(self, upto: int) -> None:
        av = _av()
        while self._queue and self._frames < upto:
            self._encode(av, self._queue.pop(0))

    def _encode(self, av, frame: np.ndarray) -> None:
        H, W = self._shape
        if H % 2 or W % 2:
            frame = np.pad(frame, ((0, H % 2), (0, W % 2), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self._frames
        for packet in self._video.encode(vf):
            self._mux(packet)
        self._last = frame if not (H % 2 or W % 2) else frame[:H, :W]
        self._frames += 1

    @property
    def frames_written(self) -> int:
        return self._frames

    def _mux(self, packet) -> None:
        # The file is opened at the first packet: that is where a folder without
        # write permission or a full disk shows; say which file.
        av = _av()
        try:
            self._container.mux(packet)
        except av.error.FFmpegError as exc:
            raise self._write_error(exc, "write") from None

    def _write_error(self, exc, doing: str) -> OSError:
        return OSError(getattr(exc, "errno", None) or 5,
                       f"{self.path}: cannot {doing} the video ({_reason(exc)})")

    def close(self) -> None:
        """Trim or extend the video to the audio's duration and finish the file."""
        if self._closed:
            return
        target = self._due()
        self._flush(target)
        self._queue.clear()
        if self._last is None:
            self.abort()
            raise ValueError(f"{self.path}: no frames were written")
        av = _av()
        while self._frames < target:  # hold the last frame to the end of the sound
            self._encode(av, self._last)
        for packet in self._video.encode():
            self._mux(packet)
        for out in self._resampler.resample(None):
            for packet in self._audio.encode(out):
                self._mux(packet)
        for packet in self._audio.encode(None):
            self._mux(packet)
        try:
            self._container.close()
        except av.error.FFmpegError as exc:
            raise self._write_error(exc, "finish") from None
        self._closed = True

    def abort(self) -> None:
        """Close without finishing and delete the partial file."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.close()
        except Exception:  # the file is being discarded; its state does not matter
            pass
        if os.path.exists(self.path):
            os.remove(self.path)


_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025,
              8000, 7350)


def _aac_rate(rate: int) -> int:
    """The AAC sampling rate to encode at: ``rate`` itself when AAC allows it, else the
    nearest allowed rate above it (or 96 kHz)."""
    if rate in _AAC_RATES:
        return rate
    higher = [r for r in _AAC_RATES if r >= rate]
    return min(higher) if higher else _AAC_RATES[0]


def duration_frames(samples: int, sample_rate: int, fps: float) -> int:
    """Video frames that last as long as ``samples`` of audio (rounded)."""
    return int(math.floor(samples / sample_rate * fps + 0.5))
