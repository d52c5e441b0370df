"""GAN losses on patch logits (SPEC §7): WGAN-GP (default), WGAN, hinge, NS, LS.

``discriminator_loss(kind, d, real, fake)`` evaluates ``d`` on both inputs (and,
for WGAN-GP, on random interpolations for the gradient penalty);
``generator_loss(kind, logits_fake)`` is the generator's side.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("wgan-gp", "wgan", "hinge", "ns", "ls")


def check_loss(kind: str) -> str:
    if kind not in LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)}, got {kind!r}")
    return kind


def gradient_penalty(d, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``mean((‖∇ d(x̂)‖ - 1)²)`` with ``x̂ = ε·real + (1-ε)·fake``, one ε per sample and
    the norm ``sqrt(Σ g² + 1e-12)``."""
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device,
                     dtype=real.dtype)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(d(mixed).sum(), mixed, create_graph=True)
    norm = torch.sqrt(grad.flatten(1).square().sum(dim=1) + 1e-12)
    return (norm - 1).square().mean()


def discriminator_loss(kind: str, d, real: torch.Tensor, fake: torch.Tensor,
                       gp_weight: float = 10.0) -> torch.Tensor:
    real_logits, fake_logits = d(real), d(fake)
    if kind in ("wgan", "wgan-gp"):
        loss = fake_logits.mean() - real_logits.mean()
        if kind == "wgan-gp":
            loss = loss + gp_weight * gradient_penalty(d, real, fake)
        return loss
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "ns":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    return 0.5 * ((real_logits - 1).square().mean() + fake_logits.square().mean())


def generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    if kind in ("wgan", "wgan-gp", "hinge"):
        return -fake_logits.mean()
    if kind == "ns":
        return F.softplus(-fake_logits).mean()
    return 0.5 * (fake_logits - 1).square().mean()
