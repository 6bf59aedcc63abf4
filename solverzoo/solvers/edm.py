"""Probability-flow ODE solvers of the EDM family (Karras et al. 2022, "Elucidating the
Design Space of Diffusion-Based Generative Models", NeurIPS), in the (x_hat, sigma)
frame where the ODE reads (Eq. 4 with s = 1, sigma = t):

    dx/dsigma = (x - D(x; sigma)) / sigma.
"""

from __future__ import annotations

import math

from torch import Tensor

from .base import Context, Solver, SolverInfo, register

__all__ = ["Euler", "Heun"]

EDM = "Karras et al. 2022, Elucidating the Design Space of Diffusion-Based Generative Models (NeurIPS)"


def churn(solver, ctx: Context, x: Tensor, sigma: float, steps: int) -> tuple[Tensor, float]:
    """EDM's stochastic churn (Karras et al. 2022, Algorithm 2, lines 4-6): raise the noise level
    to sigma_hat = (1 + gamma) sigma with gamma = min(s_churn / N, sqrt(2) - 1) inside
    [s_tmin, s_tmax], adding sqrt(sigma_hat^2 - sigma^2) s_noise z.  Shared by heun and dpm2."""
    gamma = min(solver.s_churn / steps, math.sqrt(2) - 1) if solver.s_churn > 0 else 0.0
    if not gamma or not solver.s_tmin <= sigma <= solver.s_tmax:
        return x, sigma
    sigma_hat = sigma * (1 + gamma)
    return x + math.sqrt(sigma_hat**2 - sigma**2) * solver.s_noise * ctx.randn_like(x), sigma_hat


@register
class Euler(Solver):
    """Euler on the probability-flow ODE (Karras et al. 2022, Eq. 4; Song et al. 2021, Eq. 13):

        x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (x_i - D(x_i; sigma_i)) / sigma_i.

    A step to sigma = 0 is the final denoise x = D(x; sigma).  NFE = N.
    """

    info = SolverInfo(name="euler", family="edm", kind="ode", order=1, calls_per_step=1,
                      paper=EDM + ", Eq. 4 (Euler)", grid="karras")

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma = ctx.sigma
        for i in range(ctx.grid.steps):
            d = (x - ctx.denoise(x, sigma[i])) / sigma[i]
            x = x + (sigma[i + 1] - sigma[i]) * d
        return x


@register
class Heun(Solver):
    """EDM's stochastic Heun sampler (Karras et al. 2022, Algorithm 2; Algorithm 1 when
    s_churn = 0):

        gamma_i = min(s_churn / N, sqrt(2) - 1) if s_tmin <= sigma_i <= s_tmax else 0
        sigma_hat = (1 + gamma_i) sigma_i,  x_hat = x_i + sqrt(sigma_hat^2 - sigma_i^2) s_noise z
        d = (x_hat - D(x_hat; sigma_hat)) / sigma_hat,   x_{i+1} = x_hat + (sigma_{i+1} - sigma_hat) d
        if sigma_{i+1} != 0:  d' = (x_{i+1} - D(x_{i+1}; sigma_{i+1})) / sigma_{i+1}
                              x_{i+1} = x_hat + (sigma_{i+1} - sigma_hat) (d + d') / 2

    The second-order correction is skipped on the step to sigma = 0: NFE = 2N - 1.
    """

    info = SolverInfo(name="heun", family="edm", kind="ode", order=2, calls_per_step=2, nfe_offset=-1,
                      paper=EDM + ", Algorithms 1-2 (Heun, stochastic churn)", grid="karras")

    def __init__(self, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"),
                 s_noise: float = 1.0, **base):
        super().__init__(**base)
        if s_churn < 0 or s_noise < 0 or s_tmin < 0 or s_tmax < s_tmin:
            raise ValueError(
                f"heun needs s_churn >= 0, s_noise >= 0 and 0 <= s_tmin <= s_tmax; got s_churn={s_churn}, "
                f"s_noise={s_noise}, s_tmin={s_tmin}, s_tmax={s_tmax}"
            )
        self.s_churn, self.s_tmin, self.s_tmax, self.s_noise = float(s_churn), float(s_tmin), float(s_tmax), float(s_noise)

    @property
    def stochastic(self) -> bool:
        return self.s_churn > 0

    def nfe_for_steps(self, steps: int) -> int:
        """2N - 1 when the grid ends at zero; 2N when it ends at sigma_min (no skipped correction)."""
        return 2 * steps - (1 if self.final == "zero" else 0)

    def steps_for_nfe(self, nfe: int) -> int:
        # one step costs 1 call when it ends at zero, 2 when the grid ends at sigma_min
        min_nfe = 1 if self.final == "zero" else 2
        if int(nfe) != nfe or nfe < min_nfe:
            raise ValueError(
                f"solver {self.info.name!r} needs an NFE budget of at least {min_nfe} with final={self.final!r}, got {nfe}"
            )
        return (int(nfe) + 1) // 2 if self.final == "zero" else int(nfe) // 2

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma, steps = ctx.sigma, ctx.grid.steps
        for i in range(steps):
            x, sigma_hat = churn(self, ctx, x, sigma[i], steps)
            d = (x - ctx.denoise(x, sigma_hat)) / sigma_hat
            x_next = x + (sigma[i + 1] - sigma_hat) * d
            if sigma[i + 1] != 0:
                d_next = (x_next - ctx.denoise(x_next, sigma[i + 1])) / sigma[i + 1]
                x_next = x + (sigma[i + 1] - sigma_hat) * (d + d_next) / 2
            x = x_next
        return x
