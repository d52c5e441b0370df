"""Lazy, failure-proof probes for Triton.

Importing triton can fail in more ways than ImportError (a broken install, a
missing libcuda on some versions, an incompatible Python), and a probe that
raises would turn "the Triton backend is unavailable" into a crash, so every
failure is reported as absence.
"""
from __future__ import annotations

import functools

__all__ = ["triton_available", "triton_version"]


@functools.lru_cache(maxsize=None)
def _import_triton():
    try:
        import triton  # noqa: F401  (imported for its side effect of being importable)
    except Exception:  # noqa: BLE001 - see module docstring
        return None
    return triton


def triton_available() -> bool:
    """True when ``import triton`` succeeds in this environment."""
    return _import_triton() is not None


def triton_version() -> str | None:
    """The installed Triton's version string, or None when it is not importable."""
    triton = _import_triton()
    if triton is None:
        return None
    version = getattr(triton, "__version__", None)
    return str(version) if version is not None else None
