"""The ``--device`` argument: parsed and checked before any work starts."""
from __future__ import annotations

import torch

__all__ = ["resolve_device"]


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
