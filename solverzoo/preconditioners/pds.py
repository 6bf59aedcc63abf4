"""PDS filters (Ma, Zhang, Zhu, Feng 2022, "Accelerating Score-based Generative Models with Preconditioned
Diffusion Sampling", ECCV; code fudan-zvg/PDS, MIT).  Statistics of about 200 training images in [0, 1]
(``mask_gen_demo.py``) and the filters formed from them (``sampling.py``, ``get_sampling_fn``)::

    freq  = log(1 + mean_i |FFT2(x_i)|^2)     space = mean_i x_i^2        (C, H, W), unshifted FFT
    filter = alpha / (stat / max(stat) + alpha - 1)                        alpha = 5; inf: identity

The frequency filter is ~1 where the data has power and up to alpha / (alpha - 1) elsewhere; the space
filter is smaller where the mean square intensity is large.  The published masks are the statistics
(``.npy``, ``(C, H, W)``); :func:`load_filters` forms the filters at load time, as the official code.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..io import save_npz
from .base import Composed, FrequencyFilter, Identity, Preconditioner, SpaceFilter, _iter_batches, image_shape_of

__all__ = [
    "PDSStatistics",
    "pds_statistics",
    "pds_filter",
    "pds_alpha_range",
    "pds_preconditioner",
    "FilterFile",
    "save_filters",
    "load_filters",
    "load_pds_preconditioner",
]

FORMAT = "solverzoo-filters/1"


class PDSStatistics(NamedTuple):
    freq: Tensor  # log(1 + mean |FFT2 x|^2), (C, H, W)
    space: Tensor  # mean x^2, (C, H, W)


def pds_statistics(
    images,
    *,
    dtype: torch.dtype = torch.float64,
    check_range: bool = True,
) -> PDSStatistics:
    """PDS's data statistics from images in [0, 1].

    ``images``: a tensor/array ``(N, C, H, W)`` or an iterable of batches ``(B, C, H, W)``
    (or of ``(images, labels)`` pairs, as a DataLoader yields); statistics are
    accumulated in ``dtype`` (float64 by default) batch by batch.  Returns
    ``PDSStatistics(freq, space)``, both ``(C, H, W)`` on the device of the images.
    ``check_range`` raises ``ValueError`` on values outside [0, 1] (data in [-1, 1]
    must be mapped with ``(x + 1) / 2`` first: the log(1 + .) makes the scale matter).
    """
    power = None
    square = None
    count = 0
    for batch in _iter_batches(images):
        if batch.ndim != 4:
            raise ValueError(f"image batches must have shape (B, C, H, W), got {tuple(batch.shape)}")
        if batch.shape[0] == 0:
            continue
        x = batch.to(dtype)
        if check_range:
            lo, hi = float(x.min()), float(x.max())
            if lo < -1e-6 or hi > 1 + 1e-6:
                raise ValueError(
                    f"pds_statistics expects images in [0, 1], got values in [{lo:.3g}, {hi:.3g}]"
                    " (map [-1, 1] data with (x + 1) / 2, or pass check_range=False)"
                )
        if power is not None and tuple(x.shape[1:]) != tuple(power.shape):
            raise ValueError(f"image batches have different shapes: {tuple(power.shape)} and {tuple(x.shape[1:])}")
        p = torch.fft.fft2(x).abs().square().sum(0)
        s = x.square().sum(0)
        power = p if power is None else power + p.to(power.device)
        square = s if square is None else square + s.to(square.device)
        count += x.shape[0]
    if count == 0:
        raise ValueError("pds_statistics got no images")
    return PDSStatistics(torch.log1p(power / count), square / count)


def pds_alpha_range(stat) -> tuple[float, float]:
    """``(lower, inf)``: the open interval of alpha that gives a positive, finite filter.

    The filter ``alpha / (m_hat + alpha - 1)`` is positive iff ``alpha > 0`` and
    ``alpha > 1 - min(m_hat)``.  PDS statistics are >= 0, so ``m_hat`` lies in [0, 1]:
    every ``alpha > 1`` is valid; ``alpha`` in ``(0, 1]`` only if
    ``min(m_hat) > 1 - alpha`` (``alpha = 1`` gives ``1 / m_hat``, which needs a
    statistic with no zero).  ``alpha <= 0`` is rejected even where the formula stays
    positive (it would invert the filter's ordering).
    """
    m_hat = _normalised(stat)
    return max(0.0, 1.0 - float(m_hat.min())), math.inf


def _normalised(stat) -> Tensor:
    t = torch.as_tensor(stat)
    if t.is_complex():
        raise TypeError("statistics must be real")
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if not bool(torch.isfinite(t).all()):
        raise ValueError("the statistic has non-finite values")
    top = float(t.max())
    if not top > 0:
        raise ValueError(f"the statistic must have a positive maximum, got max {top}")
    return t / top


def pds_filter(stat, alpha: float = 5.0) -> Tensor:
    """``alpha / (stat / max(stat) + alpha - 1)`` (one global max over all entries).

    ``alpha = inf`` returns ones.  ``alpha <= 0``, NaN, or an alpha for which the filter
    would be non-positive or infinite (``alpha <= 1 - min(m_hat)``, see
    :func:`pds_alpha_range`) raise ``ValueError``.  Same shape and dtype as ``stat``.
    """
    alpha = float(alpha)
    if math.isnan(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be > 0 (or inf for the identity), got {alpha}")
    m_hat = _normalised(stat)
    if math.isinf(alpha):
        return torch.ones_like(m_hat)
    den = m_hat + (alpha - 1.0)
    low = float(den.min())
    if not low > 0:
        raise ValueError(
            f"alpha={alpha} makes the filter non-positive or infinite: need alpha > 1 - min(stat/max) = "
            f"{1.0 - float(m_hat.min()):.6g}"
        )
    return alpha / den


def pds_preconditioner(
    freq_stat=None,
    space_stat=None,
    alpha: float = 5.0,
    *,
    space_alpha: float | None = None,
    image_shape: Sequence[int] | None = None,
) -> Preconditioner:
    """The PDS operator ``M = F^-1 diag(f) F diag(s)`` from data statistics.

    ``f = pds_filter(freq_stat, alpha)``, ``s = pds_filter(space_stat, space_alpha or
    alpha)``.  A missing statistic (or an infinite alpha) drops that filter:
    ``Identity`` / ``FrequencyFilter`` / ``SpaceFilter`` / ``Composed(space, frequency)``.
    ``image_shape`` (optional) is checked against the filters.
    """
    if space_alpha is None:
        space_alpha = alpha
    freq = space = None
    if freq_stat is not None and not math.isinf(float(alpha)):
        freq = FrequencyFilter(pds_filter(freq_stat, alpha), meta={"method": "pds", "alpha": float(alpha)})
    elif freq_stat is not None:
        pds_filter(freq_stat, alpha)  # validates the statistic
    if space_stat is not None and not math.isinf(float(space_alpha)):
        space = SpaceFilter(pds_filter(space_stat, space_alpha), meta={"method": "pds", "alpha": float(space_alpha)})
    elif space_stat is not None:
        pds_filter(space_stat, space_alpha)
    if freq is not None and space is not None:
        out: Preconditioner = Composed(space, freq)
    elif freq is not None:
        out = freq
    elif space is not None:
        out = space
    else:
        out = Identity()
    if image_shape is not None:
        out.check_shape(image_shape)
    return out


# --------------------------------------------------------------------------- files


@dataclass
class FilterFile:
    """What :func:`load_filters` read: ``(C, H, W)`` float tensors or None.

    ``kind`` is ``"statistic"`` (PDS statistics; form filters with :func:`pds_filter`)
    or ``"filter"`` (ready-to-use filter values).
    """

    freq: Tensor | None
    space: Tensor | None
    kind: str
    path: str
    metadata: dict = field(default_factory=dict)

    def preconditioner(self, alpha: float = 5.0, basis: str | None = None) -> Preconditioner:
        """Statistics -> :func:`pds_preconditioner` with ``alpha``; filters -> used as they are."""
        if self.kind == "statistic":
            return pds_preconditioner(self.freq, self.space, alpha)
        basis = basis or self.metadata.get("basis", "dft")
        f = FrequencyFilter(self.freq, basis=basis, meta=_scalar_meta(self.metadata)) if self.freq is not None else None
        s = SpaceFilter(self.space, meta=_scalar_meta(self.metadata)) if self.space is not None else None
        if f is not None and s is not None:
            return Composed(s, f)
        return f or s or Identity()


def _scalar_meta(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))}


def _to_numpy(t) -> np.ndarray:
    if isinstance(t, Tensor):
        return t.detach().to("cpu").numpy()
    return np.asarray(t)


def save_filters(path: str | os.PathLike, *, freq=None, space=None, kind: str = "filter", **metadata) -> str:
    """Write an ``.npz`` with keys ``freq`` / ``space`` (``(C, H, W)``), ``kind``, ``format``
    and ``metadata`` (JSON of the keyword arguments), atomically.  Returns the path written
    (``.npz`` is appended if missing)."""
    if kind not in ("filter", "statistic"):
        raise ValueError(f"kind must be 'filter' or 'statistic', got {kind!r}")
    if freq is None and space is None:
        raise ValueError("save_filters needs freq and/or space")
    arrays = {}
    for name, value in (("freq", freq), ("space", space)):
        if value is not None:
            a = _to_numpy(value)
            if a.ndim == 2:
                a = a[None]
            if a.ndim != 3:
                raise ValueError(f"{name} must have shape (C, H, W), got {a.shape}")
            arrays[name] = a
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    save_npz(
        path,
        kind=np.array(kind),
        format=np.array(FORMAT),
        metadata=np.array(json.dumps(metadata, default=str)),
        **arrays,
    )
    return path


def _fit(a: np.ndarray, image_shape: tuple[int, int, int], role: str, path: str) -> Tensor:
    c, h, w = image_shape
    orig = a.shape
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise ValueError(f"{path}: {role} array has dtype {a.dtype}, expected real numbers")
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    if a.shape == (c, h, w):
        pass
    elif a.shape in ((h, w), (1, h, w)):
        a = np.broadcast_to(a.reshape(1, h, w), (c, h, w))
    elif a.size == c * h * w:
        # What PDS's sampling.py does with any array: a row-major reshape.
        warnings.warn(
            f"{path}: {role} array of shape {orig} reshaped row-major to {(c, h, w)} (as PDS's sampling.py does);"
            " a channels-last array would be scrambled",
            stacklevel=3,
        )
        a = a.reshape(c, h, w)
    else:
        raise ValueError(f"{path}: {role} filter has shape {tuple(orig)} but images are {(c, h, w)}")
    return torch.from_numpy(np.array(a, dtype=np.float64 if a.dtype == np.float64 else np.float32))


def load_filters(
    path: str | os.PathLike,
    image_shape: Sequence[int],
    *,
    role: str | None = None,
    kind: str | None = None,
) -> FilterFile:
    """Read filters for images of shape ``(C, H, W)``.

    * ``.npz`` written by :func:`save_filters`: keys ``freq`` / ``space`` and metadata.
    * ``.npy``: one PDS mask.  ``role`` is ``"freq"`` or ``"space"``; if omitted it is
      read from the file name (PDS names them ``*freq*.npy`` / ``*space*.npy``).  PDS
      publishes statistics, so ``kind`` defaults to ``"statistic"``.

    Arrays of shape ``(C, H, W)`` (with any leading singleton axes, e.g. ``(1, C, H, W)``)
    are taken as they are; ``(H, W)`` and ``(1, H, W)`` are broadcast over channels; any
    other array with ``C*H*W`` entries is reshaped row-major, as PDS's ``sampling.py``
    does, with a warning; anything else raises ``ValueError`` naming the file and both
    shapes.
    """
    path = os.fspath(path)
    shape = image_shape_of(image_shape)
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if not keys & {"freq", "space"}:
                raise ValueError(f"{path}: no 'freq' or 'space' array (keys: {sorted(keys)})")
            file_kind = str(data["kind"]) if "kind" in keys else (kind or "filter")
            meta = json.loads(str(data["metadata"])) if "metadata" in keys else {}
            freq = _fit(data["freq"], shape, "frequency", path) if "freq" in keys else None
            space = _fit(data["space"], shape, "space", path) if "space" in keys else None
        return FilterFile(freq, space, kind or file_kind, path, meta)
    if path.endswith(".npy"):
        if role is None:
            base = os.path.basename(path).lower()
            has_f, has_s = "freq" in base, "space" in base
            if has_f == has_s:
                raise ValueError(f"{path}: cannot tell a frequency from a space mask by name; "
                                 "pass role='freq' or 'space'")
            role = "freq" if has_f else "space"
        if role not in ("freq", "space"):
            raise ValueError(f"role must be 'freq' or 'space', got {role!r}")
        a = np.load(path, allow_pickle=False)
        t = _fit(a, shape, "frequency" if role == "freq" else "space", path)
        k = kind or "statistic"
        return FilterFile(t if role == "freq" else None, t if role == "space" else None, k, path, {"source": "npy"})
    raise ValueError(f"{path}: expected a .npz or .npy file")


def load_pds_preconditioner(
    image_shape: Sequence[int],
    freq_path: str | os.PathLike | None = None,
    space_path: str | os.PathLike | None = None,
    alpha: float = 5.0,
) -> Preconditioner:
    """PDS's ``--freq_mask_path/--space_mask_path/--alpha``: published statistics -> operator."""
    freq = space = None
    for p, role in ((freq_path, "freq"), (space_path, "space")):
        if p is None:
            continue
        got = load_filters(p, image_shape, role=role)
        if got.kind != "statistic":
            raise ValueError(f"{got.path}: holds {got.kind} values, not PDS statistics; "
                             "use FilterFile.preconditioner()")
        if role == "freq":
            freq = got.freq
        else:
            space = got.space
        if (freq if role == "freq" else space) is None:
            raise ValueError(f"{got.path}: has no {role} array")
    return pds_preconditioner(freq, space, alpha, image_shape=image_shape)
