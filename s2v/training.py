"""One-shot training on a single video (SPEC §7).

Per iteration, with ``fake = G(features)``, a random frame k and ``perm`` the real
window with its frames shuffled: one D_V step on ``L_D(real, fake) + L_D(real,
perm)``, one D_I step on frame k, one G step on ``L_G(D_V(fake)) + λ_L1·|real -
fake| + L_G(D_I(fake_k))``. Adam (0.3, 0.999), lr 1e-4 (G) / 4e-4 (D); non-finite
gradient entries are zeroed before every step. Recurrent states carry from one
window to the next and are reset per stream when the sampler starts it anew.

Everything needed to continue exactly (weights, optimisers, sampler, recurrent
states, RNG) is checkpointed atomically every ``checkpoint_every`` steps, at the
end, when the time budget is spent and on SIGINT/SIGTERM.
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import time
from dataclasses import asdict, dataclass, fields
from typing import Optional, Tuple

import torch

from . import checkpoint as ckpt
from .audio import KINDS as AUDIO_FEATURE_KINDS
from .distributed import Context
from .data import (MAX_FPS, ClipOptions, SequenceSampler, batch_windows, file_digest,
                   finite_number, prepare_clip)
from .devices import resolve_device, tune_for_fixed_shapes
from .models import Generator, ImageDiscriminator, VideoDiscriminator, named_config
from .models.losses import check_loss, discriminator_loss, generator_loss
from .ops.backend import check_backend_name

PRECISIONS = ("fp32", "bf16")


# Seeds feed torch.manual_seed and NumPy (plus 1000 per rank): keep them in int64.
MAX_SEED = 2**62


@dataclass
class TrainOptions:
    """Everything ``s2v train`` accepts besides the video and the run directory."""
    size: int = 128
    frames: int = 32
    fps: float = 20.0
    steps: int = 50000
    minutes: Optional[float] = None
    batch: int = 1
    crop: Optional[Tuple[int, int, int, int]] = None
    config: str = "full"
    seed: int = 0
    device: str = "cpu"
    backend: str = "auto"
    precision: str = "fp32"
    checkpoint_every: int = 1000
    validate_every: int = 0          # 0: at every checkpoint
    loss: str = "wgan-gp"
    l1: float = 10.0
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    channels_base: int = 1024
    max_channels: int = 512
    features: str = "lms"
    bands: int = 64
    chunk: float = 0.085
    samples: bool = True             # write a sample video at each validation
    progress: bool = True

    def validate(self) -> None:
        for name in ("size", "frames", "steps", "batch", "checkpoint_every", "channels_base",
                     "max_channels", "bands"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, "
                                 f"got {value!r}")
        if self.frames < 2 or self.frames % 2:
            raise ValueError(f"--frames: expected an even number >= 2 (the video "
                             f"discriminator halves the time axis), got {self.frames}")
        if self.size < 16 or self.size & (self.size - 1):
            raise ValueError(f"--size: expected a power of two >= 16, got {self.size}")
        if not _positive_number(self.fps):
            raise ValueError(f"--fps: expected a positive frame rate, got {self.fps!r}")
        if self.fps > MAX_FPS:
            raise ValueError(f"--fps: at most {MAX_FPS} frames per second, got {self.fps:g}")
        if self.minutes is not None and not _positive_number(self.minutes):
            raise ValueError(f"--minutes: expected a positive budget, got {self.minutes!r}")
        for name in ("seed", "validate_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 0, "
                                 f"got {value!r}")
            if value > MAX_SEED:
                raise ValueError(f"--{name.replace('_', '-')}: at most {MAX_SEED}, got {value}")
        if self.features not in AUDIO_FEATURE_KINDS:
            raise ValueError(f"--features: expected one of {', '.join(AUDIO_FEATURE_KINDS)}, got "
                             f"{self.features!r}")
        stages = int(math.log2(self.size)) - 2
        if self.channels_base < 2 ** stages:
            raise ValueError(f"--channels-base: {self.channels_base} is too small for --size "
                             f"{self.size}: its finest stage gets base / 2^{stages} channels; "
                             f"use at least {2 ** stages}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision: expected fp32 or bf16, got {self.precision!r}")
        check_loss(self.loss)
        check_backend_name(self.backend)
        named_config(self.config)
        if not (finite_number(self.l1) and self.l1 >= 0):
            raise ValueError(f"--l1: expected a finite weight >= 0, got {self.l1!r}")
        for name in ("lr_g", "lr_d", "chunk"):
            if not _positive_number(getattr(self, name)):
                raise ValueError(f"--{name.replace('_', '-')}: expected a finite positive "
                                 f"number, got {getattr(self, name)!r}")
        resolve_device(self.device)


def _positive_number(value) -> bool:
    return finite_number(value) and value > 0


_BOOL_OPTIONS = ("progress", "samples")


def _plain(name: str, value):
    """An option value as the plain Python type the checkpoint stores (numpy scalars to
    int/float/bool, a torch.device to its string, a crop to a tuple of ints): a
    checkpoint must load with ``weights_only=True``, which refuses numpy objects."""
    import numbers

    import numpy as np

    if isinstance(value, np.bool_):
        return bool(value)
    if name in _BOOL_OPTIONS:
        if not isinstance(value, bool):
            raise TypeError(f"{name}: expected True or False, got {value!r}")
        return value
    if isinstance(value, torch.device):
        return str(value)
    if name == "crop" and isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_plain("", v) for v in value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def model_config(opts: TrainOptions, audio_features: int) -> dict:
    """Generator keyword arguments (stored in the checkpoint)."""
    return dict(output_size=opts.size, audio_features=audio_features,
                channels_base=opts.channels_base, max_channels=opts.max_channels,
                **named_config(opts.config))


def build_models(config: dict, backend: str, device):
    g = Generator(**config["generator"], backend=backend).to(device)
    disc = dict(input_size=config["generator"]["output_size"],
                channels_base=config["generator"]["channels_base"],
                max_channels=config["generator"]["max_channels"])
    d_v = VideoDiscriminator(config["data"]["seq_len"], **disc).to(device)
    d_i = ImageDiscriminator(**disc).to(device)
    return g, d_v, d_i


# --- recurrent state helpers -----------------------------------------------------------

def reset_rows(state, reset: torch.Tensor):
    """Zero the state of the streams flagged in ``reset [B]`` (nested tuples of tensors)."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(reset_rows(s, reset) for s in state)
    keep = (~reset).to(state.dtype).view(-1, *([1] * (state.dim() - 1)))
    return state * keep.to(state.device)


def to_lists(state):
    """Nested tuples -> lists (what ``torch.load(weights_only=True)`` round-trips)."""
    if isinstance(state, (tuple, list)):
        return [to_lists(s) for s in state]
    return state


def to_tuples(state):
    if isinstance(state, list):
        return tuple(to_tuples(s) for s in state)
    return state


def zero_nonfinite_grads(module: torch.nn.Module) -> None:
    for p in module.parameters():
        if p.grad is not None:
            torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)


# --- the run ---------------------------------------------------------------------------

class _StopFlag:
    """SIGINT/SIGTERM set a flag the loop checks after each step, so the checkpoint it
    writes is consistent."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no handlers, run uninterruptible
            self._previous = {}
        return self

    def _handle(self, signum, frame):
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


# What a run writes into its directory; --force removes these and nothing else.
RUN_FILES = (ckpt.CHECKPOINT_NAME, "log.jsonl")
SAMPLES_DIR = "samples"
_SAMPLE = re.compile(r"step_\d+\.mp4(\.part\.mp4)?")
# Kept by --force: decoded clips stay valid, they are keyed by content and options.
CACHE_DIR = "cache"


def _run_files(out: str, entries) -> tuple:
    """``(own, foreign)``: the paths in ``out`` that a run wrote (checkpoint, log,
    sample videos, checkpoint temporaries) and the names of everything else (the
    cache aside), looking inside ``samples/`` too."""
    own, foreign = [], []
    for name in entries:
        path = os.path.join(out, name)
        if name == CACHE_DIR:
            continue
        if name == SAMPLES_DIR and os.path.isdir(path) and not os.path.islink(path):
            for sample in sorted(os.listdir(path)):
                if _SAMPLE.fullmatch(sample) and not os.path.isdir(os.path.join(path, sample)):
                    own.append(os.path.join(path, sample))
                else:
                    foreign.append(os.path.join(name, sample))
        elif (name in RUN_FILES or (name.startswith(".checkpoint-") and name.endswith(".tmp"))) \
                and not os.path.isdir(path):
            own.append(path)
        else:
            foreign.append(name)
    return own, foreign


def prepare_run_dir(out: str, resume: bool, force: bool) -> list:
    """Check ``out`` for a new run (or a resumed one) and create it. Returns the
    paths that ``--force`` will remove, which the caller deletes only once the new
    run has opened its clip and built its models, so that a bad new input never
    costs the old run. Refuses ``--force`` on a folder holding files that are not
    a run's (someone's documents must not go)."""
    if resume and force:
        raise ValueError("--resume and --force contradict each other: choose one")
    if not out:
        raise ValueError("--out: the path is empty; give the run directory")
    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"--out {out}: is a file; the run directory must be a folder "
                              f"(it is created)")
    entries = sorted(os.listdir(out)) if os.path.isdir(out) else []
    # A folder holding only the decoded-clip cache is what a run that failed before
    # its first checkpoint leaves: not a run to protect.
    exists = bool(set(entries) - {CACHE_DIR})
    if resume:
        ckpt.resolve(out)  # raises FileNotFoundError naming the missing checkpoint
        return []
    own, foreign = _run_files(out, entries)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ValueError(f"{out}: holds files that are not an s2v run's ({shown}); a run "
                         f"needs a folder of its own: choose another --out")
    if exists and not force:
        raise ValueError(f"{out}: the run directory exists; pass --resume to continue that "
                         f"run or --force to start over")
    try:
        os.makedirs(out, exist_ok=True)
    except PermissionError:
        parent = os.path.dirname(os.path.abspath(out))
        while not os.path.isdir(parent):
            parent = os.path.dirname(parent)
        raise PermissionError(f"--out {out}: cannot create the run directory (the folder "
                              f"{parent} is not writable)") from None
    if not os.access(out, os.W_OK):
        raise PermissionError(f"--out {out}: the run directory is not writable")
    return own


def _remove(paths) -> None:
    """Delete a previous run's files (from :func:`_run_files`), then its samples folder
    if nothing else is left in it."""
    for path in paths:
        if os.path.lexists(path):
            os.remove(path)
    for folder in {os.path.dirname(p) for p in paths}:
        if os.path.basename(folder) == SAMPLES_DIR and not os.listdir(folder):
            os.rmdir(folder)


def train(video, out, resume: bool = False, force: bool = False, **options) -> dict:
    """Train on ``video``; everything goes to the run directory ``out``.

    Options are the fields of :class:`TrainOptions`. With ``resume=True`` the run
    continues from ``out/checkpoint.pt`` to ``steps`` (the run's total) with the
    options stored in the checkpoint (``steps``, ``minutes``, ``progress`` and
    ``samples`` may be changed). Returns a summary dict (final step, losses, last validation metrics).
    """
    from .media import path_argument

    out = path_argument(out, "out")
    video = path_argument(video, "video", optional=True)
    known = {f.name for f in fields(TrainOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown training option(s): {', '.join(unknown)}")
    for name, flag in (("resume", resume), ("force", force)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name}: expected True or False, got {flag!r}")
    options = {k: _plain(k, v) for k, v in options.items()}
    if not resume:  # bad options fail before --force clears anything
        if video is None:
            raise TypeError("video: a new run needs the video file to train on (None is for "
                            "resume=True, which reuses the run's own clip)")
        TrainOptions(**options).validate()
    rank = int(os.environ.get("RANK", "0"))
    old_run = []
    if rank == 0:
        old_run = prepare_run_dir(out, resume, force)
    elif not os.path.isdir(out):
        os.makedirs(out, exist_ok=True)
    state_ckpt = ckpt.load(out) if resume else None
    if state_ckpt is not None:
        stored = dict(state_ckpt["config"]["train"])
        changeable = ("steps", "minutes", "progress", "samples")
        for key, value in options.items():
            old = _plain(key, stored.get(key))
            if key not in changeable and value != old:
                raise ValueError(f"--{key.replace('_', '-')} {value} differs from the run's "
                                 f"{old}; a resumed run keeps its options (only --steps, "
                                 f"--minutes, progress and samples may change)")
        stored.update({k: v for k, v in options.items() if k in changeable})
        done = int(state_ckpt["step"])
        if "steps" in options and isinstance(options["steps"], int) and options["steps"] < done:
            raise ValueError(f"--steps {options['steps']}: the run is already at step {done}; "
                             f"--steps is the run's total, so pass more than {done} to "
                             f"continue it")
        opts = TrainOptions(**{k: v for k, v in stored.items() if k in known})
        if opts.crop is not None:
            opts.crop = tuple(opts.crop)
        trained_on = state_ckpt["config"]["data"]["video"]
        if video is None:
            if not os.path.isfile(trained_on):
                raise FileNotFoundError(f"{trained_on}: the run's clip is gone (moved or "
                                        f"deleted); pass its new path as VIDEO to resume")
            video = trained_on
        _check_same_clip(video, trained_on, state_ckpt["config"]["data"].get("digest"))
    else:
        opts = TrainOptions(**options)
    opts.validate()
    run = _Run(os.fspath(video), out, opts, state_ckpt)  # opens the clip, builds the models
    _remove(old_run)  # --force: the new run is viable, the old one may go
    return run.run()


def _check_same_clip(video, trained_on: str, digest: str | None = None) -> None:
    """A resumed run goes on with its own clip: refuse another one. The same bytes at
    another path pass. With the clip's recorded SHA-256 (runs since it was recorded),
    the bytes decide: a file edited in place or another file at a new path is refused;
    older runs only compare with the original while it exists."""
    video = os.fspath(video)
    if digest is not None:
        if os.path.isfile(video) and file_digest(video) != digest:
            raise ValueError(f"{video}: not the clip this run trains on (its content differs "
                             f"from {trained_on} as it was when the run started); a resumed "
                             f"run continues on its own clip: give that file, or start a new "
                             f"run")
        return
    if not os.path.isabs(trained_on):
        return  # stored relative to a working directory unknown here: nothing to compare
    if os.path.abspath(video) == trained_on:
        return
    if (os.path.isfile(video) and os.path.isfile(trained_on)
            and file_digest(video) != file_digest(trained_on)):
        raise ValueError(f"{video}: not the clip this run trains on ({trained_on}); a "
                         f"resumed run continues on its own clip: omit VIDEO, or start a "
                         f"new run")


class _Run:
    def __init__(self, video: str, out: str, opts: TrainOptions, resume_from: dict | None):
        self.video, self.out, self.opts = video, out, opts
        self.device = torch.device(opts.device)
        tune_for_fixed_shapes(self.device)
        self.dist = Context(self.device)
        torch.manual_seed(opts.seed)
        random.seed(opts.seed)
        clip_options = ClipOptions(size=opts.size, fps=opts.fps, crop=opts.crop,
                                   feature_kind=opts.features, bands=opts.bands,
                                   chunk=opts.chunk)
        self.clip = prepare_clip(video, out, clip_options, opts.frames, opts.progress)
        self.train_clip, self.val_clip = self.clip.train(), self.clip.validation()
        self.config = {
            "generator": model_config(opts, self.clip.features.shape[1]),
            "data": {**asdict(clip_options), "seq_len": opts.frames,
                     # absolute: evaluate and resume may run from another directory
                     "video": os.path.abspath(video), "digest": self.clip.digest,
                     "frames": self.clip.num_frames, "split": self.clip.split},
            "train": asdict(opts),
        }
        try:
            self.g, self.d_v, self.d_i = build_models(self.config, opts.backend, self.device)
        except ValueError as exc:  # the models name the window "seq_len"; the user set --frames
            if str(exc).startswith("seq_len:"):
                raise ValueError("--frames:" + str(exc)[len("seq_len:"):]) from None
            raise
        betas = (0.3, 0.999)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=opts.lr_g, betas=betas)
        self.opt_dv = torch.optim.Adam(self.d_v.parameters(), lr=opts.lr_d, betas=betas)
        self.opt_di = torch.optim.Adam(self.d_i.parameters(), lr=opts.lr_d, betas=betas)
        windows = self.train_clip.num_frames - opts.frames + 1  # distinct start frames
        if opts.batch > windows:
            raise ValueError(f"--batch {opts.batch}: the clip's training part "
                             f"({self.train_clip.num_frames} frames) holds only {windows} "
                             f"distinct windows of {opts.frames} frames; use --batch "
                             f"{windows} or less, or a longer clip")
        # Each rank walks its own streams; the weights start equal (same seed above).
        self.sampler = SequenceSampler(self.train_clip.num_frames, opts.frames, opts.batch,
                                       seed=opts.seed + 1000 * self.dist.rank)
        if self.dist.rank:
            torch.manual_seed(opts.seed + 1000 * self.dist.rank)
        self.state = None
        self.step = 0
        self.log_path = os.path.join(out, "log.jsonl")
        if resume_from is not None:
            self._restore(resume_from)

    # -- checkpointing --
    def _payload(self) -> dict:
        return {"format": ckpt.FORMAT, "step": self.step, "config": self.config,
                "generator": self.g.state_dict(),
                "video_discriminator": self.d_v.state_dict(),
                "image_discriminator": self.d_i.state_dict(),
                "optimizer_g": self.opt_g.state_dict(),
                "optimizer_dv": self.opt_dv.state_dict(),
                "optimizer_di": self.opt_di.state_dict(),
                "sampler": self.sampler.state_dict(),
                "states": to_lists(self.state),
                "rng": {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                        "python_version": random.getstate()[0],
                        "python_gauss": random.getstate()[2]}}

    def save(self) -> None:
        if not self.dist.main:
            return
        ckpt.save_atomic(self._payload(), os.path.join(self.out, ckpt.CHECKPOINT_NAME))

    def _restore(self, saved: dict) -> None:
        try:
            self.g.load_state_dict(saved["generator"])
            self.d_v.load_state_dict(saved["video_discriminator"])
            self.d_i.load_state_dict(saved["image_discriminator"])
            self.opt_g.load_state_dict(saved["optimizer_g"])
            self.opt_dv.load_state_dict(saved["optimizer_dv"])
            self.opt_di.load_state_dict(saved["optimizer_di"])
            self.sampler.load_state_dict(saved["sampler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ckpt.CheckpointError(f"{self.out}: the checkpoint does not match this run "
                                       f"({ckpt.first_line(exc)})") from None
        state = to_tuples(saved["states"])
        self.state = None if state is None else tuple(
            None if s is None else tuple(t.to(self.device) for t in s) for s in state)
        self.step = int(saved["step"])
        rng = saved["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate((rng["python_version"], tuple(rng["python"]), rng["python_gauss"]))

    # -- one iteration --
    def _autocast(self):
        enabled = self.opts.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def iteration(self) -> dict:
        opts, T = self.opts, self.opts.frames
        starts, reset = self.sampler.next()
        real, feats = batch_windows(self.train_clip, starts, T)
        real, feats = real.to(self.device), feats.to(self.device)
        self.state = reset_rows(self.state, reset.to(self.device))
        with self._autocast():
            fake, new_state = self.g(feats, state=self.state)
        fake = fake.float()
        perm = real[:, torch.randperm(T)]
        k = int(torch.randint(T, ()))

        self.opt_dv.zero_grad(set_to_none=True)
        with self._autocast():
            loss_dv = (discriminator_loss(opts.loss, self.d_v, real, fake.detach())
                       + discriminator_loss(opts.loss, self.d_v, real, perm))
        loss_dv.backward()
        self.dist.average_gradients(self.d_v)
        zero_nonfinite_grads(self.d_v)
        self.opt_dv.step()

        self.opt_di.zero_grad(set_to_none=True)
        with self._autocast():
            loss_di = discriminator_loss(opts.loss, self.d_i, real[:, k], fake[:, k].detach())
        loss_di.backward()
        self.dist.average_gradients(self.d_i)
        zero_nonfinite_grads(self.d_i)
        self.opt_di.step()

        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            adv = (generator_loss(opts.loss, self.d_v(fake))
                   + generator_loss(opts.loss, self.d_i(fake[:, k])))
        l1 = (real - fake).abs().mean()
        loss_g = adv + opts.l1 * l1
        loss_g.backward()
        self.dist.average_gradients(self.g)
        zero_nonfinite_grads(self.g)
        self.opt_g.step()
        self.state = tuple(None if s is None else tuple(t.detach() for t in s)
                           for s in new_state)
        self.step += 1
        return {"loss_g": loss_g.item(), "loss_dv": loss_dv.item(), "loss_di": loss_di.item(),
                "l1": l1.item()}

    # -- validation --
    def validate(self) -> dict:
        from .evaluation import reanimate_holdout, write_sample
        from .metrics import frame_metrics, to_unit

        # Warm on the last few windows only: validation runs every few hundred steps.
        fake = reanimate_holdout(self.g, self.clip, self.opts.frames, self.device,
                                 warmup=4 * self.opts.frames)
        real = self.val_clip.frames.permute(0, 3, 1, 2).float() / 255
        metrics = frame_metrics(to_unit(fake), real)
        if self.opts.samples:
            write_sample(os.path.join(self.out, "samples", f"step_{self.step:07d}.mp4"),
                         fake, self.clip)
        return metrics

    def _log(self, record: dict) -> None:
        if not self.dist.main:
            return
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def run(self) -> dict:
        from tqdm import tqdm

        opts = self.opts
        deadline = None if opts.minutes is None else time.monotonic() + 60 * opts.minutes
        validate_every = opts.validate_every or opts.checkpoint_every
        losses, metrics, stopped = {}, None, None
        bar = tqdm(total=opts.steps, initial=self.step, desc="training", unit="it",
                   disable=not opts.progress or not self.dist.main)
        start_time, start_step = time.monotonic(), self.step
        with _StopFlag() as stop:
            while self.step < opts.steps:
                losses = self.iteration()
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
                if self.step % 10 == 0 or self.step == opts.steps:
                    rate = (self.step - start_step) / max(time.monotonic() - start_time, 1e-9)
                    self._log({"step": self.step, **losses, "it_per_s": rate})
                if self.dist.main and (self.step % validate_every == 0
                                       or self.step == opts.steps):
                    self.g.eval()
                    metrics = self.validate()
                    self.g.train()
                    self._log({"step": self.step, "validation": metrics})
                if self.step % opts.checkpoint_every == 0:
                    self.save()
                if self.dist.any(stop.signal is not None):
                    stopped = signal.Signals(stop.signal or signal.SIGTERM).name
                    break
                if self.step < opts.steps and self.dist.any(
                        deadline is not None and time.monotonic() >= deadline):
                    stopped = "time budget"
                    break
            if self.step > start_step:  # a resume with no step left: the checkpoint stands
                self.save()
        bar.close()
        in_sync = self.dist.same_everywhere(self.g)
        summary = {"step": self.step, "steps": opts.steps, "losses": losses,
                   "validation": metrics, "stopped": stopped, "run_dir": self.out,
                   "ranks": self.dist.world, "ranks_in_sync": in_sync}
        self._log({"step": self.step, "end": stopped or "done", "ranks": self.dist.world,
                   "ranks_in_sync": in_sync})
        self.dist.close()
        return summary
