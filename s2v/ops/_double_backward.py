"""The fused backward ops have no derivative of their own.

Without a registered rule, a gradient of a gradient through a fused layer (e.g. a
WGAN-GP penalty through a critic built from these layers) fails with torch's
generic "no autograd formula was registered". This registers one that says what
is missing and what to use instead, raised only if such a second backward runs.
"""
from __future__ import annotations


def register_no_double_backward(bwd_op, layer: str) -> None:
    """``bwd_op``: the ``torch.library.custom_op`` computing ``layer``'s backward."""
    def setup_context(ctx, inputs, output):
        pass

    def backward(ctx, *grads):
        raise NotImplementedError(
            f"{layer}: the fused backends ('cpu', 'triton', 'cuda') compute first "
            f"derivatives only; a gradient of a gradient through this layer (e.g. a "
            f"gradient penalty, create_graph=True) needs backend='eager'")

    bwd_op.register_autograd(backward, setup_context=setup_context)
