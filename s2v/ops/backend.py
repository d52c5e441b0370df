"""Backend names and their resolution.

A fused op is implemented by several kernels: ``eager`` (plain PyTorch, the
reference), ``cpu`` (C++ in ``s2v._C``), ``triton`` (GPU) and ``cuda`` (CUDA
C++ in ``s2v._C``). Each op registers the implementations it has; ``auto``
picks the fastest one that exists for the input's device. Naming a backend
that cannot run raises :class:`BackendUnavailableError`, which says why and
how to get it.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import torch

BACKENDS = ("auto", "eager", "cpu", "triton", "cuda")

# Which device each backend runs on; eager runs everywhere.
_BACKEND_DEVICE = {"cpu": "cpu", "triton": "cuda", "cuda": "cuda"}

# Preference order for ``auto``, fastest first, per device type.
_AUTO_ORDER = {"cpu": ("cpu", "eager"), "cuda": ("cuda", "triton", "eager")}


class BackendUnavailableError(RuntimeError):
    """A backend was named that this installation or this device cannot run."""


def check_backend_name(backend) -> str:
    if not isinstance(backend, str):
        raise TypeError(f"backend: expected a string, got {type(backend).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


class OpBackends:
    """The implementations one op has, keyed by backend name.

    ``availability`` maps a backend name to a callable returning ``None`` when
    the backend can run in this installation, or a sentence saying why not and
    how to get it.
    """

    def __init__(self, op_name: str):
        self.op_name = op_name
        self._impls: Dict[str, Callable] = {}
        self._availability: Dict[str, Callable[[], str | None]] = {}

    def register(self, backend: str, impl: Callable,
                 availability: Callable[[], str | None] | None = None) -> None:
        check_backend_name(backend)
        self._impls[backend] = impl
        self._availability[backend] = availability or (lambda: None)

    def implemented(self) -> Sequence[str]:
        return tuple(self._impls)

    def why_unavailable(self, backend: str) -> str | None:
        """None when ``backend`` can run here, else the reason and the remedy."""
        if backend == "auto":
            return None
        if backend not in self._impls:
            have = ", ".join(self._impls) or "none"
            return (f"{self.op_name} has no {backend!r} kernel in this version of s2v "
                    f"(implemented: {have}); use backend='eager' or 'auto'")
        return self._availability[backend]()

    def check(self, backend: str) -> str:
        """Validate ``backend`` for this op without knowing the device yet."""
        check_backend_name(backend)
        reason = self.why_unavailable(backend)
        if reason is not None:
            raise BackendUnavailableError(f"backend {backend!r} is unavailable: {reason}")
        return backend

    def resolve(self, backend: str, device: torch.device) -> Callable:
        """The implementation to run for ``backend`` on ``device``.

        Under a torch.func transform that differentiates (grad, vjp, jacrev, jvp,
        jacfwd) ``auto`` runs ``eager`` and a named fused backend is refused: the fused
        ops' autograd (torch.library custom ops) is invisible to those transforms,
        which gave zero tangents (jvp) or an unrelated error (grad). vmap is fine."""
        self.check(backend)
        transform = None if backend == "eager" else _differentiating_transform()
        if backend == "auto":
            if transform is not None:
                return self._impls["eager"]
            for name in _AUTO_ORDER.get(device.type, ("eager",)):
                if name in self._impls and self.why_unavailable(name) is None:
                    return self._impls[name]
            return self._impls["eager"]
        wanted = _BACKEND_DEVICE.get(backend)
        if wanted is not None and device.type != wanted:
            if wanted == "cuda" and not torch.cuda.is_available():
                raise BackendUnavailableError(
                    f"backend {backend!r} of {self.op_name} needs a CUDA GPU and none is "
                    f"visible to torch here; use backend='auto' (or 'cpu' / 'eager')")
            raise BackendUnavailableError(
                f"backend {backend!r} of {self.op_name} runs on {wanted} tensors, but the "
                f"input is on {device}; move the module and inputs to {wanted} or use "
                f"backend='auto'")
        if transform is not None:
            raise NotImplementedError(
                f"backend {backend!r} of {self.op_name} does not support torch.func's "
                f"{transform} transforms; use backend='eager' or 'auto' under them "
                f"(torch.autograd's backward and autograd.grad work with every backend)")
        return self._impls[backend]


def _differentiating_transform() -> str | None:
    """The names of the innermost active torch.func transform when it differentiates
    ('grad/vjp/jacrev' or 'jvp/jacfwd'), else None. Not consulted while torch.compile
    traces (its own autograd sees through the custom ops)."""
    if torch.compiler.is_compiling():
        return None
    try:
        from torch._C._functorch import TransformType, peek_interpreter_stack
        top = peek_interpreter_stack()
    except (ImportError, AttributeError):  # a torch without functorch's interpreters
        return None
    if top is None:
        return None
    kind = top.key()
    if kind == TransformType.Grad:
        return "grad/vjp/jacrev"
    if kind == TransformType.Jvp:
        return "jvp/jacfwd"
    return None
