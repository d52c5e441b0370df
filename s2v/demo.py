"""``s2v demo``: a forward pass of the full generator on synthetic audio features.

Until the training and generation pipeline exists this demo shows the model
running end to end (motion encoder, residual generator, directional ConvGRU
video predictor) with **randomly initialised weights** on synthetic log-mel
features, states carried across chunks as in generation. The frames are
therefore noise-like patterns, not a trained re-animation.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
import torch

from .image_io import contact_sheet, to_uint8, write_png
from .models import Generator, named_config


def synthetic_features(frames: int, bands: int, fps: float = 20.0, seed: int = 0) -> torch.Tensor:
    """Log-mel-like features ``[frames, bands]`` in dB (≤ 0): a sweeping tone over a 2 Hz beat."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames, dtype=torch.float32) / fps
    band = torch.arange(bands, dtype=torch.float32)
    centre = (0.5 + 0.4 * torch.sin(2 * torch.pi * 0.25 * t)) * (bands - 1)
    tone = -((band[None] - centre[:, None]) ** 2) / (2 * (bands / 10) ** 2) * 10
    beat = 20 * (torch.cos(2 * torch.pi * 2.0 * t) > 0.6).float()[:, None]
    noise = 3 * torch.randn(frames, bands, generator=g)
    return (tone - 40 + beat + noise).clamp(-80, 0)


def run_demo(out_dir: str, size: int = 64, frames: int = 16, chunk: int = 8,
             config: str = "full", seed: int = 0, device: str = "cpu",
             backend: str = "auto", progress: bool = True) -> dict:
    """Generate ``frames`` frames in chunks of ``chunk``; write PNGs and a summary."""
    from tqdm import tqdm

    if frames < 1 or chunk < 1:
        raise ValueError(f"frames and chunk must be >= 1, got {frames} and {chunk}")
    torch.manual_seed(seed)
    dev = torch.device(device)
    g = Generator(output_size=size, backend=backend, **named_config(config)).to(dev).eval()
    feats = synthetic_features(frames, g.audio_features, seed=seed).to(dev)
    os.makedirs(out_dir, exist_ok=True)
    state, written, start = None, [], time.perf_counter()
    with torch.no_grad():
        for first in tqdm(range(0, frames, chunk), desc="generating", unit="chunk",
                          disable=not progress):
            audio = feats[first:first + chunk].unsqueeze(0)
            video, state = g(audio, state=state)
            for i, frame in enumerate(to_uint8(video[0])):
                path = os.path.join(out_dir, f"frame_{first + i:05d}.png")
                write_png(path, frame)
                written.append(frame)
    seconds = time.perf_counter() - start
    write_png(os.path.join(out_dir, "contact_sheet.png"), contact_sheet(np.stack(written)))
    summary = {"frames": frames, "size": size, "config": config, "device": str(dev),
               "seconds": round(seconds, 3), "ms_per_frame": round(1000 * seconds / frames, 2),
               "parameters": sum(p.numel() for p in g.parameters()),
               "note": "random weights, synthetic features: a forward-pass demo, not a "
                       "trained model"}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary
