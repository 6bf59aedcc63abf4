"""Training and reference data for the learned models.

``digits`` is scikit-learn's copy of the UCI optical-recognition digits (1797 grey 8 x 8
images with values 0..16 and labels 0..9).  It ships inside scikit-learn, so nothing is
fetched.  Images are rescaled to [-1, 1] (x / 8 - 1), the range diffusion models train on.

Other data: a folder of .png/.jpg images or an ``.npy`` / ``.npz`` array (N, C, H, W) or
(N, H, W, C), uint8 in [0, 255], float in [0, 1] or float in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["DIGITS", "load_digits", "load_images", "load_dataset", "to_unit", "to_uint8"]

DIGITS = "digits"


def load_digits(with_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """The 1797 scikit-learn digits as a float32 (1797, 1, 8, 8) tensor in [-1, 1]
    (and the int64 labels), in scikit-learn's order."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ValueError("the digits data ships with scikit-learn: pip install scikit-learn "
                         "(or pip install 'solverzoo[learned]')") from err
    data = _load()
    images = torch.from_numpy(data.images.astype(np.float32)).unsqueeze(1) / 8.0 - 1.0
    if with_labels:
        return images, torch.from_numpy(data.target.astype(np.int64))
    return images


def load_images(path: str | Path, num: int | None = None) -> Tensor:
    """A folder of images or an .npy/.npz array -> float32 (N, C, H, W) in [-1, 1]."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder (give a folder of images, an .npy/.npz array, or 'digits')")
    if path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if num is not None:
            files = files[:num]
        if not files:
            raise ValueError(f"{path}: the folder holds no .png/.jpg images")
        arrays = []
        for f in files:
            a = np.asarray(Image.open(f))
            arrays.append(a[..., None] if a.ndim == 2 else a[..., :3])
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"{path}: images have different shapes {sorted(shapes)}")
        arr = np.stack(arrays).transpose(0, 3, 1, 2)
    elif path.suffix in (".npz", ".npy"):
        if path.suffix == ".npz":
            with np.load(path) as z:
                key = "images" if "images" in z.files else ("samples" if "samples" in z.files else z.files[0])
                arr = z[key]
        else:
            arr = np.load(path)
        if arr.ndim != 4:
            raise ValueError(f"{path}: expected an (N, C, H, W) or (N, H, W, C) array, got shape {arr.shape}")
        if arr.shape[1] not in (1, 3) and arr.shape[-1] in (1, 3):
            arr = arr.transpose(0, 3, 1, 2)
        if num is not None:
            arr = arr[:num]
    else:
        raise ValueError(f"{path}: expected a folder of images, an .npy or an .npz file")
    x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.dtype == torch.uint8:
        return x.float() / 127.5 - 1.0
    x = x.float()
    if x.min() >= -1e-6 and x.max() > 1.5:  # 0..255 floats
        return x / 127.5 - 1.0
    if x.min() >= -1e-6:  # [0, 1]
        return 2 * x - 1.0
    return x  # already [-1, 1]


def load_dataset(data: str | Path, num: int | None = None) -> Tensor:
    """``"digits"`` or a path (see :func:`load_images`) -> float32 (N, C, H, W) in [-1, 1]."""
    if str(data) == DIGITS:
        x = load_digits()
        return x if num is None else x[:num]
    return load_images(data, num)


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] (clamped)."""
    return ((x + 1) / 2).clamp(0, 1)


def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] -> uint8 [0, 255], rounded as an image file stores it."""
    return (to_unit(x.float()) * 255).round().to(torch.uint8)
