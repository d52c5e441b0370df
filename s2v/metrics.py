"""Frame metrics on RGB in [0, 1] (data range 1): MSE, PSNR, SSIM (11×11 Gaussian, σ 1.5)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64, device=None):
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-x.square() / (2 * sigma * sigma))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM per frame of ``a, b [N, 3, H, W]`` in [0, 1] (valid windows, channels averaged;
    K1 = 0.01, K2 = 0.03). Frames smaller than the window use the whole frame."""
    a, b = a.double(), b.double()
    C = a.shape[1]
    size = min(size, a.shape[-1], a.shape[-2])
    w = _gaussian_window(size, sigma, device=a.device).expand(C, 1, size, size)
    mu_a = F.conv2d(a, w, groups=C)
    mu_b = F.conv2d(b, w, groups=C)
    var_a = F.conv2d(a * a, w, groups=C) - mu_a.square()
    var_b = F.conv2d(b * b, w, groups=C) - mu_b.square()
    cov = F.conv2d(a * b, w, groups=C) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a.square() + mu_b.square() + c1) * (var_a + var_b + c2))
    return s.mean(dim=(1, 2, 3))


def frame_metrics(fake: torch.Tensor, real: torch.Tensor) -> dict:
    """Averages over frames of MSE, PSNR (dB, data range 1) and SSIM; inputs ``[N, 3, H, W]``
    in [0, 1]. A frame with zero error counts as 100 dB."""
    if fake.shape != real.shape:
        raise ValueError(f"frames: shapes differ, {tuple(fake.shape)} vs {tuple(real.shape)}")
    fake, real = fake.double().clamp(0, 1), real.double().clamp(0, 1)
    mse = (fake - real).square().mean(dim=(1, 2, 3))
    psnr = torch.where(mse > 0, 10 * torch.log10(1.0 / mse.clamp_min(1e-20)),
                       torch.full_like(mse, 100.0))
    return {"mse": float(mse.mean()), "psnr": float(psnr.mean()),
            "ssim": float(ssim(fake, real).mean()), "frames": int(fake.shape[0])}


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> [0, 1]."""
    return (frames.float() + 1) / 2


def psnr_from_mse(mse: float) -> float:
    return 10 * math.log10(1.0 / mse) if mse > 0 else 100.0
