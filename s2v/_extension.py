"""Lazy access to the compiled extension ``s2v._C``.

``s2v._C`` is optional (``S2V_SKIP_EXTENSION=1`` installs without it, and a
failed or stale build leaves it unusable), so it is never imported when s2v
is: code that needs it calls :func:`load_extension`, which turns every way
the import can fail into one ``RuntimeError`` that says how to fix it.
"""
from __future__ import annotations

import importlib

__all__ = ["load_extension", "extension_available", "build_info"]

_EXTENSION = "s2v._C"
_REINSTALL = "pip install --no-build-isolation -e ."

_module = None
# A failed import of a shared library does not start working later in the same
# process, so the explanation is kept instead of retrying on every call.
_error: str | None = None


def _base_version(version: str) -> str:
    return version.split("+", 1)[0]


def _explain_import_error(exc: ImportError, torch_version: str) -> str:
    text = str(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name == _EXTENSION:
        return (
            f"s2v was installed without its compiled extension {_EXTENSION} (for example "
            "with S2V_SKIP_EXTENSION=1, or its build failed). Rebuild it from the s2v "
            f"source tree with torch already installed: `{_REINSTALL}` (or `make install`); "
            "the build output says what went wrong. The 'eager' backend works without it."
        )
    if "undefined symbol" in text or "mismatch" in text.lower():
        return (
            f"{_EXTENSION} cannot be loaded, most likely because it was compiled against a "
            f"different torch than the one installed now (torch {torch_version}); it must "
            f"be rebuilt against this torch: `{_REINSTALL}` in the s2v source tree. "
            f"Import error: {text}"
        )
    return (
        f"{_EXTENSION} is installed but cannot be loaded ({text}). Rebuilding it with "
        f"`{_REINSTALL}` in the s2v source tree usually fixes this."
    )


def load_extension():
    """Return the ``s2v._C`` module, importing it on first use.

    Raises ``RuntimeError`` with the cause and the fix when it is missing,
    unloadable, or was built against another torch minor version.
    """
    global _module, _error
    if _module is not None:
        return _module
    if _error is not None:
        raise RuntimeError(_error)

    # libtorch must be loaded before the extension resolves its symbols.
    import torch

    try:
        module = importlib.import_module(_EXTENSION)
    except ImportError as exc:
        _error = _explain_import_error(exc, torch.__version__)
        raise RuntimeError(_error) from exc

    # torch's C++ ABI changes between minor releases; an extension that still
    # happens to load against another one can crash at call time instead.
    built = module.build_info().get("torch_version", "")
    running = _base_version(torch.__version__)
    if built.split(".")[:2] != running.split(".")[:2]:
        _error = (
            f"{_EXTENSION} was compiled against torch {built} but torch {torch.__version__} "
            f"is installed; it must be rebuilt against this torch: `{_REINSTALL}` in the "
            "s2v source tree."
        )
        raise RuntimeError(_error)

    _module = module
    return module


def extension_available() -> bool:
    """True when :func:`load_extension` would succeed."""
    try:
        load_extension()
    except RuntimeError:
        return False
    return True


def build_info() -> dict:
    """How ``s2v._C`` was compiled, or a placeholder when it is unavailable.

    Always has the keys ``with_cuda``, ``with_openmp``, ``torch_version``,
    ``cuda_archs``, plus ``available`` and ``error`` (None, or why it is not).
    """
    try:
        info = dict(load_extension().build_info())
    except RuntimeError as exc:
        return {
            "with_cuda": False,
            "with_openmp": False,
            "torch_version": None,
            "cuda_archs": "",
            "available": False,
            "error": str(exc),
        }
    info.update(available=True, error=None)
    return info
