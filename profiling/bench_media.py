"""Media ingest and audio feature throughput on the CPU (issue: Media I/O).

    python -m profiling.bench_media [--quick] [--seconds 4] [--reps 20] [--out DIR]

* ingest: output frames/s of decode + crop/resize of a synthetic 1080p H.264
  clip to 128 px (``s2v.media.iter_frames`` at the source frame rate, so every
  frame is converted), next to bare decoding of the same clip with the same
  threading (the floor); goals ≥ 100 frames/s and ≥ 80 % of bare decoding;
* features: ``load_audio`` (AAC in .m4a, 44.1 kHz stereo, resampled to 64 kHz
  mono) + ``features`` (lms, 64 bands, 20 fps) as × real time; goal ≥ 500×.

Writes ``profiling/results/<date>-<device>-media.json`` (schema in common.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

from profiling.common import (RESULTS_DIR, out_dir, positive_float, positive_int, run_tests,
                              write_results)
from profiling.timing import resolve_reps, time_ms

SOURCE_FPS = 30


def make_clip(path: str, seconds: float) -> None:
    """1080p H.264 with moving texture so the decoder has real work (not flat frames)."""
    import av

    out = av.open(path, "w")
    vs = out.add_stream("libx264", rate=SOURCE_FPS)
    vs.width, vs.height, vs.pix_fmt = 1920, 1080, "yuv420p"
    vs.options = {"crf": "23", "preset": "veryfast"}
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (1080 + 64, 1920 + 64, 3), dtype=np.uint8)
    for i in range(int(seconds * SOURCE_FPS)):
        frame = np.ascontiguousarray(texture[i % 64:i % 64 + 1080, (2 * i) % 64:(2 * i) % 64 + 1920])
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts = i
        for p in vs.encode(vf):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()


def make_audio(path: str, seconds: float) -> None:
    import av

    rate = 44100
    t = np.arange(int(seconds * rate)) / rate
    music = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t)))
    stereo = np.stack([music, np.roll(music, 100)]).astype(np.float32)
    out = av.open(path, "w")
    s = out.add_stream("aac", rate=rate)
    s.layout = "stereo"
    frame = av.AudioFrame.from_ndarray(stereo, format="fltp", layout="stereo")
    frame.sample_rate = rate
    for p in s.encode(frame):
        out.mux(p)
    for p in s.encode(None):
        out.mux(p)
    out.close()


def median_ms(fn, reps: int) -> float:
    return time_ms(fn, "cpu", reps, warmup=1)["median"]


def bare_decode(path: str) -> int:
    import av

    n = 0
    with av.open(path) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in c.decode(stream):
            n += 1
    return n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=positive_float, default=4.0, help="clip length")
    parser.add_argument("--audio-seconds", type=positive_float, default=120.0)
    parser.add_argument("--quick", action="store_true", help="5 repetitions instead of 20")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--out", type=out_dir, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    args.reps = resolve_reps(parser, args.reps, args.quick)
    torch.set_num_threads(args.threads)
    try:
        import av  # noqa: F401
    except ImportError:
        print("skipped: PyAV is not installed (pip install av)")
        return 0
    from s2v.audio import features, load_audio
    from s2v.media import iter_frames

    tests = run_tests(["tests/media", "tests/test_audio.py"])
    if tests["failed"]:
        print(f"tests: {tests}; media tests failed, so no figures are reported")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        clip = os.path.join(tmp, "clip1080.mp4")
        sound = os.path.join(tmp, "music.m4a")
        make_clip(clip, args.seconds)
        make_audio(sound, args.audio_seconds)
        n = bare_decode(clip)
        decode_ms = median_ms(lambda: bare_decode(clip), args.reps) / n
        ingest_ms = median_ms(lambda: sum(1 for _ in iter_frames(clip, SOURCE_FPS, 128)),
                              args.reps) / n

        def audio_features():
            return features(load_audio(sound, 64000), 64000, 20, "lms")
        audio_ms = median_ms(audio_features, args.reps)
        start = time.perf_counter()
        wave = load_audio(sound, 64000)
        load_ms = (time.perf_counter() - start) * 1000
        feat_ms = median_ms(lambda: features(wave, 64000, 20, "lms"), args.reps)
    ok = tests["failed"] == 0
    rt = args.audio_seconds * 1000
    benchmarks = [
        {"name": "ingest_1080p_h264_to_128", "pass": "ingest", "dtype": "uint8",
         "shape": {"source": "1920x1080 H.264 30 fps", "size": 128, "frames": n},
         "times_ms": {"decode": decode_ms, "ingest": ingest_ms}, "floor_ms": decode_ms,
         "gflops": {}, "peak_mem_mb": {},
         "frames_per_s": {"decode": 1000 / decode_ms, "ingest": 1000 / ingest_ms},
         "fraction_of_decode": decode_ms / ingest_ms if ok else None,
         "goals": {"frames_per_s": 100, "fraction_of_decode": 0.8}},
        {"name": "audio_load_features_lms64_20fps", "pass": "features", "dtype": "fp64",
         "shape": {"audio_s": args.audio_seconds, "source": "AAC 44.1 kHz stereo"},
         "times_ms": {"load+features": audio_ms, "load": load_ms, "features": feat_ms},
         "floor_ms": None, "gflops": {}, "peak_mem_mb": {},
         "x_real_time": {"load+features": rt / audio_ms if ok else None,
                         "features": rt / feat_ms if ok else None},
         "goals": {"x_real_time": 500}},
    ]
    path = write_results("media", benchmarks, tests, out_dir=args.out,
                         extra={"threads": torch.get_num_threads()})
    print(f"tests: {tests}")
    print(f"bare decode {1000 / decode_ms:.1f} frames/s, ingest {1000 / ingest_ms:.1f} frames/s "
          f"({decode_ms / ingest_ms:.0%} of decoding)")
    print(f"audio load+features {rt / audio_ms:.0f}x real time (features alone "
          f"{rt / feat_ms:.0f}x, load {rt / load_ms:.0f}x)")
    print(f"wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
