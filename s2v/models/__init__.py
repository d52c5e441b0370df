"""Generator, discriminators and the paper's named configurations."""
from .configs import CONFIGS, named_config
from .discriminator import ImageDiscriminator, VideoDiscriminator
from .generator import Generator

__all__ = ["CONFIGS", "Generator", "ImageDiscriminator", "VideoDiscriminator",
           "named_config"]
