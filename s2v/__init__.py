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
__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 's2v' has no attribute {name!r}")


def train(video, out, **options):
    """Train on ``video`` into the run directory ``out`` (see :func:`s2v.training.train`)."""
    from .training import train as _train
    return _train(video, out, **options)


def generate(checkpoint, audio, out, **options):
    """Re-animate a trained checkpoint from ``audio`` into ``out`` (H.264 + AAC)."""
    from .generation import generate as _generate
    return _generate(checkpoint, audio, out, **options)


def evaluate(checkpoint, **options):
    """MSE/PSNR/SSIM of the checkpoint on the held-out 20 %, plus FID, LPIPS and FVD
    given local TorchScript weight files ``inception=``, ``vgg=``, ``i3d=`` (never
    downloaded; see :func:`s2v.evaluation.evaluate`)."""
    from .evaluation import evaluate as _evaluate
    return _evaluate(checkpoint, **options)


def load(checkpoint, device="cpu", backend="auto"):
    """The trained generator of ``checkpoint``, ready for ``g(audio_features, state=...)``."""
    from .evaluation import load as _load
    return _load(checkpoint, device, backend)


__all__ += ["train", "generate", "evaluate", "load"]
