"""The eager dilated residual GRU against an independent stepper built on nn.GRUCell."""
import math

import pytest
import torch
import torch.nn.functional as F

from s2v.nn import DilatedResidualGRU
from s2v.ops import dilated_gru
from tests.helpers import rel_err


class PublishedRuleStepper:
    """SPEC §3 read literally, with torch.nn.GRUCell and per-layer history lists."""

    def __init__(self, m: DilatedResidualGRU):
        self.m = m
        self.cells = []
        for l in range(m.num_layers):
            cell = torch.nn.GRUCell(m.input_size, m.input_size).double()
            with torch.no_grad():
                cell.weight_ih.copy_(m.weight_ih[l])
                cell.weight_hh.copy_(m.weight_hh[l])
                cell.bias_ih.copy_(m.bias_ih[l])
                cell.bias_hh.copy_(m.bias_hh[l])
            self.cells.append(cell)
        self.reset()

    def reset(self):
        self.history = [[None] * self.m.dilation ** l for l in range(self.m.num_layers)]

    def __call__(self, x):  # x [T, D] (one sequence)
        outputs = []
        L = self.m.num_layers
        for t in range(x.shape[0]):
            if self.m.feedback:
                u = F.leaky_relu(F.linear(x[t], self.m.feedback_weight.double(),
                                          self.m.feedback_bias.double()), 0.2)
                if outputs:
                    u = u + outputs[-1]
                elif self.history[-1][-1] is not None:
                    oldest = self.history[-1][0]
                    u = u + (oldest if oldest is not None else 0)
            else:
                u = x[t]
            for cell, hist in zip(self.cells, self.history):
                h = cell(u.unsqueeze(0), None if hist[0] is None else hist[0].unsqueeze(0))[0]
                hist.append(h)
                hist.pop(0)
                u = F.leaky_relu((h + u) / math.sqrt(2), 0.2) if L > 1 else h
            outputs.append(u)
        return torch.stack(outputs)


CONFIGS = [dict(L=1, dilation=2, feedback=False), dict(L=3, dilation=2, feedback=False),
           dict(L=2, dilation=3, feedback=False), dict(L=4, dilation=1, feedback=False),
           dict(L=3, dilation=2, feedback=True), dict(L=1, dilation=2, feedback=True)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "L{L}-d{dilation}-fb{feedback}".format(**c))
@pytest.mark.parametrize("lengths", [(9,), (5, 1, 7), (1, 1, 1, 1)], ids=str)
def test_matches_independent_stepper_across_calls(cfg, lengths):
    D = 5
    m = DilatedResidualGRU(D, cfg["L"], cfg["dilation"], cfg["feedback"]).double()
    x = torch.randn(1, sum(lengths), D, dtype=torch.float64)
    stepper = PublishedRuleStepper(m)
    state, start = None, 0
    for n in lengths:
        chunk = x[:, start:start + n]
        y, state = m(chunk, state)
        assert rel_err(y[0], stepper(chunk[0])) < 1e-12
        start += n


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if not c["feedback"]],
                         ids=lambda c: "L{L}-d{dilation}".format(**c))
def test_two_calls_equal_one_long_call(cfg):
    m = DilatedResidualGRU(4, cfg["L"], cfg["dilation"])
    x = torch.randn(2, 11, 4)
    y_long, s_long = m(x)
    y1, s = m(x[:, :4])
    y2, s = m(x[:, 4:], s)
    assert rel_err(torch.cat([y1, y2], 1), y_long) < 1e-6
    for a, b in zip(s, s_long):
        assert rel_err(a, b) < 1e-6


def test_feedback_call_boundary_uses_oldest_stored_hidden():
    """SPEC §3: a later call starts from the last layer's oldest stored h, not m_{t-1}."""
    m = DilatedResidualGRU(4, 3, 2, feedback=True).double()
    x = torch.randn(1, 10, 4, dtype=torch.float64)
    y_long, _ = m(x)
    y1, s = m(x[:, :6])
    y2, _ = m(x[:, 6:], s)
    assert torch.allclose(y1, y_long[:, :6], atol=1e-6)
    # The published rule differs from one long call at the boundary step...
    assert not torch.allclose(y2[:, 0], y_long[:, 6], atol=1e-4)
    # ...and is exactly: first input = lrelu(W x + b) + state[L-1][:, 0].
    stepper = PublishedRuleStepper(m)
    stepper(x[0, :6])
    assert rel_err(y2[0], stepper(x[0, 6:])) < 1e-12


@pytest.mark.parametrize("feedback", [False, True])
def test_batch_equals_independent_sequences(feedback):
    m = DilatedResidualGRU(6, 3, 2, feedback)
    x = torch.randn(3, 7, 6)
    y, s = m(x)
    for b in range(3):
        yb, sb = m(x[b:b + 1])
        assert rel_err(y[b], yb[0]) < 1e-6
        for a, c in zip(s, sb):
            assert rel_err(a[b], c[0]) < 1e-6


def test_single_step_and_state_layout():
    m = DilatedResidualGRU(3, 3, 2)
    y, s = m(torch.randn(2, 1, 3))
    assert y.shape == (2, 1, 3)
    assert [tuple(t.shape) for t in s] == [(2, 1, 3), (2, 2, 3), (2, 4, 3)]
    assert all(not t.requires_grad for t in s)


def test_rejects_bad_arguments():
    m = DilatedResidualGRU(4, 2, 2)
    args = (m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh)
    x = torch.randn(1, 5, 4)
    with pytest.raises(ValueError, match="3-D"):
        dilated_gru(x[0], None, *args)
    with pytest.raises(ValueError, match="T, D >= 1"):
        dilated_gru(x[:, :0], None, *args)
    with pytest.raises(TypeError, match="floating"):
        dilated_gru(x.long(), None, *args)
    with pytest.raises(ValueError, match=r"x: expected \[B, T, D\] with D = 4"):
        dilated_gru(torch.randn(1, 5, 3), None, *args)  # the input's size is named
    with pytest.raises(ValueError, match="weight_hh"):
        dilated_gru(x, None, args[0], args[1][:, :6], *args[2:])
    with pytest.raises(ValueError, match=r"state\[1\]"):
        dilated_gru(x, (torch.zeros(1, 1, 4), torch.zeros(1, 1, 4)), *args)
    with pytest.raises(ValueError, match="tuple of 2"):
        dilated_gru(x, torch.zeros(1, 1, 4), *args)
    with pytest.raises(ValueError, match="dilation"):
        dilated_gru(x, None, *args, dilation=0)
    with pytest.raises(ValueError, match="num_layers"):
        DilatedResidualGRU(4, 9)
    with pytest.raises(ValueError, match="backend"):
        DilatedResidualGRU(4, backend="turbo")
