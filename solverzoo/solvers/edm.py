"""Probability-flow ODE solvers of the EDM family (Karras et al. 2022, "Elucidating the
Design Space of Diffusion-Based Generative Models", NeurIPS), in the (x_hat, sigma)
frame where the ODE reads (Eq. 4 with s = 1, sigma = t):

    dx/dsigma = (x - D(x; sigma)) / sigma.
"""

from __future__ import annotations

from torch import Tensor

from .base import Context, Solver, SolverInfo, register
from .blocks import check_churn, churn

__all__ = ["Euler", "Heun", "RK2"]

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
    noise_off = {"s_churn": 0.0}

    def __init__(self, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"),
                 s_noise: float = 1.0, **base):
        super().__init__(**base)
        check_churn(self.name, s_churn, s_tmin, s_tmax, s_noise)
        self.s_churn, self.s_tmin, self.s_tmax = float(s_churn), float(s_tmin), float(s_tmax)
        self.s_noise = float(s_noise)

    def step(self, ctx: Context, x: Tensor, s: float, t: float) -> Tensor:
        """One step of Algorithm 1 from sigma s to t: Euler, then (t > 0) the trapezoidal correction."""
        d = (x - ctx.denoise(x, s)) / s
        x_next = x + (t - s) * d
        if t == 0:
            return x_next
        d_next = (x_next - ctx.denoise(x_next, t)) / t
        return x + (t - s) * (d + d_next) / 2

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma, steps = ctx.sigma, ctx.grid.steps
        for i in range(steps):
            x, sigma_hat = churn(ctx, x, sigma[i], steps, self.s_churn, self.s_tmin, self.s_tmax, self.s_noise)
            x = self.step(ctx, x, sigma_hat, sigma[i + 1])
        return x


@register
class RK2(Solver):
    """EDM's general second-order Runge-Kutta step (Karras et al. 2022, Appendix D.2, Eq. 47: the
    family their Heun sampler belongs to), from sigma_i to sigma_{i+1}, h = sigma_{i+1} - sigma_i:

        d = (x_i - D(x_i; sigma_i)) / sigma_i,   sigma' = sigma_i + alpha h,   x' = x_i + alpha h d
        d' = (x' - D(x'; sigma')) / sigma'
        x_{i+1} = x_i + h ((1 - 1/(2 alpha)) d + 1/(2 alpha) d').

    alpha = 1 is Heun (Algorithm 1), 1/2 the midpoint method, 2/3 (the default) Ralston's, the two-stage
    method of least error bound.  The step to sigma = 0 is the Euler step (the final denoise), as in
    Algorithm 1: NFE = 2N - 1.
    """

    info = SolverInfo(name="rk2", family="edm", kind="ode", order=2, calls_per_step=2, zero_step_calls=1,
                      paper=EDM + ", Appendix D.2, Eq. 47 (second-order RK with parameter alpha)", grid="karras",
                      in_default_bench=False)

    def __init__(self, alpha: float = 2 / 3, **base):
        super().__init__(**base)
        if not 0 < alpha <= 1:
            raise ValueError(f"rk2 needs 0 < alpha <= 1 (1: Heun, 0.5: midpoint, 2/3: Ralston), got {alpha}")
        self.alpha = float(alpha)

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma, a = ctx.sigma, self.alpha
        for i in range(ctx.grid.steps):
            h = sigma[i + 1] - sigma[i]
            d = (x - ctx.denoise(x, sigma[i])) / sigma[i]
            if sigma[i + 1] == 0:
                x = x + h * d
                continue
            x_mid, sigma_mid = x + a * h * d, sigma[i] + a * h
            d_mid = (x_mid - ctx.denoise(x_mid, sigma_mid)) / sigma_mid
            x = x + h * ((1 - 1 / (2 * a)) * d + 1 / (2 * a) * d_mid)
        return x
