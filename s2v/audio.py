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


class _MelFrames:
    """Power mel of whole STFT frames cut from an already padded signal.

    The one-shot and the streaming paths both go through :meth:`__call__`, so they
    compute every spectrogram frame with the same arithmetic. Only the FFT bins
    that some mel filter touches are squared and summed (125–7 500 Hz is about a
    quarter of the spectrum at 64 kHz), and frames are processed in blocks so the
    working set stays small.
    """

    BLOCK = 1024  # frames per FFT batch

    def __init__(self, sample_rate: int, bands: int, fmin: float, fmax: float,
                 win_sec: float, hop_sec: float, device):
        self.window_len, self.hop, self.n_fft = stft_sizes(sample_rate, win_sec, hop_sec)
        self.window = torch.hann_window(self.window_len, periodic=True, dtype=torch.float64,
                                        device=device)
        self.left = (self.n_fft - self.window_len) // 2  # the window sits centred in n_fft
        filters = mel_filterbank(sample_rate, self.n_fft, bands, fmin, fmax, device=device)
        used = (filters != 0).any(dim=0).nonzero()
        self.lo = int(used.min()) if used.numel() else 0
        self.hi = int(used.max()) + 1 if used.numel() else 1
        self.filters = filters[:, self.lo:self.hi].contiguous()

    def __call__(self, padded: torch.Tensor) -> torch.Tensor:
        """``padded [n]`` (float64) -> ``[bands, frames]`` for every whole frame in it."""
        count = (padded.numel() - self.n_fft) // self.hop + 1 if padded.numel() >= self.n_fft \
            else 0
        out = self.filters.new_empty(self.filters.shape[0], count)
        if count == 0:
            return out
        # Frame m's non-zero part: window_len samples starting at m·hop + left.
        taps = padded[self.left:].unfold(0, self.window_len, self.hop)
        frames = padded.new_zeros(min(self.BLOCK, count), self.n_fft)
        for first in range(0, count, self.BLOCK):
            n = min(self.BLOCK, count - first)
            block = frames[:n]
            torch.mul(taps[first:first + n], self.window,
                      out=block[:, self.left:self.left + self.window_len])
            spec = torch.fft.rfft(block, dim=-1)[:, self.lo:self.hi]
            power = torch.view_as_real(spec).square().sum(-1)
            torch.matmul(self.filters, power.T, out=out[:, first:first + n])
        return out


def power_mel(wave: torch.Tensor, sample_rate: int, bands: int = 64, *,
              fmin: float = FMIN_HZ, fmax: float = FMAX_HZ, win_sec: float = STFT_WIN_SEC,
              hop_sec: float = STFT_HOP_SEC) -> torch.Tensor:
    """Centred power mel spectrogram ``[bands, 1 + n // hop]`` (float64).

    Frame m is centred on sample ``m · hop``: the signal is zero padded by
    ``n_fft / 2`` on both sides, the periodic Hann window sits centred in n_fft.
    """
    mel = _MelFrames(sample_rate, bands, fmin, fmax, win_sec, hop_sec, wave.device)
    half = mel.n_fft // 2
    return mel(torch.nn.functional.pad(wave.to(torch.float64), (half, half)))


def chunk_width(chunk: float, hop_sec: float = STFT_HOP_SEC) -> int:
    """W: spectrogram frames per chunk (SPEC §1: Python's round, 0.085 s -> 8)."""
    return int(round(chunk / hop_sec))


def first_frame_seconds(chunk: float, hop_sec: float = STFT_HOP_SEC) -> float:
    """Seconds of sound before video frame 0 has its whole chunk: W spectrogram
    frames, the first centred on sample 0, so the chunk ends W - 1 hops in."""
    return (chunk_width(chunk, hop_sec) - 1) * hop_sec


def chunk_starts(n_frames: int, fps: float, chunk: float,
                 hop_sec: float = STFT_HOP_SEC) -> torch.Tensor:
    """First spectrogram frame of each chunk; chunk i belongs to video frame i.

    Chunk i starts at ``round(i · 100 / fps)`` (spectrogram frames are 10 ms), which is
    the published ``i · round(100 / fps)`` whenever fps divides 100 and keeps sound
    and picture in sync otherwise. A chunk must fit: ``start + W ≤ n_frames``.
    """
    width = chunk_width(chunk, hop_sec)
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
    width = chunk_width(chunk, hop_sec)
    starts = chunk_starts(mel.shape[1], fps, chunk, hop_sec).to(mel.device)
    if starts.numel() == 0:
        return torch.zeros(0, n_mfcc if kind == "mfcc" else bands)
    index = starts[:, None] + torch.arange(width, device=mel.device)
    chunks = mel[:, index].permute(1, 0, 2)  # [N, bands, W]
    return chunk_features(chunks, kind, n_mfcc).to(torch.float32)


class FeatureStream:
    """Features of a long waveform computed block by block, equal to :func:`features`.

    ``push(samples)`` returns the rows whose chunks are complete so far (``[n, F]``,
    possibly ``n = 0``); ``finish()`` adds the end padding and returns the rest.
    Memory stays bounded by a few chunks whatever the length of the audio.
    """

    def __init__(self, sample_rate: int, fps: float, kind: str = "lms", bands: int = 64,
                 chunk: float = 0.085, *, n_mfcc: int = N_MFCC, fmin: float = FMIN_HZ,
                 fmax: float = FMAX_HZ, win_sec: float = STFT_WIN_SEC,
                 hop_sec: float = STFT_HOP_SEC, device=None):
        features(torch.zeros(1), sample_rate, fps, kind, bands, chunk, n_mfcc=n_mfcc,
                 fmin=fmin, fmax=fmax, win_sec=win_sec, hop_sec=hop_sec)  # validates
        self.kind, self.n_mfcc, self.fps, self.hop_sec = kind, n_mfcc, fps, hop_sec
        self.width = chunk_width(chunk, hop_sec)
        self.mel = _MelFrames(sample_rate, bands, fmin, fmax, win_sec, hop_sec, device)
        half = self.mel.n_fft // 2
        self.samples = torch.zeros(half, dtype=torch.float64, device=device)  # left pad
        self.sample_offset = -half      # signal index of self.samples[0]
        self.total = 0                  # signal samples pushed
        self.frames = self.mel.filters.new_zeros(bands, 0)
        self.frame_offset = 0           # spectrogram index of self.frames[:, 0]
        self.next_chunk = 0
        self.finished = False

    def _start(self, i: int) -> int:
        return int(torch.round(torch.tensor(i * (1.0 / self.hop_sec) / self.fps,
                                            dtype=torch.float64)))

    def _consume(self, final: bool) -> torch.Tensor:
        hop = self.mel.hop
        new = self.mel(self.samples)
        if new.shape[1]:
            self.frames = torch.cat([self.frames, new], dim=1)
            used = new.shape[1] * hop
            self.samples = self.samples[used:]
            self.sample_offset += used
        if final:  # a centred STFT has exactly 1 + n // hop frames
            wanted = 1 + self.total // hop - self.frame_offset
            self.frames = self.frames[:, :wanted]
        rows = []
        while True:
            start = self._start(self.next_chunk) - self.frame_offset
            if start + self.width > self.frames.shape[1]:
                break
            rows.append(self.frames[:, start:start + self.width])
            self.next_chunk += 1
        # Drop frames no future chunk needs.
        keep_from = max(0, min(self._start(self.next_chunk) - self.frame_offset,
                               self.frames.shape[1]))
        self.frames = self.frames[:, keep_from:]
        self.frame_offset += keep_from
        out_dim = self.n_mfcc if self.kind == "mfcc" else self.frames.shape[0]
        if not rows:
            return torch.zeros(0, out_dim)
        return chunk_features(torch.stack(rows), self.kind, self.n_mfcc).to(torch.float32)

    def push(self, samples) -> torch.Tensor:
        if self.finished:
            raise RuntimeError("push after finish(): start a new FeatureStream")
        x = torch.as_tensor(samples).to(self.samples)
        if x.dim() != 1:
            raise ValueError(f"samples: expected a 1-D block of mono samples, got "
                             f"{tuple(x.shape)}")
        self.samples = torch.cat([self.samples, x])
        self.total += x.numel()
        return self._consume(final=False)

    def finish(self) -> torch.Tensor:
        half = self.mel.n_fft // 2
        self.samples = torch.cat([self.samples, self.samples.new_zeros(half)])
        self.finished = True
        return self._consume(final=True)


def load_audio(path, sample_rate: int = 64000) -> torch.Tensor:
    """Decode ``path`` (any audio or video file PyAV reads) to mono float32 ``[n]`` at
    ``sample_rate`` with a band-limited resampler; warns when the track is silent."""
    from .media import read_audio

    return torch.from_numpy(read_audio(path, sample_rate))
