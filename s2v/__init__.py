"""s2v: one-shot sound-to-video GAN ("Listen and Move") with fused recurrent kernels.

Subpackages: :mod:`s2v.nn` (drop-in layers), :mod:`s2v.ops` (functional ops),
:mod:`s2v.models` (generator, discriminators, named configurations),
:mod:`s2v.compat` (published weights). Media dependencies (PyAV) and the
compiled extension are imported lazily, so the layers work without them; so are
the subpackages themselves (``s2v.nn`` imports torch on first use), which keeps
``import s2v`` and the command line's start instant.
"""
import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("nn", "ops", "models", "compat")
# The Python API: the functions themselves (their docstrings, and warnings that
# point at the caller's line), loaded on first use.
_API = {"train": "training", "generate": "generation", "evaluate": "evaluation",
        "load": "evaluation"}
__all__ = ["__version__", *_SUBPACKAGES, *_API]


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 's2v' has no attribute {name!r}")


