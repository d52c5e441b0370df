"""Autocast rule of the fused custom ops.

Inside ``torch.autocast`` the ATen ops a fused op's implementation calls (the
input projections, the blend GEMMs) would come back in the autocast dtype while
the kernels expect the dtype of the op's inputs, so the op would fail. The rule
here makes a fused op behave like an autocast-eligible matmul instead: its
floating inputs are cast to bfloat16 (the 16-bit type every fused kernel takes,
whatever autocast's own dtype) and it runs with autocast off inside, returning
bfloat16. Gradients flow back through the casts to the float32 parameters, as
for any autocast op. Outside autocast nothing changes.
"""
from __future__ import annotations

import torch

AUTOCAST_DTYPE = torch.bfloat16


def register_autocast_bf16(*ops) -> None:
    """Register the rule above for ``ops`` (``torch.library.custom_op`` objects) on
    CPU and CUDA."""
    for op in ops:
        for device_type in ("cpu", "cuda"):
            op.register_autocast(device_type, AUTOCAST_DTYPE)
