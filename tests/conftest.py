"""Shared fixtures: deterministic seeds, the golden-vector directory, and NaN-poisoned
``torch.empty``.

Poisoned allocations (the flash-linear-attention convention, for both kinds of
kernel we have): a kernel that reads memory nothing wrote (a gradient buffer
accumulated with ``+=`` but never zeroed, the padded part of a tile, an output
element it skipped) passes silently when the allocator happens to hand back
zeros. Under this conftest every fresh buffer starts as NaN instead, so such a
read shows up as NaN in the result:

* Python: for each test (its setup, call and teardown, so fixtures of any scope
  that are set up on its behalf too), ``torch.empty``, ``torch.empty_like`` and
  ``Tensor.new_empty`` are replaced by versions that fill floating-point (and
  complex) results with NaN and integer results with the dtype's maximum (an
  index read before it is written is then out of range); bool results are left
  alone (no value of theirs is invalid). This reaches the Triton launchers in
  ``kernels/video_predictor.py``, which look ``torch.empty`` up on the module at
  call time; their interpreter run is a child process, which installs the same
  patch through :func:`nan_poison`. Meta, fake and other subclass tensors, and
  anything allocated while a dispatch mode is active or under ``torch.compile``
  tracing (the custom ops' fake implementations, opcheck, make_fx) are not
  filled: they have no data, and a fill would only add nodes to traced graphs.
  TorchScript-scripted code sees the plain aten ops (unpoisoned).
* C++: ATen's ``at::empty`` cannot be patched from Python, so the ATen glue and
  CPU kernels of ``s2v._C`` allocate through ``csrc/poison.h``, which does the
  same fill when ``S2V_POISON_EMPTY=1`` is in the environment at its first
  allocation. It is set below at import time, before any test calls ``s2v._C``
  (child processes the tests start inherit it).

There is no opt-out marker: no test legitimately needs unpoisoned memory (a
failure that appears only with the poison is a kernel bug to fix, not to exempt).
"""
import contextlib
import os

# Before s2v._C is first used: csrc/poison.h reads the variable once.
os.environ["S2V_POISON_EMPTY"] = "1"

import pytest
import torch

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden")

# The originals, captured before any patching.
_EMPTY, _EMPTY_LIKE, _NEW_EMPTY = torch.empty, torch.empty_like, torch.Tensor.new_empty


def _poison(t):
    """Fill a freshly allocated real tensor with NaN (floating) / dtype max (integer)."""
    if (not isinstance(t, torch.Tensor) or type(t) is not torch.Tensor or t.is_meta
            or t.layout != torch.strided or t.numel() == 0
            or torch.compiler.is_compiling()
            # A fake / proxy / functional mode is tracing, not computing.
            or torch._C._len_torch_dispatch_stack() > 0):
        return t
    with torch.no_grad():  # torch.empty(..., requires_grad=True) gives a leaf
        if t.is_floating_point() or t.is_complex():
            t.fill_(float("nan"))
        elif t.dtype != torch.bool:
            t.fill_(torch.iinfo(t.dtype).max)
    return t


def _poisoned_empty(*args, **kwargs):
    return _poison(_EMPTY(*args, **kwargs))


def _poisoned_empty_like(*args, **kwargs):
    return _poison(_EMPTY_LIKE(*args, **kwargs))


def _poisoned_new_empty(self, *size, **kwargs):
    if torch.compiler.is_compiling():
        # Dynamo inlines this override but cannot trace the TensorBase method it wraps
        # (a graph break, which fails fullgraph=True); the equivalent torch.empty it can.
        if len(size) == 1 and not isinstance(size[0], int):
            size = tuple(size[0])
        for name in ("dtype", "device", "layout"):
            kwargs.setdefault(name, getattr(self, name))
        return _EMPTY(size, **kwargs)
    return _poison(_NEW_EMPTY(self, *size, **kwargs))


# TorchScript resolves torch.empty by identity in its builtin table; without these
# entries torch.jit.script of code that calls them would try to compile the wrappers
# (and fail on *args). Scripted code therefore allocates unpoisoned.
torch.jit._builtins._register_builtin(_poisoned_empty, "aten::empty")
torch.jit._builtins._register_builtin(_poisoned_empty_like, "aten::empty_like")


@contextlib.contextmanager
def nan_poison():
    """Within the block, ``torch.empty``/``empty_like``/``Tensor.new_empty`` poison."""
    saved = torch.empty, torch.empty_like, torch.Tensor.__dict__.get("new_empty")
    torch.empty, torch.empty_like = _poisoned_empty, _poisoned_empty_like
    torch.Tensor.new_empty = _poisoned_new_empty
    try:
        yield
    finally:
        torch.empty, torch.empty_like = saved[:2]
        if saved[2] is None:
            # Tensor inherits new_empty from TensorBase: unshadow rather than re-set it.
            del torch.Tensor.new_empty
        else:
            torch.Tensor.new_empty = saved[2]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    # Around setup, call and teardown (an autouse fixture would miss the setup of
    # fixtures with a wider scope, e.g. module-scoped models).
    with nan_poison():
        yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def golden_files(prefix: str = ""):
    return sorted(f for f in os.listdir(GOLDEN_DIR)
                  if f.endswith(".npz") and f.startswith(prefix))
