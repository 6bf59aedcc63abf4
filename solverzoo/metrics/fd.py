"""Frechet distance between sample moments and the exact moments of an analytic model.

    FD(N(mu1, C1), N(mu2, C2)) = |mu1 - mu2|^2 + tr C1 + tr C2 - 2 tr (C1 C2)^{1/2}

computed in a *linear* feature space, so the exact moments of the data law transform
exactly:

* ``"pixels"``: identity; metric name ``fd_pixels``;
* ``"pool:K"``: per-channel average pooling to K x K (``adaptive_avg_pool2d``);
  metric name ``fd_poolK``.  Exact moments are ``P mean`` and ``P Sigma P^T``
  (plus the mixture term), computed by applying the model's ``apply_cov`` to the
  pooled basis vectors, never building the pixel covariance.

This is *not* the Inception FID: no network, no pretrained weights.  The numbers only
compare samplers on the same analytic model and feature.

The square-root trace uses ``tr (C1 C2)^{1/2} = sum sqrt(eig(S^T C1 S))`` for a factor
``C2 = S S^T``; :class:`ExactReference` caches ``S`` (Cholesky, or the symmetric root
from ``eigh`` for singular C2) so each further distance costs two matmuls and one
``eigvalsh``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .caching import model_key

__all__ = [
    "FeatureStats",
    "ExactReference",
    "frechet_distance",
    "feature_moments",
    "exact_reference",
    "oracle_floor",
    "metric_name",
    "parse_feature",
    "make_feature",
    "feature_dim",
    "clear_caches",
]

_F64 = torch.float64


# ---------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------
def parse_feature(feature: str) -> tuple[str, int | None]:
    """``"pixels"`` -> ("pixels", None); ``"pool:16"`` -> ("pool", 16)."""
    if feature in ("pixels", "pixel", "identity"):
        return "pixels", None
    m = re.fullmatch(r"pool[:_]?(\d+)", str(feature))
    if m and int(m.group(1)) > 0:
        return "pool", int(m.group(1))
    raise ValueError(f"unknown feature {feature!r}; use 'pixels' or 'pool:K' (e.g. 'pool:16')")


def _canonical(feature: str) -> str:
    kind, k = parse_feature(feature)
    return "pixels" if kind == "pixels" else f"pool:{k}"


def metric_name(feature: str) -> str:
    """The honest name of the metric: ``fd_pixels``, ``fd_pool16``, ..."""
    kind, k = parse_feature(feature)
    return "fd_pixels" if kind == "pixels" else f"fd_pool{k}"


def make_feature(feature: str | Callable | None) -> Callable[[Tensor], Tensor]:
    """A linear map from a batch ``(B, ...)`` to float64 features ``(B, m)``."""
    if feature is None:
        feature = "pixels"
    if callable(feature):
        return lambda x: feature(x).reshape(x.shape[0], -1).to(_F64)
    kind, k = parse_feature(feature)
    if kind == "pixels":
        return lambda x: x.reshape(x.shape[0], -1).to(_F64)

    def pool(x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"feature 'pool:{k}' needs image batches (B, C, H, W), got shape {tuple(x.shape)}")
        if k > min(x.shape[-2:]):
            raise ValueError(f"feature 'pool:{k}' needs images of at least {k} x {k}, got {tuple(x.shape[-2:])}")
        return F.adaptive_avg_pool2d(x.to(_F64), k).reshape(x.shape[0], -1)

    return pool


def feature_dim(feature: str, shape: Sequence[int]) -> int:
    kind, k = parse_feature(feature)
    if kind == "pixels":
        return int(np.prod(shape))
    if len(shape) != 3:
        raise ValueError(f"feature {feature!r} needs an image model, got shape {tuple(shape)}")
    return int(shape[0]) * k * k


def _pool_adjoint(y: Tensor, shape: Sequence[int], k: int) -> Tensor:
    """P^T y for the pooling map P: (n, C, k, k) -> (n, C, H, W), via autograd (exact)."""
    with torch.enable_grad():
        x = torch.zeros((y.shape[0], *shape), dtype=_F64, requires_grad=True)
        out = F.adaptive_avg_pool2d(x, k)
        (g,) = torch.autograd.grad(out, x, grad_outputs=y.to(_F64).reshape(out.shape))
    return g


def _to64(x) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return torch.as_tensor(x).detach().to(device="cpu", dtype=_F64)


# ---------------------------------------------------------------------------------
# streaming moments
# ---------------------------------------------------------------------------------
class FeatureStats:
    """Streaming float64 count / sum / sum of outer products of features.

    Memory is O(m^2) for m features, independent of the number of samples.  Sums are
    taken around a fixed shift (the mean of the first batch) to avoid cancellation.
    """

    def __init__(self, feature: str | Callable | None = "pixels", device: torch.device | str = "cpu"):
        self.feature = feature
        self._map = make_feature(feature)
        self.device = torch.device(device)
        self.count = 0
        self._shift: Tensor | None = None
        self._sum: Tensor | None = None
        self._outer: Tensor | None = None

    @property
    def dim(self) -> int | None:
        return None if self._sum is None else self._sum.numel()

    def update(self, batch: Tensor) -> FeatureStats:
        x = batch if torch.is_tensor(batch) else torch.from_numpy(np.asarray(batch))
        f = self._map(x.detach()).to(device=self.device, dtype=_F64)
        if f.shape[0] == 0:
            return self
        if self._shift is None:
            self._shift = f.mean(0)
            m = f.shape[1]
            self._sum = torch.zeros(m, dtype=_F64, device=self.device)
            self._outer = torch.zeros(m, m, dtype=_F64, device=self.device)
        elif f.shape[1] != self._sum.numel():
            raise ValueError(f"feature dimension changed from {self._sum.numel()} to {f.shape[1]}")
        f = f - self._shift
        self._sum += f.sum(0)
        self._outer.addmm_(f.T, f)
        self.count += f.shape[0]
        return self

    def mean(self) -> Tensor:
        if self.count == 0:
            raise ValueError("no samples accumulated")
        return (self._shift + self._sum / self.count).cpu()

    def cov(self) -> Tensor:
        """Unbiased covariance (divides by N - 1)."""
        if self.count < 2:
            raise ValueError("need at least 2 samples for a covariance")
        c = (self._outer - torch.outer(self._sum, self._sum) / self.count) / (self.count - 1)
        return (0.5 * (c + c.T)).cpu()


# ---------------------------------------------------------------------------------
# Frechet distance
# ---------------------------------------------------------------------------------
@contextmanager
def _lapack_threads():
    """Run LAPACK eigen-solvers with ``EIG_THREADS`` threads.

    MKL's threaded ``syevd`` collapses when the cores are shared (measured on 2 busy
    cores: eigh of a 3072 x 3072 matrix 5.7 s with one thread, 50 s with two).
    """
    old = torch.get_num_threads()
    n = EIG_THREADS
    if n is None or n >= old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


#: Threads used for eigen-decompositions (None: torch's current setting).
EIG_THREADS: int | None = 1


class ExactReference:
    """Reference Gaussian (mean, cov) with a square-root factor of cov cached.

    ``distance(mean, cov)`` = |mean - m_ref|^2 + tr cov + tr cov_ref - 2 tr (cov cov_ref)^{1/2}
    with ``tr (cov cov_ref)^{1/2} = sum sqrt(eigvalsh(S^T cov S))`` for any factor
    ``cov_ref = S S^T`` (``S^T cov S`` is similar to ``cov cov_ref``).  ``S`` is the
    Cholesky factor when cov_ref is positive definite (one cheap factorisation) and the
    symmetric square root from ``eigh`` otherwise; tiny negative eigenvalues are clipped.
    """

    def __init__(self, mean, cov, name: str | None = None):
        self.mean = _to64(mean).reshape(-1)
        cov = _to64(cov)
        d = self.mean.numel()
        if cov.shape != (d, d):
            raise ValueError(f"cov must be ({d}, {d}), got {tuple(cov.shape)}")
        self.cov = 0.5 * (cov + cov.T)
        self.name = name
        self.trace = float(torch.diagonal(self.cov).sum())
        self._sqrt: Tensor | None = None
        factor, info = torch.linalg.cholesky_ex(self.cov)
        if int(info) == 0 and bool(torch.isfinite(factor).all()):
            self.factor = factor
        else:
            self.factor = self.sqrt_cov

    @property
    def dim(self) -> int:
        return self.mean.numel()

    @property
    def sqrt_cov(self) -> Tensor:
        """The symmetric PSD square root of the reference covariance (eigh, cached)."""
        if self._sqrt is None:
            with _lapack_threads():
                evals, evecs = torch.linalg.eigh(self.cov)
            root = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
            self._sqrt = 0.5 * (root + root.T)
        return self._sqrt

    def trace_sqrt_product(self, cov) -> float:
        """tr (cov cov_ref)^{1/2}."""
        cov = _to64(cov)
        S = self.factor
        M = S.T @ cov @ S
        with _lapack_threads():
            ev = torch.linalg.eigvalsh(0.5 * (M + M.T))
        # eigenvalues at round-off level (e.g. the null space of a sample covariance with
        # N <= d) are zero; their sqrt would otherwise add noise of order sqrt(eps)
        tol = float(ev.abs().max()) * ev.numel() * torch.finfo(_F64).eps
        ev = torch.where(ev > tol, ev, torch.zeros_like(ev))
        return float(ev.sqrt().sum())

    def distance(self, mean, cov) -> float:
        mean, cov = _to64(mean).reshape(-1), _to64(cov)
        if mean.numel() != self.dim or cov.shape != (self.dim, self.dim):
            raise ValueError(f"moments of dimension {mean.numel()} vs reference of dimension {self.dim}")
        diff = float(((mean - self.mean) ** 2).sum())
        fd = diff + float(torch.diagonal(cov).sum()) + self.trace - 2 * self.trace_sqrt_product(cov)
        return max(fd, 0.0)

    def distance_stats(self, stats: FeatureStats) -> float:
        return self.distance(stats.mean(), stats.cov())

    def distance_samples(self, features: Tensor) -> float:
        """FD of the sample moments of ``features`` (N, d): the same number as
        ``distance(mean, cov)``, but for N <= d through the N x N Gram matrix:
        with Y the centred samples and cov = Y^T Y / (N - 1), the nonzero eigenvalues of
        S^T cov S are those of (Y S)(Y S)^T / (N - 1): O(N d^2) instead of O(d^3)."""
        y = _to64(features).reshape(len(features), -1)
        n = y.shape[0]
        if y.shape[1] != self.dim:
            raise ValueError(f"features of dimension {y.shape[1]} vs reference of dimension {self.dim}")
        if n < 2:
            raise ValueError("the Frechet distance needs at least 2 samples")
        if n > self.dim:
            stats = FeatureStats(None)
            stats.update(y)
            return self.distance_stats(stats)
        mean = y.mean(0)
        yc = y - mean
        z = (yc @ self.factor) / (n - 1) ** 0.5
        with _lapack_threads():
            ev = torch.linalg.eigvalsh(z @ z.T)
        tol = float(ev.abs().max()) * ev.numel() * torch.finfo(_F64).eps
        ev = torch.where(ev > tol, ev, torch.zeros_like(ev))
        trace_cov = float((yc**2).sum()) / (n - 1)
        fd = float(((mean - self.mean) ** 2).sum()) + trace_cov + self.trace - 2 * float(ev.sqrt().sum())
        return max(fd, 0.0)

    __call__ = distance


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """FD between N(mu1, cov1) and N(mu2, cov2) (float64, eigenvalue route)."""
    return ExactReference(mu2, cov2).distance(mu1, cov1)


# ---------------------------------------------------------------------------------
# exact moments of a model in feature space
# ---------------------------------------------------------------------------------
def feature_moments(model, feature: str = "pixels") -> tuple[Tensor, Tensor]:
    """Exact (mean (m,), cov (m, m)) float64 of the model's data law in feature space."""
    kind, k = parse_feature(feature)
    if kind == "pixels":
        return model.data_mean().to(_F64).reshape(-1).cpu(), model.data_cov().to(_F64).cpu()
    shape = tuple(model.shape)
    if len(shape) != 3:
        raise ValueError(f"feature {feature!r} needs an image model, got shape {shape}")
    if k > min(shape[1:]):
        raise ValueError(f"feature {feature!r} needs images of at least {k} x {k}, got {shape}")
    P = make_feature(feature)
    C = shape[0]
    m = C * k * k
    if hasattr(model, "apply_cov") and hasattr(model, "means") and hasattr(model, "weights"):
        means = model.means.to(_F64)  # (K, C, H, W)
        w = model.weights.to(_F64)
        fm = P(means)  # (K, m)
        mean = (w[:, None] * fm).sum(0)
        dm = fm - mean
        cov = (dm.T * w) @ dm
        stationary = getattr(model, "stationary_cov", False)
        if stationary and shape[1] % k == 0 and shape[2] % k == 0:
            S = _pooled_cov_stationary(model, shape, k)
        else:
            S = _pooled_cov_general(model, shape, k)
        return mean, cov + 0.5 * (S + S.T)
    # generic fallback: dense pixel covariance pushed through P
    Pt = _pool_adjoint(torch.eye(m, dtype=_F64), shape, k).reshape(m, -1)  # rows = P^T e_j
    mean = Pt @ model.data_mean().to(_F64).reshape(-1)
    cov = Pt @ model.data_cov().to(_F64) @ Pt.T
    return mean, 0.5 * (cov + cov.T)


def _pooled_cov_general(model, shape, k: int) -> Tensor:
    """P Sigma P^T row by row: Sigma applied (``apply_cov``) to the vectors P^T e_j."""
    P = make_feature(f"pool:{k}")
    m = shape[0] * k * k
    d = int(np.prod(shape))
    chunk = max(1, min(m, (1 << 24) // d))
    rows = []
    for start in range(0, m, chunk):
        n = min(chunk, m - start)
        E = torch.zeros(n, m, dtype=_F64)
        E[torch.arange(n), torch.arange(start, start + n)] = 1.0
        rows.append(P(model.apply_cov(_pool_adjoint(E, shape, k))))  # (P Sigma P^T)[j, :]
    return torch.cat(rows, 0)


def _pooled_cov_stationary(model, shape, k: int) -> Tensor:
    """P Sigma P^T for a circulant Sigma and block pooling (H, W divisible by k).

    Shifting an image by one block commutes with both Sigma and P, so the pooled
    covariance is block-circulant on the k x k grid: C applications of Sigma (one
    basis vector per channel) give every entry.
    """
    C = shape[0]
    E = torch.zeros(C, C, k, k, dtype=_F64)
    E[torch.arange(C), torch.arange(C), 0, 0] = 1.0
    row0 = make_feature(f"pool:{k}")(model.apply_cov(_pool_adjoint(E, shape, k))).reshape(C, C, k, k)
    i = torch.arange(k)
    di = (i[None, :] - i[:, None]) % k  # (i, i') -> i' - i
    # cov[(c, i, j), (c', i', j')] = row0[c, c', i' - i, j' - j]
    full = row0[:, :, di[:, None, :, None], di[None, :, None, :]]  # (C, C, i, j, i', j')
    return full.permute(0, 2, 3, 1, 4, 5).reshape(C * k * k, C * k * k)


_REFERENCES: dict = {}
_FLOORS: dict = {}


def exact_reference(model, feature: str = "pixels") -> ExactReference:
    """ExactReference of the model's exact feature moments, cached per (model, feature)."""
    key = (model_key(model), _canonical(feature))
    ref = _REFERENCES.get(key)
    if ref is None:
        mean, cov = feature_moments(model, feature)
        ref = _REFERENCES[key] = ExactReference(mean, cov, name=metric_name(feature))
    return ref


def oracle_floor(
    model, feature: str = "pixels", num_samples: int = 10_000, seed: int = 0, batch_size: int = 500
) -> float:
    """FD of ``num_samples`` exact samples (stream DATA of ``seed``) vs the exact moments.

    This is the finite-sample floor of the estimator: a perfect sampler scores about
    this much with the same N.  Cached in-process by (model key, feature, N, seed).
    """
    key = (model_key(model, with_dtype=True), _canonical(feature), int(num_samples), int(seed))
    if key not in _FLOORS:
        stats = FeatureStats(feature)
        for start in range(0, int(num_samples), int(batch_size)):
            idx = range(start, min(start + int(batch_size), int(num_samples)))
            stats.update(model.sample_data(seed, idx, device="cpu"))
        _FLOORS[key] = exact_reference(model, feature).distance_stats(stats)
    return _FLOORS[key]


def clear_caches() -> None:
    """Forget every cached reference (FD moments, floors, kernel references)."""
    from .mmd import clear_kernel_caches

    _REFERENCES.clear()
    _FLOORS.clear()
    clear_kernel_caches()
