"""Checkpoints: one file per run, written atomically, loadable with ``weights_only``.

``RUN_DIR/checkpoint.pt`` holds only tensors, numbers, strings, lists, dicts and
None: ``step``, ``config`` (architecture + preprocessing + training options, so
``generate`` needs no flags), ``generator``, ``video_discriminator``,
``image_discriminator`` and the three optimisers (state dicts), ``sampler``
(stream positions and RNG), ``states`` (recurrent states), ``rng`` (torch and
Python RNG states) and ``format`` (an integer version).
"""
from __future__ import annotations

import errno
import os
import uuid
import zipfile
from typing import BinaryIO, Callable

import torch

FORMAT = 1
CHECKPOINT_NAME = "checkpoint.pt"
REQUIRED = ("format", "step", "config", "generator")


# What generate and evaluate read from config["data"] besides the generator's keywords.
DATA_KEYS = ("video", "size", "fps", "seq_len", "crop", "feature_kind", "bands", "chunk")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or from an incompatible version."""


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first non-empty line of an exception's message, else its type's name (some
    exceptions, e.g. EOFError(), have an empty message)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


def save_atomic(obj: dict, path: str, what: str = "checkpoint") -> None:
    """``torch.save(obj)`` to ``path`` through :func:`write_atomic`."""
    write_atomic(path, lambda f: torch.save(obj, f), what)


def write_atomic(path: str, write: Callable[[BinaryIO], object], what: str) -> None:
    """Let ``write`` fill a temporary file in the same folder, fsync, then rename it
    over ``path``: a crash or a full disk never leaves a truncated file in its place
    (errors name ``what`` was being written). The file gets the umask's permissions."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".s2v-{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        except (RuntimeError, OSError) as exc:
            # torch's zip writer reports a failed write (a full disk, a quota) as a
            # RuntimeError about stream positions, the final flush as a bare OSError;
            # say which file and what happened instead.
            raise _write_error(path, folder, exc, what) from None
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_error(path: str, folder: str, exc: Exception, what: str) -> OSError:
    try:
        st = os.statvfs(folder)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    if free is not None and free < 64 * 2 ** 20:
        return OSError(errno.ENOSPC, f"{path}: could not write the {what}: no space left "
                                     f"on the device ({free / 2 ** 20:.1f} MB free); any "
                                     f"earlier {what} is untouched")
    code = getattr(exc, "errno", None) or errno.EIO
    return OSError(code, f"{path}: could not write the {what} "
                              f"({first_line(exc, 120)}); any earlier {what} "
                              f"is untouched")


def resolve(path) -> str:
    """A checkpoint file, or the run directory holding ``checkpoint.pt``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{path}: permission denied (the checkpoint is not readable)")
    return path


def load(path) -> dict:
    path = resolve(path)
    if not zipfile.is_zipfile(path):  # empty, truncated, or some other kind of file
        size = os.path.getsize(path)
        raise CheckpointError(f"{path}: not an s2v checkpoint ("
                              + ("an empty file" if size == 0 else
                                 f"{size} bytes that are not a torch.save zip archive; a "
                                 f"damaged or unfinished copy, or another kind of file") + ")")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        raise CheckpointError(f"{path}: not a readable s2v checkpoint "
                              f"({type(exc).__name__}: {first_line(exc, 120)})") from None
    if not isinstance(obj, dict) or any(k not in obj for k in REQUIRED):
        raise CheckpointError(f"{path}: not an s2v checkpoint (missing "
                              f"{[k for k in REQUIRED if not isinstance(obj, dict) or k not in obj]})")
    if obj["format"] != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {obj['format']} is not supported "
                              f"by this version of s2v (format {FORMAT})")
    config = obj["config"]
    if (not isinstance(config, dict) or not isinstance(config.get("generator"), dict)
            or not isinstance(config.get("data"), dict)):
        raise CheckpointError(f"{path}: not an s2v checkpoint (its config lacks the "
                              f"'generator' and 'data' sections)")
    missing = [k for k in DATA_KEYS if k not in config["data"]]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint (config['data'] lacks "
                              f"{', '.join(missing)})")
    return obj
