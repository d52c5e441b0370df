"""``DilatedResidualGRU``: the residual multi-scale dilated GRU motion encoder."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops._validation import check_positive_int
from ..ops.dilated_gru import MAX_LAYERS, dilated_gru, dilated_gru_backends

# Longest dilation span (dilation ** (L - 1)) a layer accepts: its state holds that
# many hidden vectors per sequence.
MAX_SPAN = 1 << 20
from ._backend import backend_property
from ._init import normal_


class DilatedResidualGRU(nn.Module):
    """L GRU layers, layer l reading its state from ``dilation ** l`` steps back (SPEC §3).

    ``y, state = m(x, state=None)`` with ``x, y [B, T, D]``; ``state`` is a tuple of L
    tensors ``[B, dilation ** l, D]`` (each layer's last hidden states, oldest first),
    detached on return; ``None`` is a reset. ``feedback=True`` adds the
    Linear+lrelu sound encoder whose output is summed with the previous output.

    Parameters: ``weight_ih, weight_hh [L, 3D, D]``, ``bias_ih, bias_hh [L, 3D]``
    (rows r, z, n), and for feedback ``feedback_weight [D, D]``, ``feedback_bias [D]``.
    """

    def __init__(self, input_size: int, num_layers: int = 3, dilation: int = 2,
                 feedback: bool = False, backend: str = "auto"):
        super().__init__()
        check_positive_int("input_size", input_size)
        check_positive_int("num_layers", num_layers)
        if num_layers > MAX_LAYERS:
            raise ValueError(f"num_layers: expected at most {MAX_LAYERS}, got {num_layers}")
        check_positive_int("dilation", dilation)
        if dilation ** (num_layers - 1) > MAX_SPAN:
            raise ValueError(f"dilation: the last layer would read its state from "
                             f"{dilation} ** {num_layers - 1} = {dilation ** (num_layers - 1)} "
                             f"steps back; at most {MAX_SPAN} (each layer keeps that many "
                             f"states per sequence)")
        if not isinstance(feedback, bool):
            raise TypeError(f"feedback: expected True or False, got {feedback!r}")
        D, L = input_size, num_layers
        self.input_size = D
        self.num_layers = L
        self.dilation = dilation
        self.feedback = feedback
        self.backend = backend
        self.weight_ih = nn.Parameter(torch.empty(L, 3 * D, D))
        self.weight_hh = nn.Parameter(torch.empty(L, 3 * D, D))
        self.bias_ih = nn.Parameter(torch.empty(L, 3 * D))
        self.bias_hh = nn.Parameter(torch.empty(L, 3 * D))
        if self.feedback:
            self.feedback_weight = nn.Parameter(torch.empty(D, D))
            self.feedback_bias = nn.Parameter(torch.zeros(D))
        else:
            self.register_parameter("feedback_weight", None)
            self.register_parameter("feedback_bias", None)
        self.reset_parameters()

    backend = backend_property(dilated_gru_backends)

    def reset_parameters(self) -> None:
        # PyTorch's GRUCell default, as the published encoder keeps it.
        bound = 1.0 / math.sqrt(self.input_size)
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            nn.init.uniform_(p, -bound, bound)
        if self.feedback:
            normal_(self.feedback_weight)
            nn.init.zeros_(self.feedback_bias)

    def forward(self, x: torch.Tensor, state=None):
        y, new_state = dilated_gru(x, state, self.weight_ih, self.weight_hh, self.bias_ih,
                                   self.bias_hh, self.dilation, self.feedback_weight,
                                   self.feedback_bias, backend=self.backend)
        return y, tuple(s.detach() for s in new_state)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, num_layers={self.num_layers}, dilation={self.dilation}, "
                f"feedback={self.feedback}, backend={self.backend!r}")
