"""A 2-D Gaussian mixture with full per-component covariances: the toy model of choice
for looking at trajectories.  Everything is exact: for x_hat = x0 + sigma n,

    p(k | x_hat) ~ w_k N(x_hat; mu_k, S_k + sigma^2 I),
    E[x0 | x_hat, k] = mu_k + S_k (S_k + sigma^2 I)^-1 (x_hat - mu_k).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..noise import DATA, sample_seed
from ..processes import Process, get_process
from .base import AnalyticModel

__all__ = ["GMM2D"]


def _rot(theta: Tensor) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


class GMM2D(AnalyticModel):
    """Mixture of K 2-D Gaussians.

    Layouts: ``"ring"`` (K components on a circle of ``radius``, elongated along the
    circle: std ``std_tangent`` along it, ``std_radial`` across) and ``"checkerboard"``
    (the 8 dark cells of a 4 x 4 board on [-1.6, 1.6]^2, each a slightly tilted
    Gaussian).  Explicit ``means`` (K, 2) / ``covs`` (K, 2, 2) / ``weights`` override.
    """

    name = "gmm-2d"

    def __init__(
        self,
        layout: str = "ring",
        num_components: int = 8,
        radius: float = 1.0,
        std_tangent: float = 0.15,
        std_radial: float = 0.04,
        process: str | Process = "edm",
        *,
        means=None,
        covs=None,
        weights=None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        self.shape = (2,)
        self.process = get_process(process)
        self.layout = layout
        f64 = torch.float64
        if means is None:
            if layout == "ring":
                K = int(num_components)
                theta = torch.arange(K, dtype=f64) * (2 * math.pi / K)
                means = radius * torch.stack([torch.cos(theta), torch.sin(theta)], -1)
                R = _rot(theta)
                covs = R @ torch.diag(torch.tensor([std_radial**2, std_tangent**2], dtype=f64)) @ R.transpose(-1, -2)
            elif layout == "checkerboard":
                cells = [(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0]
                means = torch.tensor([[-1.2 + 0.8 * j, 1.2 - 0.8 * i] for i, j in cells], dtype=f64)
                tilt = torch.linspace(-0.6, 0.6, len(cells), dtype=f64)
                R = _rot(tilt)
                covs = R @ torch.diag(torch.tensor([0.16**2, 0.08**2], dtype=f64)) @ R.transpose(-1, -2)
            else:
                raise ValueError(f"unknown GMM2D layout {layout!r}; choose 'ring' or 'checkerboard'")
        means = torch.as_tensor(means, dtype=f64).reshape(-1, 2)
        K = means.shape[0]
        if covs is None:
            covs = torch.eye(2, dtype=f64).expand(K, 2, 2) * 0.01
        covs = torch.as_tensor(covs, dtype=f64).expand(K, 2, 2).clone()
        covs = 0.5 * (covs + covs.transpose(-1, -2))
        if not bool((torch.linalg.cholesky_ex(covs)[1] == 0).all()):
            raise ValueError("component covariances must be positive definite")
        weights = torch.full((K,), 1.0 / K, dtype=f64) if weights is None else torch.as_tensor(weights, dtype=f64)
        if weights.shape != (K,) or bool((weights < 0).any()):
            raise ValueError(f"weights must be {K} non-negative numbers")
        self._means, self._covs, self._weights = means, covs, weights / weights.sum()
        self._chol = torch.linalg.cholesky(covs)
        h = hashlib.sha1(b"GMM2D")
        for t in (self._means, self._covs, self._weights):
            h.update(t.numpy().tobytes())
        self._key = h.hexdigest()
        self.device, self.dtype = torch.device(device), dtype
        self._cache: dict = {}

    @property
    def num_components(self) -> int:
        return self._means.shape[0]

    @property
    def means(self) -> Tensor:
        return self._means.clone()

    @property
    def covs(self) -> Tensor:
        return self._covs.clone()

    @property
    def weights(self) -> Tensor:
        return self._weights.clone()

    def identity_key(self) -> str:
        return self._key

    def describe(self) -> dict:
        return {**super().describe(), "layout": self.layout, "num_components": self.num_components,
                "key": self._key[:12]}

    def to(self, device, dtype=None) -> GMM2D:
        self.device = torch.device(device)
        self.dtype = dtype or self.dtype
        return self

    def _params(self, x: Tensor):
        key = (str(x.device), x.dtype)
        if key not in self._cache:
            self._cache[key] = tuple(
                t.to(device=x.device, dtype=x.dtype) for t in (self._means, self._covs, torch.log(self._weights))
            )
        return self._cache[key]

    def _posterior(self, x_hat: Tensor, sigma: Tensor):
        """(logits (B, K), component posterior means (B, K, 2))."""
        mu, S, logw = self._params(x_hat)
        B = x_hat.shape[0]
        s2 = torch.as_tensor(sigma, dtype=x_hat.dtype, device=x_hat.device).reshape(-1).expand(B) ** 2
        V = S[None] + s2[:, None, None, None] * torch.eye(2, dtype=x_hat.dtype, device=x_hat.device)  # (B, K, 2, 2)
        a, b, c = V[..., 0, 0], V[..., 0, 1], V[..., 1, 1]
        det = a * c - b * b
        Vinv = torch.stack([torch.stack([c, -b], -1), torch.stack([-b, a], -1)], -2) / det[..., None, None]
        diff = x_hat[:, None, :] - mu[None]  # (B, K, 2)
        sol = (Vinv @ diff[..., None])[..., 0]  # V^-1 (x - mu_k)
        maha = (diff * sol).sum(-1)
        logits = logw - 0.5 * (maha + torch.log(det))
        post = x_hat[:, None, :] - s2[:, None, None] * sol  # mu_k + S_k V^-1 diff = x - s^2 V^-1 diff
        return logits, post

    def denoise(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        logits, post = self._posterior(x_hat, sigma)
        r = torch.softmax(logits, -1)
        return (r[..., None] * post).sum(1)

    def log_prob(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        """Exact log p_sigma(x_hat)."""
        logits = self._posterior(x_hat, sigma)[0]
        return torch.logsumexp(logits, -1) - math.log(2 * math.pi)

    def sample_data(self, seed: int, indices: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        """Sample i: one uniform (component) then a 2-vector of normals from its DATA generator."""
        cdf = torch.cumsum(self._weights, 0)
        n = len(indices)
        u = torch.empty(n, dtype=torch.float64)
        z = torch.empty(n, 2, dtype=torch.float64)
        for row, i in enumerate(indices):
            gen = torch.Generator(device="cpu").manual_seed(sample_seed(seed, int(i), DATA))
            torch.rand((), generator=gen, dtype=torch.float64, out=u[row])
            torch.randn(2, generator=gen, dtype=torch.float64, out=z[row])
        k = torch.searchsorted(cdf, u, right=True).clamp_max(self.num_components - 1)
        out = self._means[k] + (self._chol[k] @ z[:, :, None])[:, :, 0]
        return out.to(device=device, dtype=self.dtype)

    def data_mean(self) -> Tensor:
        return (self._weights[:, None] * self._means).sum(0)

    def data_cov(self) -> Tensor:
        dm = self._means - self.data_mean()
        return (self._weights[:, None, None] * (self._covs + dm[:, :, None] * dm[:, None, :])).sum(0)
