"""Load weights of the published implementation into s2v modules.

``from_published(config, state_dict)`` takes a config dict with a ``kind``
(``video_predictor``, ``motion_encoder``, ``generator``, ``discriminator``; keys
as in SPEC §10, absent keys take the published defaults) and a state dict
under the published key names (golden ``param/…`` entries or a generator
checkpoint ``NNNN_Gn.model`` saved by the published training script), and
returns the equivalent s2v module with the weights loaded.

The published layouts differ from ours in three ways, all handled here: the
ConvGRU gates are three separate convs (ours are stacked r, u, o), directional
sub-kernels are separate 1-D convs (ours are one tap vector), and the motion
encoder keeps one GRUCell per layer (ours stacks the layers).
"""
from __future__ import annotations

import os
from typing import Dict, Mapping

import numpy as np
import torch

from .nn import DilatedResidualGRU, VideoPredictor
from .ops.backend import check_backend_name

GATES = ("reset", "update", "output")  # our stacking order

DEFAULTS = {
    "video_predictor": dict(kernel_size=3, directional=True),
    "motion_encoder": dict(layers=3, dilation=2, type="basic"),
    "generator": dict(output_size=256, audio_features=64, e_motion=2, z_content=0,
                      sound_route="gen", motion_layers=1, motion_type="basic",
                      cond_gen=False, vid_pred="none", architecture="residual",
                      channels_base=1024, max_channels=512, double_finest=False),
    "discriminator": dict(seq_len=1, input_size=256, channels_base=1024, max_channels=512,
                          architecture="skip", double_finest=False),
}


class PublishedWeightsError(ValueError):
    """The state dict does not match the configuration it was given with."""


class _Source:
    """Read-once view of a published state dict; reports missing and unused keys."""

    def __init__(self, state_dict: Mapping[str, object]):
        self.tensors: Dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            key = key[len("param/"):] if key.startswith("param/") else key
            key = key[len("module."):] if key.startswith("module.") else key
            self.tensors[key] = torch.as_tensor(np.asarray(value)) if not isinstance(
                value, torch.Tensor) else value
        self.used: set = set()

    def take(self, key: str) -> torch.Tensor:
        if key not in self.tensors:
            raise PublishedWeightsError(f"published weights lack {key!r}; the configuration "
                                        f"does not match the state dict")
        self.used.add(key)
        return self.tensors[key].detach().to(torch.float32)

    def has(self, key: str) -> bool:
        return key in self.tensors

    def finish(self) -> None:
        unused = sorted(k for k in self.tensors if k not in self.used
                        and not k.endswith("num_batches_tracked"))
        if unused:
            shown = ", ".join(unused[:5]) + (" …" if len(unused) > 5 else "")
            raise PublishedWeightsError(
                f"{len(unused)} published tensors have no place in the configured model "
                f"({shown}); the configuration does not match the state dict")


def with_defaults(config: Mapping) -> dict:
    kind = config.get("kind")
    if kind not in DEFAULTS:
        raise ValueError(f"config['kind']: expected one of {', '.join(DEFAULTS)}, got {kind!r}")
    merged = dict(DEFAULTS[kind])
    merged.update({k: v for k, v in config.items() if v is not None})
    return merged


# --- video predictor -------------------------------------------------------------------

def _published_gate(src: _Source, prefix: str, orientation, kernel_size: int):
    """One published DirConv2d -> (weight in our layout, bias [C_hid])."""
    if orientation is None:
        return src.take(prefix + ".conv.weight"), src.take(prefix + ".conv.bias")
    taps = []
    for s in range((kernel_size + 1) // 2):
        w = src.take(f"{prefix}.convs.{s}.weight")  # [C_hid, C_cat, 1, 2s+1] or [.., 2s+1, 1]
        taps.append(w.flatten(2))
    return torch.cat(taps, dim=2), src.take(prefix + ".bias").flatten()


def _load_cell(src: _Source, prefix: str, cell, orientation, kernel_size: int) -> None:
    gates = [_published_gate(src, f"{prefix}.{g}", orientation, kernel_size) for g in GATES]
    with torch.no_grad():
        cell.weight.copy_(torch.stack([w for w, _ in gates]))
        cell.bias.copy_(torch.stack([b for _, b in gates]))


def load_video_predictor(src: _Source, prefix: str, vp: VideoPredictor) -> None:
    k = vp.kernel_size
    if vp.directional:
        for i, orientation in enumerate((None, "h", "w")):
            _load_cell(src, f"{prefix}flows.{i}", vp.cells[i], orientation, k)
        with torch.no_grad():
            vp.blend_weight.copy_(src.take(prefix + "pmd_weighting.conv.weight").flatten(1))
            vp.blend_bias.copy_(src.take(prefix + "pmd_weighting.conv.bias"))
    else:
        _load_cell(src, f"{prefix}flows.0", vp.cells[0], None, k)


# --- motion encoder --------------------------------------------------------------------

def load_motion_encoder(src: _Source, prefix: str, me: DilatedResidualGRU) -> None:
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(me, name).copy_(torch.stack(
                [src.take(f"{prefix}layers.{l}.{name}") for l in range(me.num_layers)]))
        if me.feedback:
            me.feedback_weight.copy_(src.take(prefix + "sound_encoder.0.weight"))
            me.feedback_bias.copy_(src.take(prefix + "sound_encoder.0.bias"))


def _count_layers(src: _Source, prefix: str) -> int:
    n = 0
    while src.has(f"{prefix}layers.{n}.weight_ih"):
        n += 1
    return n


# --- generator and discriminators --------------------------------------------------------

def _copy(dst: torch.Tensor, value: torch.Tensor, key: str) -> None:
    if tuple(dst.shape) != tuple(value.shape):
        raise PublishedWeightsError(f"{key}: the configured model expects shape "
                                    f"{tuple(dst.shape)}, the state dict has "
                                    f"{tuple(value.shape)}")
    with torch.no_grad():
        dst.copy_(value.to(dst.dtype))


def _load_conv(src: _Source, key: str, module) -> None:
    """A published ``Conv`` wrapper: ``<key>.conv.{weight,bias}``."""
    _copy(module.weight, src.take(key + ".conv.weight"), key + ".conv.weight")
    _copy(module.bias, src.take(key + ".conv.bias"), key + ".conv.bias")


def _load_batch_norm(src: _Source, key: str, module) -> None:
    """A published ``BatchNorm`` wrapper: ``<key>.module.*`` (statistics included)."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        _copy(getattr(module, name), src.take(f"{key}.module.{name}"), f"{key}.module.{name}")
    if src.has(key + ".module.num_batches_tracked"):
        src.used.add(key + ".module.num_batches_tracked")
        module.num_batches_tracked.fill_(int(src.tensors[key + ".module.num_batches_tracked"]))


def _load_linear(src: _Source, key: str, module) -> None:
    _copy(module.weight, src.take(key + ".weight"), key + ".weight")
    _copy(module.bias, src.take(key + ".bias"), key + ".bias")


def _load_noise(src: _Source, key: str, module) -> None:
    _copy(module.weight, src.take(key + ".weight").reshape(1), key + ".weight")


def _load_conv_norm_act(src: _Source, key: str, block, noise: bool) -> None:
    """Published ``ConvBlock``: ``module.{0: conv, [1: noise,] next: BatchNorm}``."""
    _load_conv(src, key + ".module.0", block.conv)
    if noise:
        _load_noise(src, key + ".module.1", block.noise)
    _load_batch_norm(src, f"{key}.module.{2 if noise else 1}", block.norm)


def _load_residual_block(src: _Source, key: str, block, noise: bool) -> None:
    """Published ``ResConvBlock``: ``block.{conv, [noise,] norm, lrelu, conv, [noise,] norm}``."""
    first = ["conv1", "noise1", "norm1", None, "conv2", "noise2", "norm2"]
    order = first if noise else [n for n in first if n is None or not n.startswith("noise")]
    for index, name in enumerate(order):
        if name is None:
            continue
        part, sub = getattr(block, name), f"{key}.block.{index}"
        if name.startswith("conv"):
            _load_conv(src, sub, part)
        elif name.startswith("noise"):
            _load_noise(src, sub, part)
        elif part is not None:  # BatchNorm; conditional instance norm has no parameters
            _load_batch_norm(src, sub, part)
    _load_conv(src, key + ".residual", block.shortcut)


def _build_generator(cfg: dict, src: _Source, backend: str):
    from .models import Generator

    prefix = "generator."
    feedback = src.has("motion.sound_encoder.0.weight") or "back" in str(
        cfg.get("motion_type", "basic")).lower()
    g = Generator(output_size=int(cfg["output_size"]), audio_features=int(cfg["audio_features"]),
                  e_motion=int(cfg["e_motion"]), z_content=int(cfg["z_content"]),
                  sound_route=cfg["sound_route"], motion_layers=int(cfg["motion_layers"]),
                  motion_dilation=int(cfg.get("motion_dilation", 2)), motion_feedback=feedback,
                  cond_gen=bool(cfg["cond_gen"]), vid_pred=cfg["vid_pred"] or "none",
                  architecture=cfg["architecture"], channels_base=int(cfg["channels_base"]),
                  max_channels=int(cfg["max_channels"]),
                  double_finest=bool(cfg.get("double_finest", False)), backend=backend)
    if _count_layers(src, "motion.") != g.motion.num_layers:
        raise PublishedWeightsError(
            f"the state dict has {_count_layers(src, 'motion.')} motion encoder layers, the "
            f"config says {g.motion.num_layers}")
    load_motion_encoder(src, "motion.", g.motion)
    fmt = prefix + "format_layer.1"
    _load_conv_norm_act(src, fmt, _FormatView(g), noise=True)
    for l, block in enumerate(g.blocks):
        key = f"{prefix}layers.{l}"
        if g.architecture == "residual":
            _load_residual_block(src, key, block, noise=True)
            if block.condition is not None:
                _load_linear(src, f"{prefix}conditions.{l}.0", block.condition)
        else:
            _load_conv_norm_act(src, key + ".0", block.first, noise=True)
            _load_conv_norm_act(src, key + ".1", block.second, noise=True)
    if g.architecture == "skip":
        for l, to_rgb in enumerate(g.to_rgb):
            _load_conv(src, f"{prefix}toRGB.{l}.0", to_rgb)
    else:
        _load_conv(src, prefix + "toRGB.0", g.to_rgb)
    if g.vp is not None:
        load_video_predictor(src, f"{prefix}vp_layers.{g.n_stages - 1}.", g.vp)
    return g


class _FormatView:
    """The generator's format layer seen as a ConvNormAct (conv, noise, norm)."""

    def __init__(self, g):
        self.conv, self.noise, self.norm = g.format_conv, g.format_noise, g.format_norm


def _build_discriminator(cfg: dict, src: _Source):
    from .models import ImageDiscriminator, VideoDiscriminator

    kwargs = dict(input_size=int(cfg["input_size"]), channels_base=int(cfg["channels_base"]),
                  max_channels=int(cfg["max_channels"]), architecture=cfg["architecture"],
                  double_finest=bool(cfg.get("double_finest", False)))
    seq_len = int(cfg["seq_len"])
    d = ImageDiscriminator(**kwargs) if seq_len == 1 else VideoDiscriminator(seq_len, **kwargs)
    if d.architecture == "skip":
        for i, from_rgb in enumerate(d.from_rgb):
            _load_conv(src, f"fromRGB.{i}", from_rgb)
    else:
        _load_conv(src, "fromRGB", d.from_rgb)
    for i, stage in enumerate(d.stages):
        # Published stage i: Sequential(AvgPool, block...) so the blocks start at index 1.
        if d.architecture == "residual":
            _load_residual_block(src, f"layers.{i}.1", stage, noise=False)
        else:
            _load_conv_norm_act(src, f"layers.{i}.1", stage.first, noise=False)
            _load_conv_norm_act(src, f"layers.{i}.2", stage.second, noise=False)
    _load_conv(src, "decision_layer", d.decision)
    return d


# --- entry point -----------------------------------------------------------------------

def from_published(config: Mapping, state_dict, backend: str = "eager"):
    """Build the s2v module that ``config`` describes and load published weights into it.

    Args:
        config: dict with ``kind`` and the keys of SPEC §10 (absent = published default).
        state_dict: mapping of published key -> tensor/array (``param/`` prefixes and
            ``module.`` prefixes are stripped), or a path to a file saved with
            ``torch.save`` (e.g. the published ``NNNN_Gn.model``) or an ``.npz``.
        backend: backend of the returned module's fused layers.

    Returns:
        ``VideoPredictor``, ``DilatedResidualGRU``, ``Generator``,
        ``ImageDiscriminator`` or ``VideoDiscriminator``, in eval mode.
    """
    check_backend_name(backend)
    if isinstance(state_dict, (str, os.PathLike)):
        state_dict = _read_state_dict(state_dict)
    cfg = with_defaults(config)
    src = _Source(state_dict)
    kind = cfg["kind"]
    if kind == "video_predictor":
        channels = cfg.get("channels")
        if channels is None:
            channels = src.take("flows.0.reset.conv.weight").shape[0] - (
                0 if cfg["directional"] else 1)
        module = VideoPredictor(int(channels), int(cfg["kernel_size"]),
                                bool(cfg["directional"]), backend=backend)
        load_video_predictor(src, "", module)
    elif kind == "motion_encoder":
        features = cfg.get("features")
        if features is None:
            features = src.take("layers.0.weight_ih").shape[1]
        module = DilatedResidualGRU(int(features), int(cfg["layers"]), int(cfg["dilation"]),
                                    feedback="back" in str(cfg["type"]).lower(),
                                    backend=backend)
        load_motion_encoder(src, "", module)
    elif kind == "generator":
        module = _build_generator(cfg, src, backend)
    else:
        module = _build_discriminator(cfg, src)
    src.finish()
    return module.eval()


def _read_state_dict(path) -> Mapping:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such weights file: {path}")
    if path.endswith(".npz"):
        with np.load(path) as data:
            return {k: data[k] for k in data.files if k.startswith("param/")}
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"],
                                                                         Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise PublishedWeightsError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return obj
