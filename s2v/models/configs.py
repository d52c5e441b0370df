"""Named generator configurations of the paper's ablation (SPEC §7), all at 128 px by default."""
from __future__ import annotations

from typing import Dict

CONFIGS: Dict[str, dict] = {
    # MfS baseline: sound through the recurrent encoder only, one GRU layer.
    "mfs": dict(sound_route="rnn", motion_layers=1, cond_gen=False, vid_pred="none"),
    # + residual multi-scale dilated GRU.
    "mfs+dilated": dict(sound_route="rnn", motion_layers=3, cond_gen=False, vid_pred="none"),
    # + sound as content: the features also feed the generator input.
    "+sac": dict(sound_route="rnngen", motion_layers=3, cond_gen=False, vid_pred="none"),
    # + audio-conditioned instance norm.
    "+acin": dict(sound_route="rnngen", motion_layers=3, cond_gen=True, vid_pred="none"),
    # + square ConvGRU video prediction.
    "+convgru": dict(sound_route="rnngen", motion_layers=3, cond_gen=True, vid_pred="basic"),
    # + directional ConvGRU: the full model.
    "full": dict(sound_route="rnngen", motion_layers=3, cond_gen=True, vid_pred="dir"),
}
ALIASES = {"+dirconvgru": "full", "+dilated": "mfs+dilated", "baseline": "mfs"}


def named_config(name: str) -> dict:
    """Generator keyword arguments of a named configuration (a fresh dict)."""
    key = ALIASES.get(name, name)
    if key not in CONFIGS:
        names = ", ".join(list(CONFIGS) + list(ALIASES))
        raise ValueError(f"config: expected one of {names}, got {name!r}")
    return dict(CONFIGS[key])
