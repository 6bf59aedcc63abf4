"""Readable forms of the presets that a general class serves: each function is one preset with its
default options, written as its paper's update (as k-diffusion's ``sampling.py``), beside the
general class that runs it (``dpm_solver.DPMSolverPPMultistep``, ``blocks.ExponentialStages``,
``multistep``'s Adams bases).  A function takes what :meth:`Solver.run` takes, the run's
:class:`~solverzoo.solvers.base.Context` and x_hat at the first node, and returns x_hat at the last;
tests/test_readable.py checks each against the registered preset.
"""

from __future__ import annotations

import math

from torch import Tensor

from .base import Context
from .blocks import ab_weights, curve_weight, lagrange_weights, noise_chain, slope_weight

__all__ = ["READABLE", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde", "seeds1", "seeds2", "seeds3", "lms", "ipndm"]


def dpmpp_2m(ctx: Context, x: Tensor) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), r = h_{i-1} / h:
    x_t = (sigma_t / sigma_s) x - (e^{-h} - 1) [(1 + 1/(2r)) D_i - 1/(2r) D_{i-1}]; the first step has r = inf."""
    sigma = ctx.sigma
    d_old = h_old = None
    for i in range(ctx.grid.steps):
        d = ctx.denoise(x, sigma[i])
        if sigma[i + 1] == 0:
            return d
        h = math.log(sigma[i] / sigma[i + 1])
        d_bar = d if d_old is None else (1 + h / (2 * h_old)) * d - h / (2 * h_old) * d_old
        x = (sigma[i + 1] / sigma[i]) * x - math.expm1(-h) * d_bar
        d_old, h_old = d, h
    return x


def dpmpp_2m_sde(ctx: Context, x: Tensor, eta: float = 1.0) -> Tensor:
    """DPM-Solver++(2M) SDE (k-diffusion ``sample_dpmpp_2m_sde``, midpoint), h_eta = (1 + eta) h:
    x_t = (sigma_t / sigma_s) e^{-eta h} x - (e^{-h_eta} - 1) [D_i + (D_i - D_{i-1}) / (2r)]
    + sigma_t sqrt(1 - e^{-2 eta h}) z."""
    sigma = ctx.sigma
    d_old = h_old = None
    for i in range(ctx.grid.steps):
        d = ctx.denoise(x, sigma[i])
        if sigma[i + 1] == 0:
            return d
        h = math.log(sigma[i] / sigma[i + 1])
        h_eta = (1 + eta) * h
        d_bar = d if d_old is None else d + (d - d_old) * (h / h_old) / 2
        x = (sigma[i + 1] / sigma[i] * math.exp(-eta * h)) * x - math.expm1(-h_eta) * d_bar
        x = x + ctx.randn_like(x) * (sigma[i + 1] * math.sqrt(-math.expm1(-2 * eta * h)))
        d_old, h_old = d, h
    return x


def dpmpp_3m_sde(ctx: Context, x: Tensor, eta: float = 1.0) -> Tensor:
    """DPM-Solver++(3M) SDE (k-diffusion ``sample_dpmpp_3m_sde`` with the full D'' weight), h_eta = (1 + eta) h:
    x_t = (sigma_t / sigma_s) e^{-eta h} x - (e^{-h_eta} - 1) D_i + slope_weight(h_eta) d1
    - 2 curve_weight(h_eta) d2 + sigma_t sqrt(1 - e^{-2 eta h}) z, with d1 ~ h D' and d2 ~ h^2 D'' / 2 from
    the last three values (two on the second step, where d2 = 0; none on the first)."""
    sigma = ctx.sigma
    ds, hs = [], []
    for i in range(ctx.grid.steps):
        d = ctx.denoise(x, sigma[i])
        if sigma[i + 1] == 0:
            return d
        h = math.log(sigma[i] / sigma[i + 1])
        h_eta = (1 + eta) * h
        x = (sigma[i + 1] / sigma[i] * math.exp(-eta * h)) * x - math.expm1(-h_eta) * d
        if len(ds) == 1:
            x = x + (d - ds[-1]) * (h / hs[-1]) * slope_weight(h_eta)
        elif len(ds) == 2:
            r0, r1 = hs[-1] / h, hs[-2] / h
            d1_0, d1_1 = (d - ds[-1]) / r0, (ds[-1] - ds[-2]) / r1
            d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
            d2 = (d1_0 - d1_1) / (r0 + r1)
            x = x + d1 * slope_weight(h_eta) - d2 * (2 * curve_weight(h_eta))
        x = x + ctx.randn_like(x) * (sigma[i + 1] * math.sqrt(-math.expm1(-2 * eta * h)))
        ds, hs = (ds + [d])[-2:], (hs + [h])[-2:]
    return x


def _seeds(ctx: Context, x: Tensor, stage) -> Tensor:
    """A SEEDS step to every positive sigma, the denoise x = D to sigma = 0."""
    sigma = ctx.sigma
    for i in range(ctx.grid.steps):
        s, t = sigma[i], sigma[i + 1]
        x = ctx.denoise(x, s) if t == 0 else stage(ctx, x, s, t, math.log(s / t))
    return x


def _noise(ctx: Context, x: Tensor, sigmas: list[float]) -> list:
    """N_1, N_2, ... of one Brownian path at sigmas[1:] (``blocks.noise_chain``, data prediction)."""
    out, n = [], 0.0
    for a, b in noise_chain(sigmas):
        n = ctx.randn_like(x) * b + a * n
        out.append(n)
    return out


def seeds1(ctx: Context, x: Tensor) -> Tensor:
    """SEEDS-1 (Gonzalez et al. 2023), data prediction:
    x_t = e^{-2h} x + (1 - e^{-2h}) D_s + sigma_t sqrt(1 - e^{-2h}) z."""
    def stage(ctx, x, s, t, h):
        (n_t,) = _noise(ctx, x, [s, t])
        return math.exp(-2 * h) * x - math.expm1(-2 * h) * ctx.denoise(x, s) + n_t
    return _seeds(ctx, x, stage)


def seeds2(ctx: Context, x: Tensor, c2: float = 0.5) -> Tensor:
    """SEEDS-2 (Gonzalez et al. 2023), data prediction, stage sigma_2 = sigma_s e^{-c2 h}:
    x_2 = e^{-2 c2 h} x + (1 - e^{-2 c2 h}) D_s + N_2,
    x_t = e^{-2h} x + (1 - e^{-2h}) [D_s + (D_2 - D_s) / (2 c2)] + N_t."""
    def stage(ctx, x, s, t, h):
        s2 = s * (t / s) ** c2
        n_2, n_t = _noise(ctx, x, [s, s2, t])
        d = ctx.denoise(x, s)
        d_2 = ctx.denoise(math.exp(-2 * c2 * h) * x - math.expm1(-2 * c2 * h) * d + n_2, s2)
        return math.exp(-2 * h) * x - math.expm1(-2 * h) * (d + (d_2 - d) / (2 * c2)) + n_t
    return _seeds(ctx, x, stage)


def seeds3(ctx: Context, x: Tensor) -> Tensor:
    """SEEDS-3 (Gonzalez et al. 2023), data prediction, stages at h/3 and 2h/3, g(u) = 1 + (e^{-2u} - 1) / (2u):
    x_2 = e^{-2h/3} x + (1 - e^{-2h/3}) D_s + N_2,
    x_3 = e^{-4h/3} x + (1 - e^{-4h/3}) D_s + 2 g(2h/3) (D_2 - D_s) + N_3,
    x_t = e^{-2h} x + (1 - e^{-2h}) D_s + 1.5 g(h) (D_3 - D_s) + N_t."""
    def g(u: float) -> float:
        return 1 + math.expm1(-2 * u) / (2 * u)

    def stage(ctx, x, s, t, h):
        s2, s3 = s * (t / s) ** (1 / 3), s * (t / s) ** (2 / 3)
        n_2, n_3, n_t = _noise(ctx, x, [s, s2, s3, t])
        d = ctx.denoise(x, s)
        d_2 = ctx.denoise(math.exp(-2 * h / 3) * x - math.expm1(-2 * h / 3) * d + n_2, s2)
        x_3 = math.exp(-4 * h / 3) * x - math.expm1(-4 * h / 3) * d + 2 * g(2 * h / 3) * (d_2 - d) + n_3
        d_3 = ctx.denoise(x_3, s3)
        return math.exp(-2 * h) * x - math.expm1(-2 * h) * d + 1.5 * g(h) * (d_3 - d) + n_t
    return _seeds(ctx, x, stage)


def lms(ctx: Context, x: Tensor, order: int = 4) -> Tensor:
    """Linear multistep (k-diffusion ``sample_lms``): x_{i+1} = x_i + sum_j eps_{i-j} int l_j(sigma) dsigma over
    [sigma_i, sigma_{i+1}], l_j the Lagrange basis on the last min(order, i + 1) sigmas, eps = (x - D) / sigma."""
    sigma = ctx.sigma
    eps: list[Tensor] = []
    for i in range(ctx.grid.steps):
        eps = (eps + [(x - ctx.denoise(x, sigma[i])) / sigma[i]])[-order:]
        weights = lagrange_weights(sigma[i + 1 - len(eps):i + 1][::-1], sigma[i], sigma[i + 1])
        x = x + sum(w * e for w, e in zip(weights, reversed(eps)))
    return x


def ipndm(ctx: Context, x: Tensor, order: int = 4) -> Tensor:
    """iPNDM (Zhang & Chen 2023): constant-step Adams-Bashforth on dx/dsigma = eps, x_{i+1} = x_i +
    (sigma_{i+1} - sigma_i) sum_j b_j eps_{i-j}, b = AB-p weights (1), (3, -1)/2, (23, -16, 5)/12,
    (55, -59, 37, -9)/24, p = min(order, i + 1)."""
    sigma = ctx.sigma
    eps: list[Tensor] = []
    for i in range(ctx.grid.steps):
        eps = (eps + [(x - ctx.denoise(x, sigma[i])) / sigma[i]])[-order:]
        x = x + (sigma[i + 1] - sigma[i]) * sum(b * e for b, e in zip(ab_weights(len(eps)), reversed(eps)))
    return x


#: the readable form of each preset, by registered name
READABLE = {"dpmpp_2m": dpmpp_2m, "dpmpp_2m_sde": dpmpp_2m_sde, "dpmpp_3m_sde": dpmpp_3m_sde, "seeds1": seeds1,
            "seeds2": seeds2, "seeds3": seeds3, "lms": lms, "ipndm": ipndm}
