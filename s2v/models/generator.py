"""The generator: sound routing, motion encoder, 2-D residual generator, video predictor."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import DilatedResidualGRU, VideoPredictor
from ..ops._validation import check_float_tensor, check_positive_int, check_shape
from ..ops.backend import check_backend_name
from ._init import init_weights
from .blocks import (LRELU_SLOPE, NoiseInjection, PlainBlock, ResidualBlock,
                     all_stage_channels, upsample_nearest_2x)

SOUND_ROUTES = ("rnn", "gen", "rnngen")
VID_PRED = ("none", "basic", "dir")
ARCHITECTURES = ("residual", "basic", "skip")


def _vid_pred_name(value) -> str:
    if value in (None, "", False):
        return "none"
    if value not in VID_PRED:
        raise ValueError(f"vid_pred: expected one of {', '.join(VID_PRED)}, got {value!r}")
    return value


class Generator(nn.Module):
    """Audio features (+ noise) → video frames (SPEC §2, §4, §5).

    ``video, state = g(audio, e_motion=None, z_content=None, state=None)``:

    * ``audio [B, T, F]`` audio features, one vector per frame;
    * ``e_motion [B, T, E]`` motion noise (sampled U[0, 1) when None);
    * ``z_content [B, T, Z]`` content noise (sampled U[0, 1) when None and Z > 0);
    * ``video [B, T, 3, S, S]`` in [-1, 1] (``skip`` sums per-stage tanh outputs);
    * ``state = (motion_state, vp_state)``, detached; ``None`` is a reset. Each
      of the B sequences carries its own state.

    Sound routes: ``rnn`` (encoder reads ``[e, a]``, generator ``[m, z]``),
    ``gen`` (``e`` / ``[m, a, z]``), ``rnngen`` (``[e, a]`` / ``[m, a, z]``);
    ``cond_gen`` drives conditional instance norm with ``a``.

    Randomness: besides e and z, the per-pixel noise injections draw from torch's
    global generator on every call (as in training), so repeatable frames need
    ``torch.manual_seed`` before the call. ``g.backend = name`` switches the fused
    layers (motion encoder and video predictor) together.
    """

    def __init__(self, output_size: int = 128, audio_features: int = 64, e_motion: int = 2,
                 z_content: int = 0, sound_route: str = "rnngen", motion_layers: int = 3,
                 motion_dilation: int = 2, motion_feedback: bool = False, cond_gen: bool = True,
                 vid_pred: str = "dir", architecture: str = "residual",
                 channels_base: int = 1024, max_channels: int = 512,
                 double_finest: bool = False, backend: str = "auto"):
        super().__init__()
        check_positive_int("output_size", output_size, 16)
        if output_size & (output_size - 1):
            raise ValueError(f"output_size: expected a power of two >= 16, got {output_size}")
        check_positive_int("audio_features", audio_features)
        check_positive_int("e_motion", e_motion, 0)
        check_positive_int("z_content", z_content, 0)
        check_positive_int("channels_base", channels_base)
        check_positive_int("max_channels", max_channels)
        if sound_route not in SOUND_ROUTES:
            raise ValueError(f"sound_route: expected one of {', '.join(SOUND_ROUTES)}, "
                             f"got {sound_route!r}")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture: expected one of {', '.join(ARCHITECTURES)}, "
                             f"got {architecture!r}")
        vid_pred = _vid_pred_name(vid_pred)
        if vid_pred != "none" and architecture == "skip":
            raise ValueError("vid_pred: the video predictor needs architecture 'residual' or "
                             "'basic', not 'skip'")
        if cond_gen and architecture != "residual":
            raise ValueError("cond_gen: conditional instance norm needs architecture "
                             f"'residual', got {architecture!r}")
        check_backend_name(backend)
        rnn_in = e_motion + audio_features if "rnn" in sound_route else e_motion
        if rnn_in < 1:
            raise ValueError("e_motion: route 'gen' feeds only the motion noise to the motion "
                             "encoder, so e_motion must be >= 1")
        self.output_size = output_size
        self.audio_features = audio_features
        self.e_motion = e_motion
        self.z_content = z_content
        self.sound_route = sound_route
        self.cond_gen = bool(cond_gen)
        self.vid_pred = vid_pred
        self.architecture = architecture
        self.n_stages = n = int(math.log2(output_size)) - 2
        nc = all_stage_channels(n, channels_base, max_channels, double_finest, output_size)
        self.channels = nc
        gen_in = rnn_in + z_content + (audio_features if "gen" in sound_route else 0)

        self.motion = DilatedResidualGRU(rnn_in, motion_layers, motion_dilation,
                                         motion_feedback, backend=backend)
        self.format_conv = nn.Conv2d(gen_in, nc[0], 3, padding=1)
        self.format_noise = NoiseInjection()
        self.format_norm = nn.BatchNorm2d(nc[0], eps=1e-5)
        cond = audio_features if self.cond_gen else 0
        if architecture == "residual":
            self.blocks = nn.ModuleList(ResidualBlock(2, nc[l], nc[l + 1], True, cond)
                                        for l in range(n))
        else:
            self.blocks = nn.ModuleList(PlainBlock(2, nc[l], nc[l + 1], True) for l in range(n))
        if architecture == "skip":
            self.to_rgb = nn.ModuleList(nn.Conv2d(nc[l + 1], 3, 1) for l in range(n))
        else:
            self.to_rgb = nn.Conv2d(nc[n], 3, 1)
        self.apply(init_weights)
        self.vp = None
        if vid_pred != "none":
            self.vp = VideoPredictor(nc[n], 3 if output_size < 512 else 5,
                                     directional=vid_pred == "dir", backend=backend)

    @property
    def backend(self) -> str:
        return self.motion.backend

    @backend.setter
    def backend(self, value: str) -> None:
        self.motion.backend = value
        if self.vp is not None:
            self.vp.backend = value

    def _check_input(self, name: str, t, B: int, T: int, size: int, ref: torch.Tensor):
        check_float_tensor(name, t, 3)
        check_shape(name, t, (B, T, size), f"[B, T, {name} size]")
        if t.device != ref.device:
            raise ValueError(f"{name}: expected device {ref.device}, got {t.device}")
        return t.to(ref.dtype)

    def forward(self, audio: torch.Tensor, e_motion: torch.Tensor | None = None,
                z_content: torch.Tensor | None = None, state=None):
        check_float_tensor("audio", audio, 3)
        B, T, Fa = audio.shape
        dtype = self.format_conv.weight.dtype
        if audio.dtype != dtype and not torch.is_autocast_enabled(audio.device.type):
            raise TypeError(f"audio: expected {dtype} like the generator's parameters, got "
                            f"{audio.dtype} (convert the features with .to({dtype}), or the "
                            f"model with .to({audio.dtype}))")
        if Fa != self.audio_features:
            raise ValueError(f"audio: expected {self.audio_features} features per frame "
                             f"([B, T, {self.audio_features}]), got {tuple(audio.shape)}")
        if B < 1 or T < 1:
            raise ValueError(f"audio: expected B, T >= 1, got {tuple(audio.shape)}")
        if e_motion is None:
            e_motion = torch.rand(B, T, self.e_motion, device=audio.device, dtype=audio.dtype)
        e_motion = self._check_input("e_motion", e_motion, B, T, self.e_motion, audio)
        if z_content is None:
            z_content = torch.rand(B, T, self.z_content, device=audio.device, dtype=audio.dtype)
        z_content = self._check_input("z_content", z_content, B, T, self.z_content, audio)
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise ValueError("state: expected (motion_state, vp_state) as returned by the "
                             "previous call, or None")
        motion_state, vp_state = state if state is not None else (None, None)

        rnn_in = e_motion if self.sound_route == "gen" else torch.cat([e_motion, audio], 2)
        m, motion_state = self.motion(rnn_in, motion_state)
        parts = [m, audio, z_content] if "gen" in self.sound_route else [m, z_content]
        z = torch.cat(parts, dim=2).reshape(B * T, -1, 1, 1)
        feats = audio.reshape(B * T, Fa)

        # Replicate padding of a 1×1 map to 4×4 is a broadcast of the vector.
        x = F.pad(z, (2, 1, 2, 1), mode="replicate")
        x = self.format_norm(self.format_noise(self.format_conv(x)))
        x = F.leaky_relu(x, LRELU_SLOPE)
        rgb = None
        for l, block in enumerate(self.blocks):
            x = upsample_nearest_2x(x)
            x = block(x, feats if self.cond_gen else None)
            if self.architecture == "skip":
                stage_rgb = torch.tanh(self.to_rgb[l](x))
                rgb = stage_rgb if rgb is None else stage_rgb + upsample_nearest_2x(rgb)
        if self.vp is not None:
            frames = x.view(B, T, *x.shape[1:])
            frames, vp_state = self.vp(frames, vp_state, hallucinated=frames)
            x = frames.reshape(B * T, *x.shape[1:])
        if self.architecture != "skip":
            rgb = torch.tanh(self.to_rgb(x))
        S = self.output_size
        return rgb.view(B, T, 3, S, S), (motion_state, vp_state)
