"""Initialisation of the generator and discriminators (SPEC §4)."""
from torch import nn

INIT_STD = 0.02


def init_weights(module: nn.Module) -> None:
    """conv/linear weights N(0, 0.02) and biases 0; BatchNorm weight N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
        nn.init.normal_(module.weight, 1.0, INIT_STD)
        nn.init.zeros_(module.bias)
