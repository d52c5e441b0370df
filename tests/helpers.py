"""Small helpers shared by the tests."""
import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """SPEC §10's relative error: max|a - b| / max|b|."""
    a, b = a.detach().double(), b.detach().double()
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / (scale if scale > 0 else 1.0)
