"""TDAS filters (Ma, Zhang, Zhu, Zhang, Feng 2022, "Accelerating Score-based Generative Models for
High-Resolution Image Synthesis", Sec. 4.3 and appendix A.2): the frequency filter ``f`` and the space
filter ``s`` of ``M = F^-1 diag(f) F diag(s)``, which shapes the initial sample and the added noise.

* Frequency radius (:func:`frequency_radius`): index / size along each axis, so that the paper's Table 4
  radii (0.400 / 0.455 for DFT) are the radii holding fractions 0.5 / 0.65 of the frequencies
  (sqrt(0.5/pi) = 0.399, sqrt(0.65/pi) = 0.455) and can be used as published.
* Frequency filter (Eq. 6, several zones; :func:`tdas_frequency_filter`): 1 inside ``r_1``, the level
  ``l_j`` from ``r_j`` on (``cumulative=True``: l_1 ... l_j).
* Space filter (Sec. 4.3, app. A.2; :func:`tdas_space_filter`): ``s = (m_hat + beta - 1) / beta`` from the
  normalised mean image, in [1 - 1/beta, 1]: more noise where the data is brighter, softened for
  stability; the reciprocal of PDS's ``alpha / (m_hat + alpha - 1)``.
* The estimate of the frequency filter from samples (app. A.2): :func:`tdas_estimate`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .base import (
    Composed,
    FrequencyFilter,
    Identity,
    Preconditioner,
    SpaceFilter,
    _iter_batches,
    dct_matrix,
    image_tensor,
)

__all__ = [
    "frequency_radius",
    "frequency_power",
    "image_mean",
    "tdas_frequency_filter",
    "tdas_space_filter",
    "tdas_preconditioner",
    "TDASEstimate",
    "tdas_estimate",
]

_BASES = ("dft", "dct")


def _check_basis(basis: str) -> None:
    if basis not in _BASES:
        raise ValueError(f"basis must be one of {_BASES}, got {basis!r}")


def frequency_radius(height: int, width: int, basis: str = "dft", *, device=None) -> Tensor:
    """``rho`` of shape ``(H, W)`` (float64), the distance of each frequency to the lowest one in index / size
    units: DFT (unshifted layout) ``sqrt((min(u, H-u)/H)^2 + (min(v, W-v)/W)^2)``, the distance to the
    nearest DC corner with wrap-around (cycles per pixel); DCT ``sqrt((u/H)^2 + (v/W)^2)``.
    """
    _check_basis(basis)
    u = torch.arange(height, dtype=torch.float64, device=device)
    v = torch.arange(width, dtype=torch.float64, device=device)
    if basis == "dft":
        u = torch.minimum(u, height - u)
        v = torch.minimum(v, width - v)
    u = (u / height).square().unsqueeze(1)
    v = (v / width).square().unsqueeze(0)
    return (u + v).sqrt()


def _check_zones(radii: Sequence[float], rates: Sequence[float]) -> tuple[list[float], list[float]]:
    radii = [float(r) for r in radii]
    rates = [float(l) for l in rates]
    if len(radii) != len(rates):
        raise ValueError(f"need one rate per radius, got {len(radii)} radii and {len(rates)} rates")
    for r in radii:
        if math.isnan(r) or r < 0:
            raise ValueError(f"radii must be >= 0 (inf allowed: an empty zone), got {r}")
    for a, b in zip(radii, radii[1:]):
        if b < a:
            raise ValueError(f"radii must be non-decreasing, got {radii}")
    for l in rates:
        if not (0 < l <= 1):
            raise ValueError(f"rates must lie in (0, 1], got {l}")
    return radii, rates


def tdas_frequency_filter(
    shape: Sequence[int],
    radii: Sequence[float],
    rates: Sequence[float],
    basis: str = "dft",
    *,
    cumulative: bool = False,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> Tensor:
    """The radial TDAS filter: 1 inside ``radii[0]``, ``rates[j]`` from ``radii[j]`` on.

    ``shape`` is ``(C, H, W)`` (returns ``(C, H, W)``, the same in every channel) or
    ``(H, W)`` (returns ``(1, H, W)``).  Radii in index / size units, non-decreasing,
    >= 0; rates in (0, 1]; otherwise ``ValueError``.  ``basis`` is "dft" (unshifted
    layout, wrap-around distance) or "dct".
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (C, H, W) or (H, W), got {shape}")
    radii, rates = _check_zones(radii, rates)
    c, h, w = shape
    rho = frequency_radius(h, w, basis, device=device)
    f = torch.ones(h, w, dtype=torch.float64, device=device)
    level = 1.0
    for r, l in zip(radii, rates):
        level = level * l if cumulative else l
        f[rho >= r] = level
    return f.to(dtype).expand(c, h, w).contiguous()


def tdas_space_filter(
    mean_image,
    softness: float = 5.0,
    *,
    gamma: float = 1.0,
    normalize: str = "max",
) -> Tensor:
    """``s = (m_hat + softness - 1) / softness``, ``m_hat = m^gamma / max(m^gamma)``.

    ``mean_image``: ``(C, H, W)`` (or ``(H, W)``) mean of the data in [0, 1].  Values in
    ``[1 - 1/softness, 1]`` (``normalize="max"``) or rescaled to ``mean(s^2) = 1``
    (``normalize="rms"``).  ``softness = inf`` gives ones.  Negative means, a zero
    image, ``gamma <= 0``, ``softness <= 0`` or a softness that makes ``s`` non-positive
    (``softness <= 1 - min(m_hat)``) raise ``ValueError``.
    """
    m = image_tensor(mean_image, "mean_image")
    if float(m.min()) < -1e-6:
        raise ValueError(f"mean_image must be >= 0 (data in [0, 1]), got min {float(m.min()):.3g}")
    if normalize not in ("max", "rms"):
        raise ValueError(f"normalize must be 'max' or 'rms', got {normalize!r}")
    gamma, softness = float(gamma), float(softness)
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    if math.isnan(softness) or softness <= 0:
        raise ValueError(f"softness must be > 0 (or inf for no space filter), got {softness}")
    g = m.clamp(min=0) ** gamma
    top = float(g.max())
    if not top > 0:
        raise ValueError("mean_image is all zeros")
    m_hat = g / top
    if math.isinf(softness):
        s = torch.ones_like(m_hat)
    else:
        s = (m_hat + softness - 1.0) / softness
        if not float(s.min()) > 0:
            raise ValueError(f"softness={softness} makes the space filter non-positive; "
                             f"need softness > {1 - float(m_hat.min()):.6g}")
    if normalize == "rms":
        s = s / s.square().mean().sqrt()
    return s


def image_mean(images) -> Tensor:
    """Mean image ``(C, H, W)`` (float64) of a tensor ``(N, C, H, W)`` or an iterable of batches."""
    total, count = None, 0
    for b in _iter_batches(images):
        if b.ndim != 4:
            raise ValueError(f"image batches must have shape (B, C, H, W), got {tuple(b.shape)}")
        x = b.to(torch.float64).sum(0)
        total = x if total is None else total + x
        count += b.shape[0]
    if count == 0:
        raise ValueError("image_mean got no images")
    return total / count


def frequency_power(images, basis: str = "dft", *, pooled: bool = True) -> Tensor:
    """Mean power spectrum (float64): ``mean_i |F x_i|^2`` (DFT, unnormalised) or
    ``mean_i (D x_i)^2`` (orthonormal DCT-II).  ``pooled`` sums over channels and
    returns ``(H, W)``; otherwise ``(C, H, W)``."""
    _check_basis(basis)
    total, count, dh, dw = None, 0, None, None
    for b in _iter_batches(images):
        if b.ndim != 4:
            raise ValueError(f"image batches must have shape (B, C, H, W), got {tuple(b.shape)}")
        x = b.to(torch.float64)
        if basis == "dft":
            p = torch.fft.fft2(x).abs().square()
        else:
            if dh is None:
                dh = dct_matrix(x.shape[-2], device=x.device)
                dw = dct_matrix(x.shape[-1], device=x.device)
            p = (dh @ x @ dw.T).square()
        p = p.sum(0)
        if pooled:
            p = p.sum(0)
        if total is not None and total.shape != p.shape:
            raise ValueError(f"image batches have different shapes: {tuple(total.shape)} and {tuple(p.shape)}")
        total = p if total is None else total + p
        count += b.shape[0]
    if count == 0:
        raise ValueError("frequency_power got no images")
    return total / count


def tdas_preconditioner(
    image_shape: Sequence[int],
    radii: Sequence[float] = (),
    rates: Sequence[float] = (),
    *,
    basis: str = "dft",
    mean_image=None,
    cumulative: bool = False,
    softness: float = 5.0,
    gamma: float = 1.0,
    normalize: str = "max",
    dtype: torch.dtype = torch.float32,
) -> Preconditioner:
    """TDAS's ``M = F^-1 diag(f) F diag(s)`` for images ``(C, H, W)``.

    No radii -> no frequency filter; no ``mean_image`` -> no space filter (the paper's
    "identity space filter"); neither -> ``Identity``.  Solvers apply it to the initial
    sample and to the added noise only (``noise``), not to the score.
    """
    c, h, w = (int(s) for s in image_shape[-3:])
    meta = {"method": "tdas"}
    freq = space = None
    if len(radii) or len(rates):
        f = tdas_frequency_filter((1, h, w), radii, rates, basis, cumulative=cumulative, dtype=dtype)
        freq = FrequencyFilter(
            f, basis=basis, meta={**meta, "radii": [float(r) for r in radii], "rates": [float(l) for l in rates]}
        )
        freq.check_shape((c, h, w))
    if mean_image is not None:
        s = tdas_space_filter(mean_image, softness, gamma=gamma, normalize=normalize).to(dtype)
        space = SpaceFilter(
            s, meta={**meta, "softness": float(softness), "gamma": float(gamma), "normalize": normalize}
        )
        space.check_shape((c, h, w))
    if freq is not None and space is not None:
        return Composed(space, freq)
    return freq or space or Identity()


# --------------------------------------------------------------------------- estimator


@dataclass
class TDASEstimate:
    """Result of :func:`tdas_estimate`."""

    radii: list[float]
    rates: list[float]  # clipped to (0, max_rate]
    raw_rates: list[float]  # mean(R over the zone) ** -exponent, before clipping
    thresholds: list[float]  # the quantiles Q_q(R)
    quantiles: list[float]
    ratio: Tensor  # R(u, v), (H, W)
    basis: str
    exponent: float
    preconditioner: Preconditioner = field(repr=False, default_factory=Identity)

    def describe(self) -> dict:
        return {
            "radii": self.radii,
            "rates": self.rates,
            "raw_rates": self.raw_rates,
            "thresholds": self.thresholds,
            "quantiles": self.quantiles,
            "basis": self.basis,
            "exponent": self.exponent,
        }


def _lower_quantile(values: Tensor, q: float) -> float:
    """``min{s : #{s' <= s} / n >= q}`` (the inverted-CDF quantile of a finite set)."""
    s, _ = torch.sort(values.flatten())
    k = max(int(math.ceil(q * s.numel())) - 1, 0)
    return float(s[k])


def _split_radius(rho: Tensor, above: Tensor) -> float:
    """The radius ``r`` that best separates ``above`` (outside, rho >= r) from the rest
    (inside): minimises #{rho < r, above} + #{rho >= r, not above}; smallest on ties;
    ``inf`` when no frequency should be outside."""
    rho = rho.flatten()
    order = torch.argsort(rho, stable=True)
    rs = rho[order]
    a = above.flatten()[order].to(torch.float64)
    zero = torch.zeros(1, dtype=torch.float64, device=a.device)
    cum_above = torch.cat([zero, torch.cumsum(a, 0)])  # above among the first i
    cum_below = torch.cat([zero, torch.cumsum(1 - a, 0)])
    n = rs.numel()
    starts = torch.ones(n, dtype=torch.bool, device=rs.device)
    starts[1:] = rs[1:] != rs[:-1]
    cuts = torch.cat([torch.nonzero(starts).flatten(), torch.tensor([n], device=rs.device)])
    err = cum_above[cuts] + (cum_below[n] - cum_below[cuts])
    i = int(cuts[int(torch.argmin(err))])
    return float(rs[i]) if i < n else math.inf


def tdas_estimate(
    fast_samples,
    reference_samples,
    quantiles: Sequence[float] = (0.5, 0.65),
    *,
    basis: str = "dft",
    exponent: float = 1.0,
    max_rate: float = 1.0,
    mean_image=None,
    rtol: float = 1e-6,
    **space_kwargs,
) -> TDASEstimate:
    """Appendix A.2: TDAS frequency-filter parameters from ``fast_samples`` (the accelerated sampler's) and
    ``reference_samples`` (the non-accelerated one's, or the data), about 200 ``(N, C, H, W)`` images each.

    1. ``R = P_fast / P_ref`` with ``P(u, v) = mean_i sum_c |F x_i|^2`` (the deviation ratio, Eq. 7).
    2. For each quantile ``q_j``, ``tau_j = Q_{q_j}(R)`` and the radius ``r_j`` that best separates the
       frequencies with ``R >= tau_j`` (outside) from the others (fewest misclassified); non-decreasing.
    3. ``rate_j = mean(R over zone j) ** -exponent`` (1: the paper's inverse ratio; 0.5 inverts the
       amplitude ratio), clipped to ``(0, max_rate]``; an empty zone takes the next zone's rate (1 if none).

    Returns a :class:`TDASEstimate` with the preconditioner for images of the samples' shape.
    """
    _check_basis(basis)
    qs = [float(q) for q in quantiles]
    if not qs or any(not (0 < q < 1) for q in qs) or any(b <= a for a, b in zip(qs, qs[1:])):
        raise ValueError(f"quantiles must be increasing values in (0, 1), got {qs}")
    if not (exponent > 0):
        raise ValueError(f"exponent must be > 0, got {exponent}")
    if not (0 < max_rate <= 1):
        raise ValueError(f"max_rate must lie in (0, 1], got {max_rate}")
    fast_batches = list(_iter_batches(fast_samples))
    p_fast = frequency_power(fast_batches, basis)
    p_ref = frequency_power(reference_samples, basis)
    if p_fast.shape != p_ref.shape:
        raise ValueError(f"fast samples have spectra {tuple(p_fast.shape)} but references {tuple(p_ref.shape)}")
    h, w = p_fast.shape
    tiny = torch.finfo(torch.float64).tiny
    ratio = p_fast / p_ref.clamp(min=tiny)
    rho = frequency_radius(h, w, basis, device=ratio.device)

    thresholds = [_lower_quantile(ratio, q) for q in qs]
    radii: list[float] = []
    for tau in thresholds:
        r = _split_radius(rho, ratio >= tau * (1 - rtol))
        radii.append(max(r, radii[-1]) if radii else r)

    edges = radii + [math.inf]
    means: list[float | None] = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        zone = (rho >= lo) & (rho < hi)
        means.append(float(ratio[zone].mean()) if bool(zone.any()) else None)
    raw: list[float] = [1.0] * len(means)
    nxt = 1.0
    for j in range(len(means) - 1, -1, -1):
        if means[j] is not None:
            nxt = means[j] ** (-exponent)
        raw[j] = nxt
    rates = [min(max(r, tiny), max_rate) for r in raw]

    c = fast_batches[0].shape[-3]
    pre = tdas_preconditioner((c, h, w), radii, rates, basis=basis, mean_image=mean_image, **space_kwargs)
    return TDASEstimate(radii, rates, raw, thresholds, qs, ratio, basis, float(exponent), pre)
