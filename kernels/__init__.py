"""Triton kernels and their launchers for s2v's fused ops.

This directory sits at the repository root but is installed as the subpackage
``s2v.kernels`` (see ``package_dir`` in setup.py); import it as
``s2v.kernels``, never as a top-level ``kernels``.

Triton is an optional, GPU-only dependency: nothing here may import it at
module level, so that ``import s2v.kernels`` works on machines without it.
Kernel modules import triton when they are first used; callers check
:func:`s2v.kernels._triton_support.triton_available` first.
"""
