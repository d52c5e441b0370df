"""Audio features, one vector per video frame (SPEC §1), in torch.

``features(wave, sample_rate, fps, kind)`` turns a mono waveform into ``[N, F]``
features: a centred power mel spectrogram (periodic Hann window of 25 ms
zero-padded to the next power of two, 10 ms hop, Slaney mel scale with Slaney
area normalisation, 125–7 500 Hz), cut into chunks of ``chunk`` seconds, one
chunk per video frame, each reduced to ``lms`` (dB relative to the chunk's
maximum, 80 dB floor), ``mel`` (power) or ``mfcc`` (20 orthonormal DCT-II
coefficients of the dB spectrogram) averaged over the chunk's frames.

Everything is vectorised over chunks (no per-chunk Python loop) and runs on
the waveform's device; the arithmetic is float64 so that bins far below a
chunk's peak keep their dB values.
"""
from __future__ import annotations

import math

import torch

KINDS = ("lms", "mel", "mfcc")
STFT_WIN_SEC = 0.025
STFT_HOP_SEC = 0.01
FMIN_HZ = 125.0
FMAX_HZ = 7500.0
TOP_DB = 80.0
N_MFCC = 20
AMIN = 1e-10


# --- Slaney mel scale -----------------------------------------------------------------

_F_SP = 200.0 / 3.0           # Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + torch.log(torch.clamp(hz, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(hz >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log, linear)


def mel_filterbank(sample_rate: int, n_fft: int, bands: int, fmin: float = FMIN_HZ,
                   fmax: float = FMAX_HZ, dtype=torch.float64, device=None) -> torch.Tensor:
    """Triangular Slaney-normalised filters ``[bands, n_fft // 2 + 1]``."""
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(float(fmin), dtype=dtype))),
                                     float(hz_to_mel(torch.tensor(float(fmax), dtype=dtype))),
                                     bands + 2, dtype=dtype, device=device))
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=dtype, device=device)
    width = edges.diff()
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / width[:-1, None]
    upper = ramps[2:] / width[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0)
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


# --- spectrogram and chunks -----------------------------------------------------------

def stft_sizes(sample_rate: int, win_sec: float = STFT_WIN_SEC, hop_sec: float = STFT_HOP_SEC):
    """(window, hop, n_fft) in samples: 25 ms, 10 ms, next power of two ≥ window."""
    window = int(round(sample_rate * win_sec))
    hop = int(round(sample_rate * hop_sec))
    return window, hop, 1 << (window - 1).bit_length()


def power_mel(wave: torch.Tensor, sample_rate: int, bands: int = 64, *,
              fmin: float = FMIN_HZ, fmax: float = FMAX_HZ, win_sec: float = STFT_WIN_SEC,
              hop_sec: float = STFT_HOP_SEC) -> torch.Tensor:
    """Centred power mel spectrogram ``[bands, n_frames]`` (float64)."""
    window, hop, n_fft = stft_sizes(sample_rate, win_sec, hop_sec)
    x = wave.to(torch.float64)
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop, win_length=window,
                      window=torch.hann_window(window, periodic=True, dtype=torch.float64,
                                               device=x.device),
                      center=True, pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()
    return mel_filterbank(sample_rate, n_fft, bands, fmin, fmax, device=x.device) @ power


def chunk_starts(n_frames: int, fps: float, chunk: float,
                 hop_sec: float = STFT_HOP_SEC) -> torch.Tensor:
    """First spectrogram frame of each chunk; chunk i belongs to video frame i.

    Chunk i starts at ``round(i · 100 / fps)`` (spectrogram frames are 10 ms), which is
    the published ``i · round(100 / fps)`` whenever fps divides 100 and keeps sound
    and picture in sync otherwise. A chunk must fit: ``start + W ≤ n_frames``.
    """
    width = int(round(chunk / hop_sec))
    rate = 1.0 / hop_sec
    if n_frames < width:
        return torch.zeros(0, dtype=torch.long)
    count = int(math.floor((n_frames - width) * fps / rate)) + 2
    starts = torch.round(torch.arange(count, dtype=torch.float64) * rate / fps).long()
    return starts[starts + width <= n_frames]


def _db(power: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``10·log10(max(S, amin)) - 10·log10(max(ref, amin))``, floored at its max − 80 dB."""
    db = 10.0 * torch.log10(torch.clamp(power, min=AMIN)) - 10.0 * torch.log10(
        torch.clamp(ref, min=AMIN))
    peak = db.amax(dim=(-2, -1), keepdim=True)
    return torch.maximum(db, peak - TOP_DB)


def _dct_ortho(n_in: int, n_out: int, dtype, device) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``[n_out, n_in]``."""
    n = torch.arange(n_in, dtype=dtype, device=device)
    k = torch.arange(n_out, dtype=dtype, device=device)[:, None]
    basis = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis


def chunk_features(chunks: torch.Tensor, kind: str, n_mfcc: int = N_MFCC) -> torch.Tensor:
    """Reduce power mel chunks ``[N, bands, W]`` to features ``[N, F]``."""
    if kind == "mel":
        return chunks.mean(dim=-1)
    if kind == "lms":
        ref = chunks.amax(dim=(-2, -1), keepdim=True)
        return _db(chunks, ref).mean(dim=-1)
    db = _db(chunks, torch.ones((), dtype=chunks.dtype, device=chunks.device))
    dct = _dct_ortho(chunks.shape[-2], n_mfcc, chunks.dtype, chunks.device)
    return (dct @ db).mean(dim=-1)


def features(wave: torch.Tensor, sample_rate: int, fps: float, kind: str = "lms",
             bands: int = 64, chunk: float = 0.085, *, n_mfcc: int = N_MFCC,
             fmin: float = FMIN_HZ, fmax: float = FMAX_HZ, win_sec: float = STFT_WIN_SEC,
             hop_sec: float = STFT_HOP_SEC) -> torch.Tensor:
    """Audio features ``[N, F]`` (float32) of a mono waveform, one row per video frame.

    Args:
        wave: ``[n]`` mono samples at ``sample_rate`` (the published pipeline uses 64 kHz).
        sample_rate: samples per second of ``wave``.
        fps: video frame rate; chunk i is the sound of video frame i.
        kind: ``'lms'`` (F = bands), ``'mel'`` (F = bands) or ``'mfcc'`` (F = 20).
        bands: mel bands.
        chunk: chunk length in seconds (0.085 s = 8 spectrogram frames).
        n_mfcc, fmin, fmax, win_sec, hop_sec: the published constants by default
            (20 coefficients, 125–7 500 Hz, 25 ms window, 10 ms hop).

    Returns:
        ``[N, F]`` with N = the number of whole chunks (0 when the audio is shorter
        than one chunk).
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(wave, torch.Tensor) or wave.dim() != 1:
        raise ValueError(f"wave: expected a 1-D tensor of mono samples, got "
                         f"{tuple(wave.shape) if isinstance(wave, torch.Tensor) else type(wave)}")
    if not wave.is_floating_point():
        raise TypeError(f"wave: expected floating samples, got {wave.dtype}")
    if not sample_rate or sample_rate <= 0 or not fps or fps <= 0:
        raise ValueError(f"sample_rate and fps must be positive, got {sample_rate}, {fps}")
    if not 0 < hop_sec <= chunk:
        raise ValueError(f"chunk: expected at least one hop ({hop_sec} s), got {chunk}")
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"fmin/fmax: expected 0 <= fmin < fmax <= sample_rate / 2, got "
                         f"{fmin}, {fmax}")
    if bands < 1 or (kind == "mfcc" and not 1 <= n_mfcc <= bands):
        raise ValueError(f"bands/n_mfcc: expected bands >= 1 and 1 <= n_mfcc <= bands, got "
                         f"{bands}, {n_mfcc}")
    mel = power_mel(wave, sample_rate, bands, fmin=fmin, fmax=fmax, win_sec=win_sec,
                    hop_sec=hop_sec)
    width = int(round(chunk / hop_sec))
    starts = chunk_starts(mel.shape[1], fps, chunk, hop_sec).to(mel.device)
    if starts.numel() == 0:
        return torch.zeros(0, n_mfcc if kind == "mfcc" else bands)
    index = starts[:, None] + torch.arange(width, device=mel.device)
    chunks = mel[:, index].permute(1, 0, 2)  # [N, bands, W]
    return chunk_features(chunks, kind, n_mfcc).to(torch.float32)
