"""Lazy, failure-proof probes for Triton.

Importing triton can fail in more ways than ImportError (a broken install, a
missing libcuda on some versions, an incompatible Python), and a probe that
raises would turn "the Triton backend is unavailable" into a crash, so every
failure is reported as absence.
"""
from __future__ import annotations

import functools

__all__ = ["triton_available", "triton_version", "fix_interpreter_scalar_index"]


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


@functools.lru_cache(maxsize=None)
def fix_interpreter_scalar_index() -> bool:
    """Let ``range(n)`` take a loaded scalar under some Triton interpreters.

    Under ``TRITON_INTERPRET=1`` a scalar is a one-element numpy array, and the
    interpreter of some releases (3.6 among them) converts it for ``range`` with
    ``int(array)``, which numpy 2 refuses for arrays with a dimension. Our kernels
    loop over a tap count loaded from memory, so those interpreters could not run
    them. This wraps the interpreter's tensor patching to convert through a
    squeeze, as later releases do. Compiled kernels are untouched. Returns True
    when the wrapper was installed; releases that already squeeze, or whose
    internals differ, are left alone.
    """
    try:
        import inspect

        from triton.runtime import interpreter
        original = interpreter._patch_lang_tensor
        if "squeeze" in inspect.getsource(original):
            return False
    except Exception:  # noqa: BLE001 - any mismatch: leave triton as it is
        return False

    def patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))

    interpreter._patch_lang_tensor = patch_lang_tensor
    return True
