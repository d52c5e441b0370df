"""The ``--device`` argument: parsed and checked before any work starts; and the
per-device settings that training and generation share."""
from __future__ import annotations

import torch

__all__ = ["resolve_device", "tune_for_fixed_shapes"]


def resolve_device(device, flag: str = "--device") -> torch.device:
    """``device`` (``'cpu'``, ``'cuda'``, ``'cuda:N'`` or a torch.device) as a
    torch.device that this process can use; ValueError naming ``flag`` otherwise."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{flag} {device!r}: expected cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ValueError(f"{flag} {device}: s2v runs on cpu and cuda devices")
    if not torch.cuda.is_available():
        raise ValueError(f"{flag} {device}: this torch sees no CUDA device; use {flag} cpu")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise ValueError(f"{flag} {device}: this machine has {count} CUDA device(s) "
                         f"(cuda:0 to cuda:{count - 1})")
    return dev


def tune_for_fixed_shapes(device) -> None:
    """On CUDA, let cuDNN time its convolution algorithms once per input shape and keep
    the fastest (``torch.backends.cudnn.benchmark``): training and generation run
    the same shapes thousands of times. Without it cuDNN's heuristics gave the video
    discriminator's 3-D convolutions a legacy implicit-GEMM kernel that took ~30 %
    of a training iteration at 128 px on an H100. Process-wide; a no-op on CPU.
    """
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True
