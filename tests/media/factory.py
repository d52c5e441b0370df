"""Small synthetic media files made with PyAV for the tests (nothing is downloaded)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

av = None


def _av():
    global av
    if av is None:
        import av as _av_module
        av = _av_module
    return av


def gray_frame(index: int, height: int, width: int, step: int = 8) -> np.ndarray:
    """A flat frame whose gray level encodes its index (survives yuv420 round trips)."""
    return np.full((height, width, 3), (index * step) % 256, np.uint8)


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """``[channels, n]`` float32; channel c carries ``freq · (c + 1)``."""
    t = np.arange(int(round(seconds * rate))) / rate
    return np.stack([0.4 * np.sin(2 * np.pi * freq * (c + 1) * t)
                     for c in range(channels)]).astype(np.float32)


def write_video(path, frames, times=None, fps=30, audio=None, audio_rate=44100,
                layout="stereo", video_codec="libx264", audio_codec="aac"):
    """Encode ``frames [N, H, W, 3]`` at ``fps`` (or at ``times`` seconds for variable
    frame rate) with optional ``audio [channels, n]``."""
    a = _av()
    out = a.open(str(path), "w")
    rate = Fraction(fps).limit_denominator(1001)
    vs = out.add_stream(video_codec, rate=rate)
    H, W = frames.shape[1:3]
    vs.width, vs.height = W, H
    # 4:2:0 needs even sizes; odd test frames use 4:4:4, which H.264 also carries.
    vs.pix_fmt = "yuv420p" if H % 2 == 0 and W % 2 == 0 else "yuv444p"
    if video_codec == "libx264":
        vs.options = {"crf": "0", "preset": "ultrafast"}
    if times is not None:  # millisecond timestamps, not a grid of 1/fps
        vs.time_base = Fraction(1, 1000)
        vs.codec_context.time_base = Fraction(1, 1000)
    aus = None
    if audio is not None:
        aus = out.add_stream(audio_codec, rate=audio_rate)
        aus.layout = layout
    for i, img in enumerate(frames):
        f = a.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        if times is not None:
            f.pts = int(round(times[i] * 1000))
            f.time_base = Fraction(1, 1000)
        else:
            f.pts = i
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    if aus is not None:
        _encode_audio(a, out, aus, audio, audio_rate, layout)
    out.close()


def _encode_audio(a, out, stream, audio, rate, layout):
    fmt = stream.codec_context.codec.audio_formats[0].name if \
        stream.codec_context.codec.audio_formats else "fltp"
    frame = a.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp",
                                      layout=layout)
    frame.sample_rate = rate
    resampler = a.AudioResampler(format=fmt, layout=layout, rate=stream.rate)
    for f in resampler.resample(frame) + resampler.resample(None):
        for p in stream.encode(f):
            out.mux(p)
    for p in stream.encode(None):
        out.mux(p)


def write_audio(path, audio, rate, layout="mono", codec=None, container=None):
    """Encode ``audio [channels, n]`` to an audio-only file (codec from the extension)."""
    a = _av()
    ext = str(path).rsplit(".", 1)[-1]
    codec = codec or {"wav": "pcm_s16le", "mp3": "libmp3lame", "m4a": "aac",
                      "aac": "aac", "flac": "flac", "ogg": "libopus", "opus": "libopus",
                      "mka": "flac"}[ext]
    out = a.open(str(path), "w", format=container)
    out_rate = 48000 if codec == "libopus" else rate
    stream = out.add_stream(codec, rate=out_rate)
    stream.layout = layout
    _encode_audio(a, out, stream, audio, rate, layout)
    out.close()


def write_sync_clip(path, event=2.0, audio_start=0.0, video_start=0.0, gap=None,
                    seconds=4.0, fps=20, rate=48000):
    """Matroska (H.264 + FLAC) whose picture flashes white and whose sound bursts at
    the same presentation time ``event`` (seconds). The video stream's timestamps
    start at ``video_start``, the audio's at ``audio_start``; the audio packets whose
    time falls in ``gap = (t0, t1)`` are left out (a hole in the track)."""
    a = _av()
    out = a.open(str(path), "w", format="matroska")
    vs = out.add_stream("libx264", rate=fps)
    vs.width = vs.height = 16
    vs.pix_fmt = "yuv420p"
    aus = out.add_stream("flac", rate=rate)
    aus.layout = "mono"
    first = int(round(video_start * fps))
    for i in range(int(seconds * fps)):
        t = video_start + i / fps
        img = np.full((16, 16, 3), 255 if abs(t - event) < 0.5 / fps else 20, np.uint8)
        f = a.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts = first + i
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    n = int(seconds * rate)
    times = audio_start + np.arange(n) / rate
    wave = np.where((times >= event) & (times < event + 0.05),
                    0.5 * np.sin(2 * np.pi * 1000 * times), 0.001 * np.sin(2 * np.pi * 300 * times))
    fmt = aus.codec_context.codec.audio_formats[0].name
    resampler = a.AudioResampler(format=fmt, layout="mono", rate=rate)
    pts, size = int(round(audio_start * rate)), 1152
    for k in range(0, n, size):
        frame = a.AudioFrame.from_ndarray(wave[None, k:k + size].astype(np.float32),
                                          format="fltp", layout="mono")
        frame.sample_rate = rate
        for o in resampler.resample(frame):
            o.pts, o.time_base = pts, Fraction(1, rate)
            pts += o.samples
            for p in aus.encode(o):
                if gap is None or not (gap[0] <= float(p.pts * p.time_base) < gap[1]):
                    out.mux(p)
    for p in aus.encode(None):
        out.mux(p)
    out.close()
