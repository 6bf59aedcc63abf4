"""Training and reference data for the learned models.

``digits`` is scikit-learn's copy of the UCI optical-recognition digits (1797 grey 8 x 8
images with values 0..16 and labels 0..9).  It ships inside scikit-learn, so nothing is
fetched.  Images are rescaled to [-1, 1] (x / 8 - 1), the range diffusion models train on.

Other data: a folder of .png/.jpg images or an ``.npy`` / ``.npz`` array (N, C, H, W) or
(N, H, W, C), uint8 in [0, 255], float in [0, 1] or float in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["DIGITS", "PATCHES", "DATASETS", "load_digits", "load_patches", "patch_sources", "read_image", "read_array",
           "load_images", "load_dataset", "to_unit", "to_uint8"]

DIGITS = "digits"
PATCHES = "patches"
#: named datasets that ship inside installed packages (nothing is downloaded)
DATASETS = (DIGITS, PATCHES)

#: colour photographs stored inside the scikit-image wheel (skimage/data/*), by file name
#: (natural scenes only: no synthetic charts, no near-uniform medical images)
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                  "ihc.png", "hubble_deep_field.jpg")
#: crop sizes in source pixels, each downsampled (area average) to the patch resolution
PATCH_SCALES = (32, 48, 64, 96, 128)


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


def patch_sources() -> list[tuple[str, np.ndarray]]:
    """The colour photographs the ``patches`` data is cut from, as (name, uint8 H x W x 3) pairs:
    scikit-learn's two sample images (``load_sample_images``) and the colour photographs of
    :data:`SKIMAGE_PHOTOS` that are present in the installed scikit-image wheel (read from its
    ``data`` folder, so no image is fetched)."""
    sources = []
    try:
        from sklearn.datasets import load_sample_images
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ValueError("the patches data needs scikit-learn: pip install scikit-learn") from err
    bunch = load_sample_images()
    sources += [(Path(f).name, img) for f, img in zip(bunch.filenames, bunch.images)]
    try:
        import importlib.util

        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):  # pragma: no cover
        spec = None
    if spec is not None and spec.origin is not None:
        from PIL import Image

        folder = Path(spec.origin).parent / "data"
        for name in SKIMAGE_PHOTOS:
            f = folder / name
            if f.is_file():
                a = np.asarray(Image.open(f).convert("RGB"))
                if min(a.shape[:2]) >= max(PATCH_SCALES):
                    sources.append((name, a))
    return sources


def load_patches(num: int = 50_000, resolution: int = 32, seed: int = 0) -> Tensor:
    """``num`` random colour patches, float32 (num, 3, resolution, resolution) in [-1, 1].

    The patches are drawn from one generator seeded by ``seed``: for each, a source photograph
    (uniformly, so every photograph contributes equally), a crop size from :data:`PATCH_SCALES` (times
    resolution / 32), a position, and a horizontal flip; the crop is area-averaged down to
    ``resolution``.  Several scales give the patches a natural, roughly 1/f^2, power spectrum
    across the whole frequency range.
    """
    import torch.nn.functional as F

    sources = patch_sources()
    images = [torch.from_numpy(np.array(a)).permute(2, 0, 1) for _, a in sources]
    rng = np.random.default_rng(seed)
    which = rng.integers(len(images), size=num)
    scale_ix = rng.integers(len(PATCH_SCALES), size=num)
    u = rng.random((num, 2))
    flips = rng.random(num) < 0.5
    out = torch.empty(num, 3, resolution, resolution)
    for i in range(num):
        img = images[which[i]]
        size = PATCH_SCALES[scale_ix[i]] * resolution // 32
        top = int(u[i, 0] * (img.shape[1] - size + 1))
        left = int(u[i, 1] * (img.shape[2] - size + 1))
        crop = img[:, top:top + size, left:left + size].float()
        if flips[i]:
            crop = crop.flip(-1)
        if size != resolution:
            crop = F.interpolate(crop[None], size=(resolution, resolution), mode="area")[0]
        out[i] = crop
    return out / 127.5 - 1.0


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_image(path: str | Path) -> np.ndarray:
    """One image file -> float32 (H, W, C) in [0, 1], C = 1 (grey) or 3 (colour).

    8-bit images are divided by 255, 16-bit ones by 65535; palettes are expanded and an alpha
    channel is dropped.  An unreadable or corrupt file raises ``ValueError`` naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode.startswith("I;16") or im.mode == "I":
                a = np.asarray(im, dtype=np.float32) / 65535.0
            elif im.mode in ("1", "L", "LA", "I;8"):
                a = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            else:
                a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path}: cannot read the image ({type(err).__name__}: {err})") from None
    return a[..., None] if a.ndim == 2 else a


def read_array(path: str | Path, keys: Sequence[str] = ("images", "samples")) -> np.ndarray:
    """The array of an .npy file, or of an .npz archive (the first of ``keys`` it holds, else its first
    array); no pickles.  An unreadable file or an empty archive raises ``ValueError`` naming it."""
    import zipfile

    path = Path(path)
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            if not z.files:
                raise ValueError("the archive holds no array")
            return z[next((k for k in keys if k in z.files), z.files[0])]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: cannot read the array ({type(err).__name__}: {err})") from None


def load_images(path: str | Path, num: int | None = None) -> Tensor:
    """A folder of images or an .npy/.npz array -> float32 (N, C, H, W) in [-1, 1].

    Image files are read by :func:`read_image` (8/16-bit scaled to [0, 1]).  Arrays may be
    (N, C, H, W) or (N, H, W, C); their range is read from the values: uint8 or floats above 1.5
    are 0..255, non-negative floats are [0, 1], anything else is taken as [-1, 1] already.
    Unreadable files raise ``ValueError`` naming the file."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder (give a folder of images, an .npy/.npz array, "
                         f"or a named dataset: {', '.join(DATASETS)})")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if num is not None:
            files = files[:num]
        if not files:
            raise ValueError(f"{path}: the folder holds no .png/.jpg images")
        arrays = [read_image(f) for f in files]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"{path}: images have different shapes {sorted(shapes)}")
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous() * 2 - 1
    if path.suffix not in (".npz", ".npy"):
        raise ValueError(f"{path}: expected a folder of images, an .npy or an .npz file")
    arr = read_array(path)
    if arr.ndim != 4 or len(arr) == 0:
        raise ValueError(f"{path}: expected a non-empty (N, C, H, W) or (N, H, W, C) array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{path}: expected a numeric array, got dtype {arr.dtype}")
    if arr.shape[1] not in (1, 3) and arr.shape[-1] in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    if num is not None:
        arr = arr[:num]
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
    """``"digits"``, ``"patches"`` or a path (see :func:`load_images`) -> float32 (N, C, H, W) in [-1, 1]."""
    if str(data) == DIGITS:
        x = load_digits()
        return x if num is None else x[:num]
    if str(data) == PATCHES:
        return load_patches() if num is None else load_patches(num)
    return load_images(data, num)


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] (clamped)."""
    return ((x + 1) / 2).clamp(0, 1)


def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] -> uint8 [0, 255], rounded as an image file stores it."""
    return (to_unit(x.float()) * 255).round().to(torch.uint8)
