"""Parameter initialisation shared by the layers (SPEC §4: N(0, 0.02), biases 0)."""
import torch

INIT_STD = 0.02


@torch.no_grad()
def normal_(weight: torch.Tensor, std: float = INIT_STD) -> torch.Tensor:
    return weight.normal_(0.0, std)
