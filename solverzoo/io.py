"""Writing result files: every file solverzoo writes goes through :func:`atomic_write`.

A file is written to a temporary name in its own folder, flushed to disk and renamed onto
its final name (``os.replace``, atomic on POSIX and Windows).  A reader never sees a half-written
file, and a crash or a failed command never leaves a truncated results file, checkpoint or
grid behind: the previous version (if any) stays as it was.

    atomic_write_json(out / "results.json", results)
    save_npz(out / "samples.npz", samples=x, meta=json.dumps(meta))
    save_png(out / "grid.png", image_grid(list(x), rows, cols))
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "save_npz", "save_png",
           "image_grid", "save_image_grid"]

PathLike = str | os.PathLike


def atomic_write(path: PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, flush it to disk and rename it onto ``path``.

    The temporary name keeps the final suffix (``.npz``, ``.png``: writers that pick the format
    from it, or append it when it is missing, write the right file).  If ``write`` raises, the
    temporary file is removed and ``path`` is left untouched; an ``OSError`` (a full or read-only
    filesystem) names ``path``.  Returns ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if err.filename is None or str(err.filename) == str(tmp):  # name the file the caller asked for
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, payload: Any, *, indent: int | None = 1, allow_nan: bool = True,
                      default: Callable[[Any], Any] | None = None) -> Path:
    """``json.dumps(payload)`` plus a final newline, written atomically.  With ``allow_nan=False`` a
    NaN or infinity raises ``ValueError`` before anything is written (strict JSON)."""
    text = json.dumps(payload, indent=indent, allow_nan=allow_nan, default=default)
    return atomic_write_text(path, text + "\n")


def save_npz(path: PathLike, **arrays: Any) -> Path:
    """``np.savez(path, **arrays)`` atomically (tensors are converted with ``.numpy()``; ``path`` must
    end in ``.npz``, as ``np.load`` users expect)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: an .npz archive needs the .npz suffix")
    converted = {k: v.detach().cpu().numpy() if hasattr(v, "detach") else v for k, v in arrays.items()}
    return atomic_write(path, lambda tmp: np.savez(tmp, **converted))


def save_png(path: PathLike, image: np.ndarray) -> Path:
    """Write an (H, W), (H, W, 1) or (H, W, 3) image with values in [0, 1] as an 8-bit PNG, atomically
    (grey for one channel)."""
    from PIL import Image

    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise ValueError(f"save_png: expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {a.shape}")
    pixels = (np.nan_to_num(a.clip(0, 1)) * 255).round().astype(np.uint8)
    return atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))


def _upscale_factor(size: int, minimum: int) -> int:
    return max(1, math.ceil(minimum / max(size, 1)))


def image_grid(images: Sequence[np.ndarray | None], rows: int, cols: int, minimum: int = 64,
               gap: int = 2) -> np.ndarray:
    """An (H', W', C) float32 array in [0, 1]: ``images`` (up to rows * cols arrays (C, H, W) in [-1, 1],
    row by row; None = a blank cell), each nearest-upscaled to at least ``minimum`` pixels, on a white
    background with ``gap``-pixel gaps."""
    first = next((im for im in images if im is not None), None)
    if first is None:
        raise ValueError("image_grid: no image to place")
    if len(images) > rows * cols:
        raise ValueError(f"image_grid: {len(images)} images do not fit {rows} x {cols} cells")
    c, h, w = np.shape(first)
    f = _upscale_factor(min(h, w), minimum)
    H, W = h * f, w * f
    canvas = np.ones((rows * (H + gap) + gap, cols * (W + gap) + gap, c), dtype=np.float32)
    for k, im in enumerate(images):
        if im is None:
            continue
        r, q = divmod(k, cols)
        a = ((np.asarray(im, dtype=np.float32).clip(-1, 1) + 1) / 2).transpose(1, 2, 0)
        top, left = gap + r * (H + gap), gap + q * (W + gap)
        canvas[top:top + H, left:left + W] = a.repeat(f, 0).repeat(f, 1)
    return canvas


def save_image_grid(path: PathLike, samples: Any, max_images: int = 64) -> Path:
    """A square grid of the first ``max_images`` samples ((N, C, H, W) in [-1, 1], array or tensor) as a
    PNG (``solverzoo sample``'s grid.png)."""
    x = np.asarray(samples[:max_images].detach().cpu().float() if hasattr(samples, "detach") else samples[:max_images])
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"save_image_grid: expected (N, C, H, W) samples, got shape {x.shape}")
    cols = math.ceil(math.sqrt(len(x)))
    rows = math.ceil(len(x) / cols)
    return save_png(path, image_grid(list(x), rows, cols))
