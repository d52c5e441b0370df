"""Argument checks shared by the functional ops.

Every public op validates its inputs here before any computation (or kernel
launch) so that a bad call fails with a message naming the argument, what was
expected and what came, instead of a shape error deep inside a convolution.
"""
from __future__ import annotations

from typing import Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def check_float_tensor(name: str, t, ndim: int | None = None) -> None:
    """Raise TypeError/ValueError unless ``t`` is a floating tensor of rank ``ndim``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name}: expected a floating dtype (float32, bfloat16, float16 or float64), "
            f"got {t.dtype}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor, got shape {tuple(t.shape)}")


def check_shape(name: str, t: torch.Tensor, expected: Sequence[int], layout: str = "") -> None:
    """Raise ValueError unless ``t.shape == expected``; ``layout`` names the axes in the message."""
    if tuple(t.shape) != tuple(expected):
        what = f" {layout}" if layout else ""
        raise ValueError(
            f"{name}: expected shape{what} {tuple(expected)}, got {tuple(t.shape)}")


def _autocast_mix(device: torch.device) -> tuple | None:
    """Under torch.autocast on ``device``: the dtypes it mixes (float32 and its own)."""
    kind = device.type
    try:
        if not torch.is_autocast_enabled(kind):
            return None
        return (torch.float32, torch.get_autocast_dtype(kind))
    except (RuntimeError, TypeError, AttributeError):  # a device type autocast lacks
        return None


def check_same_device_dtype(reference_name: str, reference: torch.Tensor, **others) -> None:
    """Raise unless every tensor in ``others`` lives on ``reference``'s device with its dtype.

    Under torch.autocast, float32 and the autocast dtype may mix (an input produced by
    an earlier autocast op next to float32 parameters): the ops cast them as autocast
    does."""
    mix = _autocast_mix(reference.device)
    for name, t in others.items():
        if t is None:
            continue
        if t.device != reference.device:
            raise ValueError(
                f"{name}: expected device {reference.device} (that of {reference_name}), "
                f"got {t.device}")
        if mix is not None and t.dtype in mix and reference.dtype in mix:
            continue
        if t.dtype != reference.dtype:
            raise TypeError(
                f"{name}: expected dtype {reference.dtype} (that of {reference_name}), "
                f"got {t.dtype}")


def check_odd_kernel(kernel_size) -> None:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
        raise TypeError(f"kernel_size: expected an int, got {type(kernel_size).__name__}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: expected an odd positive integer, got {kernel_size}")


def check_positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")


def check_state_tuple(state, shapes: Sequence[Sequence[int]], layout: str,
                      x: torch.Tensor, what: str) -> None:
    """Check a recurrent state: a tuple of ``len(shapes)`` tensors like ``x``."""
    n = len(shapes)
    if not isinstance(state, (tuple, list)) or len(state) != n:
        length = len(state) if isinstance(state, (tuple, list)) else "-"
        raise ValueError(f"state: expected a tuple of {n} tensors {layout} ({what}), got "
                         f"{type(state).__name__} of length {length}")
    for i, (s, shape) in enumerate(zip(state, shapes)):
        check_float_tensor(f"state[{i}]", s)
        check_shape(f"state[{i}]", s, shape, layout)
        check_same_device_dtype("x", x, **{f"state[{i}]": s})
