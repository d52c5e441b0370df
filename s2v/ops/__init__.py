"""Functional ops: eager references, validation and backend dispatch."""
from .backend import BACKENDS, BackendUnavailableError
from .dilated_gru import dilated_gru, dilated_gru_ref
from .dirconv_gru import dirconv_gru, dirconv_gru_ref
from .video_predictor import video_predictor, video_predictor_ref

__all__ = ["BACKENDS", "BackendUnavailableError", "dilated_gru", "dilated_gru_ref",
           "dirconv_gru", "dirconv_gru_ref", "video_predictor", "video_predictor_ref"]
