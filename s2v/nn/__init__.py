"""Drop-in layers with parameters and a ``backend=`` choice."""
from .dilated_gru import DilatedResidualGRU
from .dirconv_gru import DirConvGRU
from .video_predictor import VideoPredictor

__all__ = ["DilatedResidualGRU", "DirConvGRU", "VideoPredictor"]
