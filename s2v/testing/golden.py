"""Golden-vector runner: recompute a golden file's outputs and gradients and compare.

    python -m s2v.testing.golden FILE.npz [FILE ...] [--backend B] [--precision fp32|bf16]

Each file holds one case produced by the published implementation (SPEC §10):
a JSON ``config``, weights under ``param/<published key>``, inputs ``in/…``,
outputs ``out/…`` and, for training cases, ``grad/x{i}`` and
``grad/param{i}/<key>`` (gradients of ``Σ out ⊙ dy`` for call i). Calls are
consecutive: call i+1 starts from the state call i left. Prints one line per
file with the worst relative error ``max|a - b| / max|b|`` and PASS/FAIL;
exits 1 when any file fails or cannot be interpreted.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

from ..compat import from_published, with_defaults
from ..ops.backend import BACKENDS

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def tolerance(backend: str, precision: str) -> float:
    """SPEC §10: eager fp32 1e-5; fused fp32 1e-4; bf16 2e-2 (all relative)."""
    if precision == "bf16":
        return 2e-2
    return 1e-5 if backend == "eager" else 1e-4


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours = ours.detach().to(torch.float64).cpu()
    ref = torch.as_tensor(ref).to(torch.float64)
    if tuple(ours.shape) != tuple(ref.shape):
        raise GoldenFormatError(f"shape {tuple(ours.shape)} where the file has {tuple(ref.shape)}")
    scale = ref.abs().max().item() if ref.numel() else 0.0
    diff = (ours - ref).abs().max().item() if ref.numel() else 0.0
    if not np.isfinite(diff):
        return float("inf")
    return diff / scale if scale > 0 else diff


class GoldenFormatError(ValueError):
    """The file is not a golden case this runner can interpret."""


@dataclass
class CaseResult:
    """Errors per compared tensor; ``limits`` holds the tolerances that differ from the
    run's (the audio features' absolute dB limit)."""
    path: str
    errors: Dict[str, float] = field(default_factory=dict)
    limits: Dict[str, float] = field(default_factory=dict)

    def limit(self, key: str, default: float) -> float:
        return self.limits.get(key, default)

    def worst(self, tol: float = 1.0) -> Tuple[str, float]:
        """The tensor closest to (or furthest past) its tolerance, and its error."""
        return max(self.errors.items(), key=lambda kv: kv[1] / self.limit(kv[0], tol))

    def passed(self, tol: float) -> bool:
        return all(err <= self.limit(k, tol) for k, err in self.errors.items())


class _Case:
    """Arrays of one golden file, with helpers that fail clearly on missing keys."""

    def __init__(self, path: str):
        try:
            with np.load(path, allow_pickle=False) as data:
                self.arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise GoldenFormatError(f"cannot read as .npz: {exc}") from exc
        if "config" not in self.arrays:
            raise GoldenFormatError("no 'config' entry")
        try:
            self.config = json.loads(str(self.arrays["config"]))
        except json.JSONDecodeError as exc:
            raise GoldenFormatError(f"config is not JSON: {exc}") from exc
        if not isinstance(self.config, dict) or "kind" not in self.config:
            raise GoldenFormatError("config has no 'kind'")

    def get(self, key: str) -> np.ndarray:
        if key not in self.arrays:
            raise GoldenFormatError(f"missing entry {key!r}")
        return self.arrays[key]

    def has(self, key: str) -> bool:
        return key in self.arrays

    def params(self, prefix: str = "param/") -> Dict[str, np.ndarray]:
        return {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}

    def calls(self, first_input: str) -> int:
        n = 0
        while self.has(f"in/{first_input}{n}"):
            n += 1
        if n == 0:
            raise GoldenFormatError(f"no in/{first_input}0 entry")
        return n


@dataclass(frozen=True)
class _RoundedTo:
    """Values rounded to ``storage``, then computed in ``compute`` (see
    :func:`rounding_floor`)."""
    storage: torch.dtype
    compute: torch.dtype

    def cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.storage).to(self.compute)


def _tensor(array, dtype, grad=False, batch=False) -> torch.Tensor:
    """A leaf tensor of ``dtype`` (or a :class:`_RoundedTo`); ``batch`` adds the leading
    batch axis of 1."""
    t = torch.as_tensor(np.asarray(array, dtype=np.float32))
    t = dtype.cast(t) if isinstance(dtype, _RoundedTo) else t.to(dtype)
    return (t.unsqueeze(0) if batch else t).requires_grad_(grad)


def _compare_param_grads(case: _Case, module, config, i: int, res: CaseResult, backend) -> None:
    """Map the published gradients into our layout (the weight mapping is linear) and compare."""
    grads = case.params(f"grad/param{i}/")
    if not grads:
        return
    # Keys the file gives no gradient for (e.g. num_batches_tracked) keep their values.
    reference = from_published(config, {**case.params(), **grads}, backend="eager")
    ref_params = dict(reference.named_parameters())
    for name, p in module.named_parameters():
        if p.grad is None:
            raise GoldenFormatError(f"parameter {name} received no gradient")
        res.errors[f"grad{i}/{name}"] = relative_error(p.grad, ref_params[name].detach())


def _run_video_predictor(case: _Case, module, config, dtype, res: CaseResult, backend) -> None:
    train = bool(config.get("train"))
    state = None
    for i in range(case.calls("x")):
        module.zero_grad(set_to_none=True)
        x = _tensor(case.get(f"in/x{i}"), dtype, train, batch=True)
        xh = None
        if case.has(f"in/xh{i}"):
            xh = _tensor(case.get(f"in/xh{i}"), dtype, train, batch=True)
        with torch.set_grad_enabled(train):
            y, state = module(x, state, hallucinated=xh)
        res.errors[f"y{i}"] = relative_error(y[0], case.get(f"out/y{i}"))
        if train:
            dy = _tensor(case.get(f"in/dy{i}"), dtype, batch=True)
            (y * dy).sum().backward()
            res.errors[f"grad/x{i}"] = relative_error(x.grad[0], case.get(f"grad/x{i}"))
            if xh is not None:
                res.errors[f"grad/xh{i}"] = relative_error(xh.grad[0], case.get(f"grad/xh{i}"))
            _compare_param_grads(case, module, config, i, res, backend)
    for f, s in enumerate(state):
        if case.has(f"out/state{f}"):
            res.errors[f"state{f}"] = relative_error(s, case.get(f"out/state{f}"))


def _run_motion_encoder(case: _Case, module, config, dtype, res: CaseResult, backend) -> None:
    train = bool(config.get("train"))
    state = None
    for i in range(case.calls("x")):
        module.zero_grad(set_to_none=True)
        x = _tensor(case.get(f"in/x{i}"), dtype, train)
        with torch.set_grad_enabled(train):
            y, state = module(x, state)
        res.errors[f"y{i}"] = relative_error(y, case.get(f"out/y{i}"))
        if train:
            (y * _tensor(case.get(f"in/dy{i}"), dtype)).sum().backward()
            res.errors[f"grad/x{i}"] = relative_error(x.grad, case.get(f"grad/x{i}"))
            _compare_param_grads(case, module, config, i, res, backend)


def _run_generator(case: _Case, module, config, dtype, res: CaseResult, backend) -> None:
    state = None
    with torch.no_grad():
        for i in range(case.calls("audio")):
            audio = _tensor(case.get(f"in/audio{i}"), dtype)
            e = _tensor(case.get(f"in/e_motion{i}"), dtype) if case.has(
                f"in/e_motion{i}") else None
            z = _tensor(case.get(f"in/z_content{i}"), dtype) if case.has(
                f"in/z_content{i}") else None
            video, state = module(audio, e_motion=e, z_content=z, state=state)
            res.errors[f"video{i}"] = relative_error(video, case.get(f"out/video{i}"))


def _run_discriminator(case: _Case, module, config, dtype, res: CaseResult, backend) -> None:
    with torch.no_grad():
        y = module(_tensor(case.get("in/x"), dtype))
    res.errors["y"] = relative_error(y, case.get("out/y"))


DB_FEATURES = ("lms", "mfcc")
DB_TOLERANCE = 1e-3  # SPEC §10: dB-valued features within 1e-3 dB absolute


def _run_audio_features(case: _Case, module, config, dtype, res: CaseResult, backend) -> None:
    from ..audio import features, power_mel

    kind = config.get("feat_type") or "lms"
    hop = config.get("stft_hop_sec") or 0.01
    options = dict(fmin=config.get("fmin") or 125, fmax=config.get("fmax") or 7500,
                   win_sec=config.get("stft_win_sec") or 0.025, hop_sec=hop)
    wave = torch.as_tensor(case.get("in/wave"))
    sample_rate = int(config.get("sample_rate") or 64000)
    bands = int(config.get("mel_bands") or 64)
    chunk = float(config.get("chunk_len_sec") or 0.085)
    try:
        feats = features(wave, sample_rate, float(config.get("fps") or 20), kind, bands, chunk,
                         n_mfcc=int(config.get("n_mfcc") or 20), **options)
    except ValueError as exc:
        raise GoldenFormatError(f"config does not describe valid features: {exc}") from exc
    ref = case.get("out/features")
    if kind in DB_FEATURES:
        if tuple(feats.shape) != tuple(ref.shape):
            raise GoldenFormatError(f"features of shape {tuple(feats.shape)} where the file has "
                                    f"{tuple(ref.shape)}")
        res.errors["features (dB)"] = float(np.abs(feats.numpy() - ref).max()) if ref.size else 0.0
        res.limits["features (dB)"] = DB_TOLERANCE
    else:
        res.errors["features"] = relative_error(feats, ref)
        res.limits["features"] = 1e-4
    if case.has("out/chunk0_power_mel"):
        width = case.get("out/chunk0_power_mel").shape[1]
        mel = power_mel(wave, sample_rate, bands, **options)[:, :width]
        res.errors["chunk0_power_mel"] = relative_error(mel, case.get("out/chunk0_power_mel"))
        res.limits["chunk0_power_mel"] = 1e-4


RUNNERS: Dict[str, Callable] = {
    "audio_features": _run_audio_features,
    "video_predictor": _run_video_predictor,
    "motion_encoder": _run_motion_encoder,
    "generator": _run_generator,
    "discriminator": _run_discriminator,
}


def run_file(path: str, backend: str = "eager", precision: str = "fp32",
             exact: bool = False) -> CaseResult:
    """Recompute one golden file; raises GoldenFormatError if it cannot be interpreted.

    ``exact``: round inputs and weights to ``precision`` as usual, then compute in
    float64 (eager): the error that rounding alone causes (:func:`rounding_floor`).
    """
    case = _Case(path)
    kind = case.config["kind"]
    if kind not in RUNNERS:
        raise GoldenFormatError(f"unknown kind {kind!r} (known: {', '.join(RUNNERS)})")
    res = CaseResult(path)
    if kind == "audio_features":  # no module, no backend: features are float64 torch
        _run_audio_features(case, None, case.config, None, res, backend)
        return res
    config = with_defaults(case.config)
    dtype = PRECISIONS[precision]
    if exact:
        backend = "eager"
    try:
        module = from_published(config, case.params(), backend=backend)
    except ValueError as exc:
        raise GoldenFormatError(f"weights do not fit the config: {exc}") from exc
    module = module.to(dtype)
    if exact:
        dtype = _RoundedTo(dtype, torch.float64)
        module = module.to(torch.float64)
    if kind == "motion_encoder" or kind == "video_predictor":
        module.train(bool(config.get("train")))
    RUNNERS[kind](case, module, config, dtype, res, backend)
    if not res.errors:
        raise GoldenFormatError("the file holds no outputs to compare")
    return res


def rounding_floor(path: str, precision: str) -> CaseResult:
    """Errors of exact (float64) arithmetic on inputs and weights rounded to
    ``precision``: no implementation that takes rounded inputs can be expected to do
    much better. A case whose floor is above the tolerance cannot pass in that
    precision whatever the kernels do (the CLI prints the floor next to a FAIL)."""
    return run_file(path, "eager", precision, exact=True)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s2v.testing.golden",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="golden .npz files")
    parser.add_argument("--backend", default="eager", choices=BACKENDS)
    parser.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS))
    args = parser.parse_args(argv)
    tol = tolerance(args.backend, args.precision)
    failed = 0
    for path in args.files:
        name = os.path.basename(path)
        try:
            res = run_file(path, args.backend, args.precision)
        except (GoldenFormatError, FileNotFoundError, RuntimeError) as exc:
            print(f"ERROR {name}: {exc}")
            failed += 1
            continue
        key, err = res.worst(tol)
        ok = res.passed(tol)
        failed += not ok
        metric = "max abs err (dB)" if key.endswith("(dB)") else "max rel err"
        floor = ""
        if not ok and args.precision != "fp32":
            # Is the tolerance attainable at all from rounded inputs?
            exact = rounding_floor(path, args.precision).errors.get(key)
            if exact is not None:
                floor = (f"; exact float64 arithmetic on the {args.precision}-rounded "
                         f"inputs and weights: {exact:.2e}")
        print(f"{'PASS' if ok else 'FAIL'} {name}: {metric} {err:.2e} ({key}; "
              f"tolerance {res.limit(key, tol):.0e}, {len(res.errors)} tensors{floor})")
    print(f"{len(args.files) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
