"""k-diffusion's samplers (Crowson, crowsonkb/k-diffusion ``k_diffusion/sampling.py``) and DDIM, on x_hat
against sigma, where the probability-flow ODE is dx/dsigma = (x - D(x; sigma)) / sigma (Karras et al.
2022, Eq. 4).

Ancestral steps: from sigma_s to sigma_t with ``eta``, ``blocks.ancestral_step`` splits the step into a
deterministic move to sigma_down and fresh noise of scale sigma_up, sigma_up = min(sigma_t, eta sigma_t
sqrt(1 - sigma_t^2 / sigma_s^2)), sigma_down = sqrt(sigma_t^2 - sigma_up^2).  sigma_up is DDIM's
sigma_t(eta) (Song et al. 2021, Eq. 16) in x_hat units, so a DDIM step and an Euler-ancestral step are
one update, x_t = D + sigma_down eps + sigma_up z.  Every draw is ``ctx.randn_like`` (per-sample, TDAS
filters apply); ``dpmpp_sde``'s correlated draws come from ``blocks.SigmaBrownian``, which has the joint
law of k-diffusion's BrownianTree at the visited points (not its values).
"""

from __future__ import annotations

import math

from torch import Tensor

from .base import Context, Solver, SolverInfo, register
from .blocks import SigmaBrownian, ancestral_step, check_churn, check_eta, churn

__all__ = ["EulerAncestral", "DDIM", "DPM2", "DPMPPSDE", "GradientEstimation", "KDIFF", "DPMPP"]

KDIFF = "Crowson, k-diffusion (crowsonkb/k-diffusion, k_diffusion/sampling.py)"
DDIM_PAPER = "Song, Meng & Ermon 2021, Denoising Diffusion Implicit Models (ICLR), Eq. 12 and 16"
DPM_SOLVER = "Lu et al. 2022, DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling (NeurIPS)"
GRADIENT_ESTIMATION = ("Permenter & Yuan 2024, Interpreting and Improving Diffusion Models from an Optimization "
                       "Perspective (ICML), Sec. 5, gradient-estimation sampler; ComfyUI sample_gradient_estimation")
DPMPP = ("Lu et al. 2022, DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models "
         "(arXiv:2211.01095)")


@register
class EulerAncestral(Solver):
    """Euler-ancestral (k-diffusion ``sample_euler_ancestral``): an Euler step of the ODE to sigma_down,
    then fresh noise (module docstring),

        x_{i+1} = x_i + (sigma_down - sigma_i) (x_i - D_i) / sigma_i + s_noise sigma_up z_i,

    no noise on a step to sigma = 0.  eta = 0 is Euler.  NFE = N.
    """

    info = SolverInfo(name="euler_ancestral", family="k-diffusion", kind="sde", order=1, calls_per_step=1,
                      paper=KDIFF + ", sample_euler_ancestral", grid="karras", preconditioning=frozenset({"noise"}))
    max_eta = math.inf
    noise_off = {"eta": 0.0}

    def __init__(self, eta: float = 1.0, s_noise: float = 1.0, **base):
        super().__init__(**base)
        check_eta(self.name, eta, s_noise, self.max_eta)
        self.eta, self.s_noise = float(eta), float(s_noise)

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma = ctx.sigma
        for i in range(ctx.grid.steps):
            d = ctx.denoise(x, sigma[i])
            down, up = ancestral_step(sigma[i], sigma[i + 1], self.eta)
            x = d + (down / sigma[i]) * (x - d)
            if sigma[i + 1] > 0 and self.eta > 0:
                x = x + self.s_noise * up * ctx.randn_like(x)
        return x


@register
class DDIM(EulerAncestral):
    """DDIM (Song et al. 2021, Eq. 12) in x_hat units, alpha-bar = 1 / (1 + sigma^2):

        x_{i+1} = D_i + sqrt(sigma_{i+1}^2 - sigma_up^2) eps_i + sigma_up z,   eps_i = (x_i - D_i) / sigma_i,
        sigma_up = eta sigma_{i+1} sqrt(1 - sigma_{i+1}^2 / sigma_i^2)         (Eq. 16 over alpha_{i+1}).

    eta = 0 (default) is DDIM = Euler = DPM-Solver(++)-1; eta = 1 the ancestral DDPM step: the
    ``euler_ancestral`` update with 0 <= eta <= 1 on the process's native grid.  Parity: diffusers
    ``DDIMScheduler`` with ``set_alpha_to_one=True``, ``clip_sample=False`` (tests/test_parity.py); its
    ``set_alpha_to_one=False`` ends with a zero-length step, which solverzoo's grids refuse.
    """

    info = SolverInfo(name="ddim", family="ddim", kind="ode", order=1, calls_per_step=1, paper=DDIM_PAPER,
                      preconditioning=frozenset({"noise"}))
    max_eta = 1.0
    defaults = {"eta": 0.0}


@register
class DPM2(Solver):
    """k-diffusion's DPM-Solver-2 (``sample_dpm_2``; Lu et al. 2022, DPM-Solver-2 with r = 1/2, in sigma),
    midpoint sigma_mid = sqrt(sigma_hat sigma_down) (the lambda midpoint):

        d = (x - D(x; sigma_hat)) / sigma_hat,       x_2 = x + (sigma_mid - sigma_hat) d
        d_2 = (x_2 - D(x_2; sigma_mid)) / sigma_mid, x_{i+1} = x + (sigma_down - sigma_hat) d_2 [+ s_noise sigma_up z]

    An Euler step (x = D) to sigma = 0.  Either EDM's churn (``s_churn`` etc., as ``heun``; sigma_down =
    sigma_{i+1}) or ancestral noise (``eta`` in [0, 1], ``sample_dpm_2_ancestral``; sigma_hat = sigma_i).
    k-diffusion draws churn noise at every step; here only when gamma > 0 (the same paths with the
    default s_tmin = 0, s_tmax = inf).  NFE = 2N - 1 (2N on a grid ending at sigma_min).
    """

    info = SolverInfo(name="dpm2", family="k-diffusion", kind="ode", order=2, calls_per_step=2, zero_step_calls=1,
                      paper=KDIFF + ", sample_dpm_2 / sample_dpm_2_ancestral; " + DPM_SOLVER, grid="karras",
                      preconditioning=frozenset({"noise"}))
    noise_off = {"eta": 0.0, "s_churn": 0.0}

    def __init__(self, eta: float = 0.0, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
                 s_noise: float = 1.0, **base):
        super().__init__(**base)
        check_eta("dpm2", eta, s_noise, 1.0)
        check_churn("dpm2", s_churn, s_tmin, s_tmax, s_noise)
        if eta > 0 and s_churn > 0:
            raise ValueError("dpm2: choose ancestral noise (eta) or churn (s_churn), not both")
        self.eta, self.s_churn, self.s_tmin, self.s_tmax, self.s_noise = (
            float(eta), float(s_churn), float(s_tmin), float(s_tmax), float(s_noise))

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma, steps = ctx.sigma, ctx.grid.steps
        for i in range(steps):
            x, s_hat = churn(ctx, x, sigma[i], steps, self.s_churn, self.s_tmin, self.s_tmax, self.s_noise)
            down, up = ancestral_step(sigma[i], sigma[i + 1], self.eta)
            d = (x - ctx.denoise(x, s_hat)) / s_hat
            if down == 0:
                x = x + (down - s_hat) * d
                continue
            mid = math.sqrt(s_hat * down)
            x_2 = x + (mid - s_hat) * d
            d_2 = (x_2 - ctx.denoise(x_2, mid)) / mid
            x = x + (down - s_hat) * d_2
            if self.eta > 0:
                x = x + self.s_noise * up * ctx.randn_like(x)
        return x


@register
class DPMPPSDE(Solver):
    """k-diffusion's DPM-Solver++ SDE (``sample_dpmpp_sde``): DPM-Solver++(2S) with ancestral noise at both
    stages, sigma_mid = sigma_s^{1-r} sigma_t^r, fac = 1/(2r):

        (d_1, u_1) = ancestral_step(sigma_s, sigma_mid, eta),   (d_2, u_2) = ancestral_step(sigma_s, sigma_t, eta)
        x_2 = (d_1/sigma_s) x + (1 - d_1/sigma_s) D_s + s_noise u_1 N(sigma_s, sigma_mid)
        x_t = (d_2/sigma_s) x + (1 - d_2/sigma_s) [(1 - fac) D_s + fac D(x_2; sigma_mid)]
              + s_noise u_2 N(sigma_s, sigma_t)

    N(a, b): normalised increments of one Brownian motion in sigma (``blocks.SigmaBrownian``; the two are
    correlated).  With eta = 1, r = 1/2 the drift is SEEDS-2's, the noise coupling k-diffusion's.  A step to
    sigma = 0 is x = D.  NFE = 2N - 1.
    """

    info = SolverInfo(name="dpmpp_sde", family="k-diffusion", kind="sde", order=2, calls_per_step=2, zero_step_calls=1,
                      paper=KDIFF + ", sample_dpmpp_sde; " + DPMPP, grid="karras", preconditioning=frozenset({"noise"}))
    noise_off = {"eta": 0.0}

    def __init__(self, eta: float = 1.0, s_noise: float = 1.0, r: float = 0.5, **base):
        super().__init__(**base)
        check_eta("dpmpp_sde", eta, s_noise)
        if not 0 < r <= 1:
            raise ValueError(f"dpmpp_sde needs 0 < r <= 1, got {r}")
        self.eta, self.s_noise, self.r = float(eta), float(s_noise), float(r)

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma = ctx.sigma
        fac = 1 / (2 * self.r)
        for i in range(ctx.grid.steps):
            s, t = sigma[i], sigma[i + 1]
            d = ctx.denoise(x, s)
            if t == 0:
                x = d
                continue
            mid = s ** (1 - self.r) * t**self.r
            path = SigmaBrownian(s, lambda a, b, x=x: ctx.randn_like(x, a, b)) if self.eta > 0 else None
            down, up = ancestral_step(s, mid, self.eta)
            x_2 = x * (down / s) + d * (1 - down / s)
            if path is not None:
                x_2 = x_2 + path.increment(s, mid) * (self.s_noise * up)
            d_prime = d * (1 - fac) + ctx.denoise(x_2, mid) * fac
            down, up = ancestral_step(s, t, self.eta)
            x_next = x * (down / s) + d_prime * (1 - down / s)
            if path is not None:
                x_next = x_next + path.increment(s, t) * (self.s_noise * up)
            x = x_next
        return x


@register
class GradientEstimation(Solver):
    """Gradient-estimation sampler (Permenter & Yuan 2024, Sec. 5: eps_bar = gamma eps_t + (1 - gamma)
    eps_{t+1} cancels the first-order error of the projection estimate; ComfyUI
    ``sample_gradient_estimation``), on x_hat against sigma with eps = (x - D) / sigma:

        x_{i+1} = x_i + (sigma_{i+1} - sigma_i) [eps_i + (gamma - 1)(eps_i - eps_{i-1})],

    Euler on the first step; a step to sigma = 0 is x = D.  gamma = 2 (the paper's); gamma = 1 is Euler.
    As an ODE solver it is first order for gamma != 3/2 on uneven grids; its aim is the denoiser's error.
    NFE = N.
    """

    info = SolverInfo(name="gradient_estimation", family="gradient-estimation", kind="ode", order=1,
                      calls_per_step=1, paper=GRADIENT_ESTIMATION, grid="karras", in_default_bench=False)

    def __init__(self, gamma: float = 2.0, **base):
        super().__init__(**base)
        if not math.isfinite(gamma) or gamma < 1:
            raise ValueError(f"gradient_estimation needs a finite gamma >= 1 (1 is Euler, 2 the paper's), got {gamma}")
        self.gamma = float(gamma)

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma = ctx.sigma
        eps_old = None
        for i in range(ctx.grid.steps):
            d = ctx.denoise(x, sigma[i])
            if sigma[i + 1] == 0:
                x = d
                break
            eps = (x - d) / sigma[i]
            eps_bar = eps if eps_old is None else eps + (self.gamma - 1) * (eps - eps_old)
            x = x + (sigma[i + 1] - sigma[i]) * eps_bar
            eps_old = eps
        return x
