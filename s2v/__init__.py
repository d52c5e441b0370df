"""s2v: one-shot sound-to-video GAN ("Listen and Move") with fused recurrent kernels.

Subpackages: :mod:`s2v.nn` (drop-in layers), :mod:`s2v.ops` (functional ops),
:mod:`s2v.models` (generator, discriminators, named configurations),
:mod:`s2v.compat` (published weights). Media dependencies (PyAV) and the
compiled extension are imported lazily, so the layers work without them.
"""
__version__ = "0.1.0"

from . import nn, ops  # noqa: E402  (light: torch only)

__all__ = ["__version__", "nn", "ops"]
