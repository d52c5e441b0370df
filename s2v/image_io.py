"""Dependency-free PNG writing for frames and contact sheets."""
from __future__ import annotations

import struct
import zlib

import numpy as np


def _chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def write_png(path, image: np.ndarray) -> None:
    """Write ``image [H, W, 3]`` uint8 RGB as an 8-bit PNG."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image: expected uint8 [H, W, 3], got {image.dtype} "
                         f"{tuple(image.shape)}")
    H, W, _ = image.shape
    rows = np.concatenate([np.zeros((H, 1), np.uint8), image.reshape(H, W * 3)], axis=1)
    header = struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
                + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _chunk(b"IEND", b""))


def to_uint8(frames) -> np.ndarray:
    """Frames in [-1, 1] (``[..., 3, H, W]`` tensor or array) -> uint8 ``[..., H, W, 3]``."""
    a = np.asarray(frames.detach().float().cpu() if hasattr(frames, "detach") else frames)
    a = np.clip((a + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return np.moveaxis(a, -3, -1)


def contact_sheet(frames: np.ndarray, columns: int = 8, gap: int = 2) -> np.ndarray:
    """Tile uint8 frames ``[N, H, W, 3]`` into one image, ``columns`` per row."""
    N, H, W, _ = frames.shape
    columns = max(1, min(columns, N))
    rows = -(-N // columns)
    sheet = np.full((rows * (H + gap) + gap, columns * (W + gap) + gap, 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, columns)
        y, x = gap + r * (H + gap), gap + c * (W + gap)
        sheet[y:y + H, x:x + W] = frame
    return sheet
