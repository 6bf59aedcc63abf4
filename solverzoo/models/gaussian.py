"""A Gaussian data law N(mean, diag(var)): the smallest model with exact everything.

Its probability-flow ODE has a closed-form solution, which makes it the reference for
convergence-order tests: for x_hat = x0 + sigma n with x0 ~ N(mu, v),

    D(x_hat; sigma) = mu + v / (v + sigma^2) (x_hat - mu),
    x_hat(sigma) - mu = (x_hat(sigma_0) - mu) sqrt((v + sigma^2) / (v + sigma_0^2))  (ODE flow).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..noise import DATA, sample_seed
from ..processes import Process, get_process
from .base import AnalyticModel

__all__ = ["GaussianModel"]


class GaussianModel(AnalyticModel):
    """x0 ~ N(mean, diag(var)) over ``shape``; default a standard normal per coordinate."""

    name = "gaussian"

    def __init__(self, shape: Sequence[int] = (2,), mean: Tensor | float = 0.0, var: Tensor | float = 1.0,
                 process: str | Process = "edm"):
        self.shape = tuple(int(n) for n in shape)
        self.process = get_process(process)
        self.mean = torch.broadcast_to(torch.as_tensor(mean, dtype=torch.float64), self.shape).clone()
        self.var = torch.broadcast_to(torch.as_tensor(var, dtype=torch.float64), self.shape).clone()
        if (self.var <= 0).any():
            raise ValueError("the Gaussian model needs var > 0 everywhere")

    def to(self, device, dtype=None):
        """Moves the parameters; they stay float64 (calls compute in the input's dtype)."""
        self.mean, self.var = self.mean.to(device), self.var.to(device)
        return self

    def denoise(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        sigma2 = sigma.to(x_hat.dtype).reshape(-1, *([1] * len(self.shape))) ** 2
        mean, var = self.mean.to(x_hat.dtype), self.var.to(x_hat.dtype)
        return mean + var / (var + sigma2) * (x_hat - mean)

    def ode_flow(self, x_hat: Tensor, sigma_from: float, sigma_to: float) -> Tensor:
        """Exact probability-flow ODE solution from sigma_from to sigma_to."""
        mean, var = self.mean.to(x_hat.dtype), self.var.to(x_hat.dtype)
        return mean + (x_hat - mean) * torch.sqrt((var + sigma_to**2) / (var + sigma_from**2))

    def sample_data(self, seed: int, indices: Sequence[int], device="cpu") -> Tensor:
        rows = [torch.randn(self.shape, generator=torch.Generator().manual_seed(sample_seed(seed, i, DATA)),
                            dtype=torch.float64) for i in indices]
        x = torch.stack(rows).to(device)
        return self.mean.to(device) + self.var.to(device).sqrt() * x

    def data_mean(self) -> Tensor:
        return self.mean.flatten().to(torch.float64)

    def data_cov(self) -> Tensor:
        return torch.diag(self.var.flatten().to(torch.float64))
