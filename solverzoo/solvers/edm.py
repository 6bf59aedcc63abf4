"""Probability-flow ODE solvers of the EDM family (Karras et al. 2022, "Elucidating the
Design Space of Diffusion-Based Generative Models", NeurIPS), in the (x_hat, sigma)
frame where the ODE reads (Eq. 4 with s = 1, sigma = t):

    dx/dsigma = (x - D(x; sigma)) / sigma.
"""

from __future__ import annotations

from torch import Tensor

from .base import Context, Solver, SolverInfo, register
from .blocks import check_churn, churn

__all__ = ["Euler", "Heun"]

EDM = "Karras et al. 2022, Elucidating the Design Space of Diffusion-Based Generative Models (NeurIPS)"


@register
class Euler(Solver):
    """Euler on the probability-flow ODE (Karras et al. 2022, Eq. 4; Song et al. 2021, Eq. 13):

        x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (x_i - D(x_i; sigma_i)) / sigma_i.

    A step to sigma = 0 is the final denoise x = D(x; sigma).  NFE = N.  Computed as the same
    update x_{i+1} = D + (sigma_{i+1} / sigma_i) (x_i - D), which has no cancellation when sigma_0
    is huge (a rectified flow started near t = 1, sigma = t / (1 - t)).
    """

    info = SolverInfo(name="euler", family="edm", kind="ode", order=1, calls_per_step=1,
                      paper=EDM + ", Eq. 4 (Euler)", grid="karras")

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma = ctx.sigma
        for i in range(ctx.grid.steps):
            denoised = ctx.denoise(x, sigma[i])
            x = denoised + (sigma[i + 1] / sigma[i]) * (x - denoised)
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

    The second-order correction is skipped on the step to sigma = 0: NFE = 2N - 1 (2N on a grid
    ending at sigma_min).
    """

    info = SolverInfo(name="heun", family="edm", kind="ode", order=2, calls_per_step=2, zero_step_calls=1,
                      paper=EDM + ", Algorithms 1-2 (Heun, stochastic churn)", grid="karras")

    def __init__(self, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"),
                 s_noise: float = 1.0, **base):
        super().__init__(**base)
        check_churn(self.info.name, s_churn, s_tmin, s_tmax, s_noise)
        self.s_churn, self.s_tmin, self.s_tmax, self.s_noise = float(s_churn), float(s_tmin), float(s_tmax), float(s_noise)

    @property
    def stochastic(self) -> bool:
        return self.s_churn > 0

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma, steps = ctx.sigma, ctx.grid.steps
        for i in range(steps):
            x, sigma_hat = churn(ctx, x, sigma[i], steps, self.s_churn, self.s_tmin, self.s_tmax, self.s_noise)
            d = (x - ctx.denoise(x, sigma_hat)) / sigma_hat
            x_next = x + (sigma[i + 1] - sigma_hat) * d
            if sigma[i + 1] != 0:
                d_next = (x_next - ctx.denoise(x_next, sigma[i + 1])) / sigma[i + 1]
                x_next = x + (sigma[i + 1] - sigma_hat) * (d + d_next) / 2
            x = x_next
        return x
