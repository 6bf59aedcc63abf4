"""ER-SDE-Solver (Cui et al. 2023, "Elucidating the Solution Space of Extended Reverse-Time SDEs for
Diffusion Models", arXiv:2309.06169; code QinpengCui/ER-SDE-Solver, ComfyUI ``sample_er_sde``), on x_hat
against sigma.  For a noise-scale function phi(sigma) (their Eq. 13-14) the extended reverse SDE has the
exact solution from sigma_s to sigma_t, r = phi(sigma_t) / phi(sigma_s),

    x_t = r x_s + phi(sigma_t) int_{sigma_t}^{sigma_s} phi'(sigma) / phi(sigma)^2 D(sigma) dsigma
          + sqrt(sigma_t^2 - r^2 sigma_s^2) z.

phi = sigma is the probability-flow ODE, phi = sigma^2 the reverse SDE, phi = sigma (e^{sigma^0.3} + 10)
the paper's "ER SDE 5" (default).  A Taylor expansion of D integrated by parts gives ER-SDE-Solver-1/2/3
(their Eq. 19-21, :class:`ERSDE`), with S_0 = int dsigma / phi and S_1 = int (sigma - sigma_s) / phi
dsigma by 32-point Gauss-Legendre in log sigma (the reference: a 200-point Riemann sum).
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from .base import Context, Solver, SolverInfo, register

__all__ = ["ERSDE", "NOISE_SCALES"]

ER_SDE = ("Cui et al. 2023, Elucidating the Solution Space of Extended Reverse-Time SDEs for Diffusion Models "
          "(arXiv:2309.06169), ER-SDE-Solver-1/2/3 (Eq. 19-21), noise scale ER SDE 5")

NOISE_SCALES = {
    "er_sde": lambda s: s * (math.exp(s**0.3) + 10.0),  # the paper's recommended phi
    "ode": lambda s: s,  # the probability-flow ODE
    "sde": lambda s: s * s,  # the reverse SDE (ancestral DDPM)
}
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(32)


def _integrals(phi, sigma_t: float, sigma_s: float) -> tuple[float, float]:
    """(S_0, S_1) of the module docstring, Gauss-Legendre in u = log sigma (dsigma = sigma du)."""
    a, b = math.log(sigma_t), math.log(sigma_s)
    u = 0.5 * (b - a) * _NODES + 0.5 * (b + a)
    sig = np.exp(u)
    w = 0.5 * (b - a) * _WEIGHTS * sig / np.array([phi(float(v)) for v in sig])
    return float(w.sum()), float((w * (sig - sigma_s)).sum())


@register
class ERSDE(Solver):
    """ER-SDE-Solver (Cui et al. 2023, Eq. 19-21), stage p = min(max_stage, i + 1):

        x_t = r x_s + (1 - r) D_s [+ ((sigma_t - sigma_s) + phi_t S_0) D'_s]                 (p >= 2)
              [+ ((sigma_t - sigma_s)^2/2 + phi_t S_1) D''_s] + s_noise sqrt(sigma_t^2 - r^2 sigma_s^2) z   (p = 3)

    D'_s = (D_i - D_{i-1}) / (sigma_i - sigma_{i-1}), D''_s = (D'_i - D'_{i-1}) / ((sigma_i - sigma_{i-2}) / 2)
    (backward differences, as the reference).  ``noise_scale``: "er_sde" (the paper's), "ode" (phi = sigma:
    no noise), "sde" (phi = sigma^2: stage 1 is Euler-ancestral with eta = 1).  Order 2 (the ODE version):
    stage 3's D'_s is itself first order.  A step to sigma = 0 is x = D.  NFE = N.
    """

    info = SolverInfo(name="er_sde", family="er-sde", kind="sde", order=2, calls_per_step=1, paper=ER_SDE,
                      grid="karras", preconditioning=frozenset({"noise"}),
                      order_note="stages 2 and 3 both reach 2 (the ODE version, noise_scale='ode'): D' is a "
                                 "backward difference", in_default_bench=False)
    noise_off = {"noise_scale": "ode"}

    def __init__(self, max_stage: int = 3, noise_scale: str = "er_sde", s_noise: float = 1.0, **base):
        super().__init__(**base)
        if int(max_stage) != max_stage or not 1 <= max_stage <= 3:
            raise ValueError(f"er_sde max_stage must be 1, 2 or 3, got {max_stage}")
        if noise_scale not in NOISE_SCALES:
            raise ValueError(f"er_sde noise_scale must be one of {', '.join(NOISE_SCALES)}, got {noise_scale!r}")
        if not s_noise >= 0:
            raise ValueError(f"er_sde needs s_noise >= 0, got {s_noise}")
        self.max_stage, self.noise_scale, self.s_noise = int(max_stage), noise_scale, float(s_noise)

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma = ctx.sigma
        phi = NOISE_SCALES[self.noise_scale]
        d_old = dd_old = None
        for i in range(ctx.grid.steps):
            s, t = sigma[i], sigma[i + 1]
            d = ctx.denoise(x, s)
            if t == 0:
                x = d
                break
            stage = min(self.max_stage, i + 1)
            r = phi(t) / phi(s)
            x_next = r * x + (1 - r) * d
            if stage >= 2:
                s0, s1 = _integrals(phi, t, s)
                dd = (d - d_old) / (s - sigma[i - 1])
                x_next = x_next + ((t - s) + phi(t) * s0) * dd
                if stage == 3:
                    ddd = (dd - dd_old) / ((s - sigma[i - 2]) / 2)
                    x_next = x_next + ((t - s) ** 2 / 2 + phi(t) * s1) * ddd
                dd_old = dd
            if self.stochastic:
                x_next = x_next + ctx.randn_like(x) * (self.s_noise * math.sqrt(max(t * t - (r * s) ** 2, 0.0)))
            x, d_old = x_next, d
        return x
