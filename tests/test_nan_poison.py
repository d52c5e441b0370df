"""The NaN poison of tests/conftest.py (Python) and csrc/poison.h (s2v._C) is in force.

If these fail, every other test runs with ordinary uninitialised memory again and a
kernel that reads a buffer nothing wrote can pass by luck.
"""
import os
import subprocess
import sys

import pytest
import torch

from s2v._extension import extension_available


def test_torch_empty_is_nan_inside_a_test():
    assert torch.empty(3).isnan().all()
    assert torch.empty(2, 3, dtype=torch.float64).isnan().all()
    assert torch.empty(4, dtype=torch.bfloat16).isnan().all()
    assert torch.empty_like(torch.zeros(5)).isnan().all()
    assert torch.zeros(1).new_empty(2, 2).isnan().all()
    assert torch.zeros(1).new_empty((3,)).isnan().all()
    # Integers: the dtype's maximum, so an unwritten index is out of range.
    assert (torch.empty(3, dtype=torch.long) == torch.iinfo(torch.long).max).all()
    assert (torch.empty(3, dtype=torch.int32) == torch.iinfo(torch.int32).max).all()
    # Leaves requiring grad still come back as leaves.
    leaf = torch.empty(2, requires_grad=True)
    assert leaf.is_leaf and leaf.requires_grad and leaf.isnan().all()


def test_triton_launchers_see_the_poison():
    # kernels/video_predictor.py allocates with torch.empty(...) looked up on the
    # torch module at call time.
    from s2v.kernels import video_predictor as vp

    assert vp.torch.empty is torch.empty
    assert vp.torch.empty(2, 3, dtype=torch.float32).isnan().all()


def test_meta_and_fake_tensors_are_left_alone():
    from torch._subclasses.fake_tensor import FakeTensorMode

    assert torch.empty(3, device="meta").shape == (3,)
    assert torch.zeros(2, device="meta").new_empty(4).is_meta
    with FakeTensorMode():
        t = torch.empty(3, 4)
        assert t.new_empty(2).shape == (2,) and torch.empty_like(t).shape == (3, 4)


def test_poison_context_nests_and_restores():
    from tests.conftest import _EMPTY, _EMPTY_LIKE, _NEW_EMPTY, nan_poison

    with nan_poison():  # already active around every test
        assert torch.empty(2).isnan().all()
    assert torch.empty(2).isnan().all()  # the test's own patch is still in place
    # Outside any patch the real functions come back (checked in a fresh process: this
    # one is inside the test's patch).
    code = ("import sys, torch; sys.path.insert(0, '.'); from tests.conftest import "
            "nan_poison, _EMPTY, _EMPTY_LIKE, _NEW_EMPTY\n"
            "with nan_poison():\n    assert torch.empty(1).isnan().all()\n"
            "assert torch.empty is _EMPTY and torch.empty_like is _EMPTY_LIKE\n"
            "assert torch.Tensor.new_empty is _NEW_EMPTY and "
            "'new_empty' not in torch.Tensor.__dict__\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
    assert _EMPTY is not torch.empty and _EMPTY_LIKE is not torch.empty_like
    assert _NEW_EMPTY is not torch.Tensor.new_empty


@pytest.mark.skipif(not extension_available(), reason="s2v._C is not built")
def test_extension_poison_is_on():
    from s2v._extension import load_extension

    C = load_extension()
    assert os.environ.get("S2V_POISON_EMPTY") == "1"
    assert C.poison_enabled()
    # The allocator the ATen glue and CPU kernels use (csrc/poison.h), on its own.
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        assert C._poisoned_empty_like(torch.zeros(7, dtype=dtype)).isnan().all(), dtype
    ints = C._poisoned_empty_like(torch.zeros(3, dtype=torch.int64))
    assert (ints == torch.iinfo(torch.int64).max).all()
