"""Media I/O on synthetic files: frame selection by timestamp, audio formats, writing,
and one-line errors for bad input."""

import numpy as np
import pytest

pytest.importorskip("av", reason="PyAV is not installed: media tests need it")

from s2v.audio import load_audio  # noqa: E402
from s2v.media import (MediaError, VideoWriter, iter_audio, read_audio,  # noqa: E402
                       read_clip_audio, read_frames, video_info,
                       video_start_time)
from tests.media.factory import (gray_frame, tone, write_audio, write_sync_clip,  # noqa: E402
                                 write_video)


def _indices(frames):
    """Source frame index encoded in the gray level (see gray_frame)."""
    return np.round(frames[:, 0, 0, 0].astype(float) / 8).astype(int)


@pytest.mark.parametrize("src_fps", [24, 25, 30000 / 1001, 30, 60])
def test_frames_are_chosen_by_timestamp(tmp_path, src_fps):
    n = int(round(0.5 * src_fps))  # at most 30 frames: gray levels stay below 256
    path = tmp_path / "clip.mp4"
    write_video(path, np.stack([gray_frame(i, 32, 48) for i in range(n)]), fps=src_fps)
    frames = read_frames(path, 20, 16)
    duration = n / src_fps
    assert abs(len(frames) - duration * 20) <= 1
    want = np.floor(np.arange(len(frames)) / 20 * src_fps + 1e-6).astype(int)
    assert np.array_equal(_indices(frames), want)
    assert frames.dtype == np.uint8 and frames.shape[1:] == (16, 16, 3)


def test_variable_frame_rate(tmp_path):
    # Millisecond timestamps, as stored in the file's 1/1000 time base.
    times = np.round(np.cumsum(np.r_[0, np.random.default_rng(0).uniform(0.02, 0.06, 29)]), 3)
    path = tmp_path / "vfr.mkv"
    write_video(path, np.stack([gray_frame(i, 16, 16) for i in range(30)]), times=times)
    frames = read_frames(path, 20, 8)
    want = np.searchsorted(times, np.arange(len(frames)) / 20 + 1e-9, side="right") - 1
    assert np.array_equal(_indices(frames), want)


def test_odd_sizes_crop_and_antialiased_resize(tmp_path):
    img = np.zeros((27, 33, 3), np.uint8)
    img[:, :11] = 255          # left third white
    img[::2, 22:] = 255        # right third: one-pixel stripes
    path = tmp_path / "odd.mp4"
    write_video(path, np.stack([img] * 3), fps=10)
    full = read_frames(path, 10, 11)[0].astype(float)
    assert full[:, :3].mean() > 240 and full[:, 4:7].mean() < 15
    assert 90 < full[:, 8:].mean() < 165  # stripes averaged, not aliased to 0 or 255
    cropped = read_frames(path, 10, 8, crop=(0, 0, 11, 27))[0]
    assert cropped.min() > 240
    with pytest.raises(MediaError, match=r"odd.mp4: crop box .* outside the 33x27 frame"):
        read_frames(path, 10, 8, crop=(30, 0, 11, 27))


@pytest.mark.parametrize("ext,rate,layout,channels", [
    ("wav", 8000, "mono", 1), ("mp3", 44100, "stereo", 2), ("m4a", 96000, "stereo", 2),
    ("flac", 44100, "5.1", 6), ("ogg", 48000, "stereo", 2), ("wav", 44100, "stereo", 2)])
def test_audio_formats_resampled_to_mono_64k(tmp_path, ext, rate, layout, channels):
    path = tmp_path / f"sound.{ext}"
    source = tone(1.0, rate, freq=300, channels=channels)
    write_audio(path, source, rate, layout)
    wave = load_audio(path, 64000).numpy()
    assert wave.dtype == np.float32 and abs(wave.size - 64000) < 0.03 * 64000
    # The mono signal is the channel average: channel c carried 300·(c+1) Hz at 0.4.
    spectrum = np.abs(np.fft.rfft(wave[:32000] * np.hanning(32000)))
    freqs = np.fft.rfftfreq(32000, 1 / 64000)
    peak = freqs[np.argmax(spectrum)]
    assert min(abs(peak - 300 * (c + 1)) for c in range(channels)) < 5
    expected_peak = np.abs(source.mean(axis=0)).max()
    if ext in ("wav", "flac"):  # lossless: the peak of the channel average survives
        assert abs(np.abs(wave).max() - expected_peak) < 0.05 * expected_peak
    else:  # lossy codecs ring a little; still far from a channel sum
        assert 0.5 * expected_peak < np.abs(wave).max() < 1.5 * expected_peak


def test_stereo_is_averaged_not_summed(tmp_path):
    left = tone(1.0, 44100, freq=500)[0]
    path = tmp_path / "left_only.wav"
    write_audio(path, np.stack([left, np.zeros_like(left)]), 44100, "stereo")
    wave = read_audio(path, 64000)
    assert abs(np.abs(wave).max() - 0.2) < 0.01


def test_resampler_is_band_limited(tmp_path):
    """A 40 kHz tone at 96 kHz is above the 32 kHz Nyquist limit of 64 kHz: it must
    vanish instead of aliasing to 64 - 40 = 24 kHz as naive interpolation would."""
    path = tmp_path / "high.wav"
    write_audio(path, tone(1.0, 96000, freq=40000), 96000, "mono")
    wave = read_audio(path, 64000)
    assert np.abs(wave[1000:-1000]).max() < 0.02


def test_audio_of_a_video_and_streaming_blocks(tmp_path):
    path = tmp_path / "clip.mkv"
    write_video(path, np.stack([gray_frame(i, 16, 16) for i in range(10)]), fps=10,
                audio=tone(1.0, 44100, channels=2))
    blocks = list(iter_audio(path, 64000, block=4096))
    assert len(blocks) > 3 and all(b.dtype == np.float32 for b in blocks)
    assert np.array_equal(np.concatenate(blocks), read_audio(path, 64000))


@pytest.mark.parametrize("audio_start,video_start,gap", [
    (0.0, 0.0, None), (1.0, 0.0, None), (0.0, 1.0, None), (0.0, 0.0, (1.0, 1.5)),
    (0.3, 0.0, (2.5, 2.8))], ids=["aligned", "audio-late", "video-late", "gap", "late+gap"])
def test_sound_stays_in_step_with_the_picture(tmp_path, audio_start, video_start, gap):
    """Frame i and sample i / fps · rate show the same instant, whatever time each
    stream starts at and with packets missing from the audio."""
    path = tmp_path / "sync.mkv"
    event = 2.0 if video_start < 1.0 else 3.0
    write_sync_clip(path, event, audio_start, video_start, gap)
    frames = read_frames(path, 20, 16)
    flash = int(frames.astype(float).mean(axis=(1, 2, 3)).argmax())
    wave = read_audio(path, 64000, origin=video_start_time(path))
    burst = int(np.abs(wave).argmax()) / 64000 * 20
    assert flash == round((event - video_start) * 20)
    assert abs(burst - flash) < 0.5, (burst, flash)
    assert np.array_equal(read_clip_audio(path, 64000), wave)
    if audio_start <= video_start:  # the video ends last: its span is the container's tail
        assert abs(video_info(path).duration - 4.0) < 0.1


def test_cover_art_is_not_a_video(tmp_path):
    path = tmp_path / "song.mp3"
    write_audio(path, tone(1.0, 44100), 44100)
    a = pytest.importorskip("av")
    with_art = tmp_path / "song_art.mp3"
    src, out = a.open(str(path)), a.open(str(with_art), "w")
    audio = out.add_stream_from_template(src.streams.audio[0])
    art = out.add_stream("mjpeg", rate=1)
    art.width = art.height = 16
    art.pix_fmt = "yuvj420p"
    art.disposition = a.stream.Disposition.attached_pic
    for pkt in src.demux(src.streams.audio[0]):
        if pkt.dts is not None:
            pkt.stream = audio
            out.mux(pkt)
    frame = a.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
    for pkt in list(art.encode(frame)) + list(art.encode(None)):
        out.mux(pkt)
    out.close()
    src.close()
    with pytest.raises(MediaError, match="no video stream .only a cover picture"):
        video_info(with_art)
    assert read_audio(with_art).size > 0


def test_silence_warns(tmp_path):
    path = tmp_path / "silence.wav"
    write_audio(path, np.zeros((1, 8000), np.float32), 8000)
    with pytest.warns(UserWarning, match="silent"):
        read_audio(path)


@pytest.mark.parametrize("size", [(16, 16), (15, 17)])
def test_writer_lasts_as_long_as_the_audio(tmp_path, size):
    out = tmp_path / "out.mp4"
    audio = tone(1.23, 64000)[0]
    frames = np.stack([gray_frame(i, *size) for i in range(40)])  # more than 1.23 s at 20 fps
    with VideoWriter(out, 20, size, 64000) as w:
        for i in range(0, 40, 8):  # interleaved, as generation writes
            w.write_audio(audio[i * 3200:(i + 8) * 3200])
            w.write_frames(frames[i:i + 8])
    info = video_info(out)
    assert info.has_audio and (info.width, info.height) == (size[1] + size[1] % 2,
                                                            size[0] + size[0] % 2)
    assert abs(len(read_frames(out, 20, 8)) - 1.23 * 20) <= 1
    assert abs(read_audio(out, 64000).size / 64000 - 1.23) < 0.05


def test_writer_keeps_the_sound_in_step_with_the_picture(tmp_path):
    """A tone starting at exactly 1 s is heard at 1 s in the written file: the AAC
    encoder's priming samples (1024) are dated before 0 and skipped by players,
    not left in front of the sound (which put it 16 ms behind the picture)."""
    rate = 64000
    t = np.arange(2 * rate) / rate
    audio = np.where(t >= 1.0, 0.5 * np.sin(2 * np.pi * 1000 * t), 0).astype(np.float32)
    out = tmp_path / "onset.mp4"
    with VideoWriter(out, 20, (16, 16), rate) as w:
        w.write_audio(audio)
        w.write_frames(np.stack([gray_frame(i, 16, 16) for i in range(40)]))
    heard = read_audio(out, rate)
    onset = np.nonzero(np.abs(heard) > 0.05)[0][0] / rate
    assert abs(onset - 1.0) < 0.002, onset


def test_writer_holds_the_last_frame_when_frames_run_short(tmp_path):
    out = tmp_path / "short.mp4"
    with VideoWriter(out, 10, (16, 16), 48000) as w:
        w.write_frames(np.stack([gray_frame(i, 16, 16) for i in range(3)]))
        w.write_audio(np.zeros(48000, np.float32))
    frames = read_frames(out, 10, 16)
    assert len(frames) == 10 and np.array_equal(_indices(frames)[3:], [2] * 7)


def test_writer_failure_removes_the_partial_file(tmp_path):
    out = tmp_path / "broken.mp4"
    with pytest.raises(ValueError, match="frames"):
        with VideoWriter(out, 10, (16, 16), 48000) as w:
            w.write_frames(np.zeros((2, 8, 8, 3), np.uint8))
    assert not out.exists()


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4: no such file"):
        read_frames(tmp_path / "nope.mp4", 20, 16)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(MediaError, match="notes.mp4: not a readable video file") as err:
        read_frames(text, 20, 16)
    assert "\n" not in str(err.value)
    audio_only = tmp_path / "sound.wav"
    write_audio(audio_only, tone(0.5, 8000), 8000)
    with pytest.raises(MediaError, match="sound.wav: has no video stream"):
        read_frames(audio_only, 20, 16)
    silent_video = tmp_path / "mute.mp4"
    write_video(silent_video, np.stack([gray_frame(i, 16, 16) for i in range(5)]), fps=10)
    with pytest.raises(MediaError, match="mute.mp4: has no audio stream"):
        read_audio(silent_video)
    with pytest.raises(ValueError, match="fps"):
        read_frames(silent_video, 0, 16)


def test_truncated_file_is_reported(tmp_path):
    path = tmp_path / "full.mp4"
    write_video(path, np.stack([gray_frame(i, 64, 64) for i in range(30)]), fps=30,
                audio=tone(1.0, 44100, channels=2))
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(MediaError, match="cut.mp4"):
        read_frames(cut, 20, 16)
    with pytest.raises(MediaError, match="cut.mp4"):
        read_audio(cut)
