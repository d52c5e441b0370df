"""Audio features (SPEC §1): chunk placement, floors, and cross-checks where possible."""
import importlib.util
import math

import numpy as np
import pytest
import torch

from s2v.audio import chunk_starts, features, mel_filterbank, power_mel

SR = 64000


def _tone(seconds, freq=440.0, sr=SR):
    t = torch.arange(int(seconds * sr), dtype=torch.float32) / sr
    return 0.5 * torch.sin(2 * math.pi * freq * t)


def test_chunk_rule_matches_published_when_fps_divides_100():
    for fps in (10, 20, 25, 50):
        n = 137
        H, W = round(100 / fps), 8
        published = torch.arange((n - W) // H + 1) * H
        assert torch.equal(chunk_starts(n, fps, 0.085), published)


def test_chunk_rule_stays_in_sync_at_30_fps():
    starts = chunk_starts(1000, 30, 0.085)
    assert starts[:4].tolist() == [0, 3, 7, 10]  # round(i * 100 / 30)
    # After 29 frames the published hop of 3 would have drifted by ~10 frames.
    assert starts[29].item() == round(29 * 100 / 30) == 97
    assert (starts + 8 <= 1000).all() and starts[-1] + 8 + 4 > 1000


@pytest.mark.parametrize("kind,F", [("lms", 64), ("mel", 64), ("mfcc", 20)])
def test_shapes_and_one_row_per_video_frame(kind, F):
    feats = features(_tone(2.0), SR, 20, kind)
    assert feats.shape == (math.floor((201 - 8) / 5) + 1, F) and feats.dtype == torch.float32


def test_lms_floor_and_silence():
    wave = torch.cat([_tone(0.5), torch.zeros(SR // 2)])
    feats = features(wave, SR, 20, "lms")
    assert feats.max() <= 0 and feats.min() >= -80
    assert torch.all(feats[-1] == 0)  # an all-silent chunk is 0 dB everywhere


def test_short_audio_gives_no_rows_and_bad_input_is_refused():
    assert features(torch.zeros(100), SR, 20).shape == (0, 64)
    with pytest.raises(ValueError, match="kind"):
        features(_tone(0.2), SR, 20, "cqt")
    with pytest.raises(ValueError, match="1-D"):
        features(torch.zeros(2, 1000), SR, 20)
    with pytest.raises(TypeError, match="floating"):
        features(torch.zeros(1000, dtype=torch.int16), SR, 20)
    with pytest.raises(ValueError, match="positive"):
        features(_tone(0.2), SR, 0)


def test_mel_filterbank_has_slaney_area_normalisation():
    fb = mel_filterbank(SR, 2048, 64)
    hz = torch.linspace(0, SR / 2, 1025, dtype=torch.float64)
    # Each triangle's area (in Hz) is 1 under Slaney normalisation; the sampled sum
    # approaches it as the triangles widen (narrow low bands span only a few bins).
    area = (fb * (hz[1] - hz[0])).sum(dim=1)
    assert torch.allclose(area, torch.ones(64, dtype=torch.float64), rtol=0.12)
    assert torch.allclose(area[40:], torch.ones(24, dtype=torch.float64), rtol=0.01)


@pytest.mark.skipif(importlib.util.find_spec("librosa") is None,
                    reason="librosa is not installed (optional cross-check)")
def test_matches_librosa():
    import librosa

    wave = _tone(1.0, 1000.0) + 0.1 * torch.randn(SR)
    ours = power_mel(wave, SR, 64).numpy()
    ref = librosa.feature.melspectrogram(y=wave.numpy(), sr=SR, n_fft=2048, hop_length=640,
                                         win_length=1600, n_mels=64, fmin=125, fmax=7500)
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-4


@pytest.mark.skipif(importlib.util.find_spec("torchaudio") is None,
                    reason="torchaudio is not installed (optional cross-check)")
def test_matches_torchaudio():
    try:
        import torchaudio
    except Exception as exc:  # PyPI torchaudio only loads beside a CUDA torch
        pytest.skip(f"torchaudio does not load here: {exc}")
    wave = _tone(1.0, 1000.0) + 0.1 * torch.randn(SR)
    ref = torchaudio.transforms.MelSpectrogram(
        SR, n_fft=2048, win_length=1600, hop_length=640, f_min=125, f_max=7500, n_mels=64,
        norm="slaney", mel_scale="slaney", pad_mode="constant").double()(wave.double())
    ours = power_mel(wave, SR, 64)
    assert (ours - ref).abs().max() / ref.abs().max() < 1e-4


def test_blocked_spectrogram_matches_a_plain_stft_over_many_blocks():
    from s2v.audio import _MelFrames

    torch.manual_seed(0)
    x = torch.randn(640 * 2500 + 2048, dtype=torch.float64)  # 2501 frames: 3 FFT blocks
    ours = _MelFrames(SR, 64, 125, 7500, 0.025, 0.01, None)(x)
    window = torch.nn.functional.pad(torch.hann_window(1600, periodic=True,
                                                       dtype=torch.float64), (224, 224))
    power = torch.fft.rfft(x.unfold(0, 2048, 640) * window).abs() ** 2
    ref = mel_filterbank(SR, 2048, 64) @ power.T
    assert ours.shape == ref.shape == (64, 2501)
    assert (ours - ref).abs().max() / ref.abs().max() < 1e-12


@pytest.mark.parametrize("fps", [20, 30, 29.97])
@pytest.mark.parametrize("kind", ["lms", "mel", "mfcc"])
def test_streaming_equals_one_shot(fps, kind):
    from s2v.audio import FeatureStream

    g = torch.Generator().manual_seed(1)
    wave = 0.1 * torch.randn(SR * 3, generator=g) + _tone(3.0)
    ref = features(wave, SR, fps, kind)
    stream = FeatureStream(SR, fps, kind)
    sizes = torch.randint(1, 20000, (200,), generator=g).tolist()
    parts, i = [], 0
    for n in sizes:
        if i >= wave.numel():
            break
        parts.append(stream.push(wave[i:i + n]))
        i += n
    parts.append(stream.finish())
    out = torch.cat(parts)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-6 * max(1.0, ref.abs().max().item())
    with pytest.raises(RuntimeError, match="finish"):
        stream.push(wave[:10])
