"""SA-Solver (Xue et al. 2023, "SA-Solver: Stochastic Adams Solver for Fast Sampling of Diffusion Models", NeurIPS;
code scxue/SA-Solver, diffusers ``SASolverScheduler``), data prediction, x_hat against lambda = -log sigma.  With
tau >= 0 (0: the ODE, 1: the reverse SDE), dx = (1 + tau^2)(D - x) dlambda + tau sqrt(2) sigma dW (Eq. 7) gives (Eq. 10)

    x_t = e^{-tau^2 h} (sigma_t/sigma_s) x_s + int e^{-(1+tau^2)(lambda_t - l)} (1 + tau^2) D(l) dl
          + sigma_t sqrt(1 - e^{-2 tau^2 h}) z.

SA-Predictor (Eq. 14) replaces D by its Lagrange interpolation through the last p model values,
SA-Corrector (Eq. 15) through c values with the new D_t (the next step's call: no extra NFE), from the
same x_s and z (weights: ``blocks.exponential_lagrange_weights``, diffusers' order-2 correction).
tau = ``eta`` for sigma in [tau_sigma_min, tau_sigma_max] at the step's start, 0 outside; the defaults
fall between sigma(199) = 0.7193 < 0.72 < sigma(200) = 0.7236 and sigma(800) = 25.736 < 25.74 <
sigma(801) = 25.945 (linear-beta VP): diffusers' default tau_func, 1 for timesteps 200..800.
"""

from __future__ import annotations

import math

from torch import Tensor

from .base import Context, SolverInfo, register
from .blocks import Multistep, exponential_lagrange_weights

__all__ = ["SASolver"]

SA_SOLVER = ("Xue et al. 2023, SA-Solver: Stochastic Adams Solver for Fast Sampling of Diffusion Models (NeurIPS), "
             "Eq. 14-15 (SA-Predictor, SA-Corrector), data prediction; diffusers SASolverScheduler")


@register
class SASolver(Multistep):
    """SA-Solver (Xue et al. 2023, Eq. 14-15; module docstring): SA-Predictor of order p = ``order`` and
    SA-Corrector of order c = ``corrector_order`` (0: none), warm-up min(p, i + 1) and min(c, i + 2),
    ``lower_order_final`` min(p, N - i) and min(c, N - i + 1) (diffusers' rules), tau = ``eta`` for sigma in
    [tau_sigma_min, tau_sigma_max], one noise draw per step (shared by the predictor and its corrector).
    A step to sigma = 0 is x = D.  Defaults: p = c = 2, eta = 1 (diffusers').  NFE = N.

    Order (eta = 0, the ODE): the corrected step has order min(c, p + 1); the first step (UniP-1 style
    Euler predictor, corrector of order 2) bounds the global order at 3, and ``lower_order_final`` at 2.
    Parity: diffusers ``SASolverScheduler`` in float64 (tests/test_parity.py).
    """

    info = SolverInfo(name="sa_solver", family="sa-solver", kind="sde", order=2, calls_per_step=1, paper=SA_SOLVER,
                      grid="karras", preconditioning=frozenset({"noise"}), in_default_bench=False)
    max_order = 4
    pinned = {"warmup": "lower"}
    noise_off = {"eta": 0.0}

    def __init__(self, corrector_order: int = 2, eta: float = 1.0, tau_sigma_min: float = 0.72,
                 tau_sigma_max: float = 25.74, s_noise: float = 1.0, **base):
        if int(corrector_order) != corrector_order or not 0 <= corrector_order <= 4:
            raise ValueError(f"sa_solver corrector_order must be an integer in 0..4 (0: no corrector), got "
                             f"{corrector_order}")
        if not eta >= 0 or not s_noise >= 0 or not 0 <= tau_sigma_min <= tau_sigma_max:
            raise ValueError(f"sa_solver needs eta >= 0, s_noise >= 0 and 0 <= tau_sigma_min <= tau_sigma_max; got "
                             f"eta={eta}, s_noise={s_noise}, tau_sigma_min={tau_sigma_min}, "
                             f"tau_sigma_max={tau_sigma_max}")
        self.corrector_order, self.eta, self.s_noise = int(corrector_order), float(eta), float(s_noise)
        self.tau_sigma_min, self.tau_sigma_max = float(tau_sigma_min), float(tau_sigma_max)
        super().__init__(**base)

    def formula_order(self) -> int:
        return min(self.corrector_order, self.order + 1) if self.corrector_order else self.order

    def declared_order(self) -> int:
        if self.corrector_order == 0:
            return super().declared_order()
        return min(self.formula_order(), 2 if self.lower_order_final else 3)

    def tau(self, sigma: float) -> float:
        return self.eta if self.tau_sigma_min <= sigma <= self.tau_sigma_max else 0.0

    def update(self, x_s: Tensor, ds: list[Tensor], nodes: list[float], lam_s: float, lam_t: float, tau: float,
               z, predictor: bool) -> Tensor:
        """x_t from x_s with D values ``ds`` (newest first) at lambdas ``nodes`` (Eq. 14 / 15).  Order 2 adds, as
        diffusers, with k = 1 + tau^2, k [h^2/2 - (k h - 1 + e^{-k h}) / k^2] / (lambda_i - lambda_{i-1})
        (D_i - D_{i-1}) (predictor) or k [h/2 - (k h - 1 + e^{-k h}) / (k^2 h)] (D_t - D_i) (corrector).
        """
        k, h = 1 + tau * tau, lam_t - lam_s
        w = exponential_lagrange_weights(nodes, lam_s, lam_t, k)
        if len(ds) == 2:  # the order-2 correction of the module docstring
            if predictor:
                delta = k * (h * h / 2 - (k * h + math.expm1(-k * h)) / k**2) / (nodes[0] - nodes[1])
            else:
                delta = k * (h / 2 - (k * h + math.expm1(-k * h)) / (k**2 * h))
            w[0], w[1] = w[0] + delta, w[1] - delta
        x_t = x_s * (math.exp(-tau * tau * h - h)) + sum(wj * dj for wj, dj in zip(w, ds))
        if z is not None:
            x_t = x_t + z * (self.s_noise * math.exp(-lam_t) * math.sqrt(-math.expm1(-2 * tau * tau * h)))
        return x_t

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma, steps = ctx.sigma, ctx.grid.steps
        lam = [-math.log(v) if v > 0 else math.inf for v in sigma]
        ds: list[Tensor] = []
        keep = max(self.order, self.corrector_order)
        x_prev = z_prev = None
        corrector = 0
        for i in range(steps):
            d = ctx.denoise(x, sigma[i])
            if corrector:  # SA-Corrector of step i - 1 -> i, with D_i made at the predicted x_i
                hist = [d] + ds[::-1][:corrector - 1]
                x = self.update(x_prev, hist, lam[i - corrector + 1:i + 1][::-1], lam[i - 1], lam[i],
                                self.tau(sigma[i - 1]), z_prev, predictor=False)
            ds = (ds + [d])[-keep:]
            if sigma[i + 1] == 0:
                x = d
                break
            p = self.step_order(i, steps)
            corrector = min(self.corrector_order, i + 2, steps - i + 1 if self.lower_order_final else 4)
            tau = self.tau(sigma[i])
            z = ctx.randn_like(x) if self.stochastic else None
            x_prev, z_prev = x, z
            x = self.update(x, ds[::-1][:p], lam[i - p + 1:i + 1][::-1], lam[i], lam[i + 1], tau, z, predictor=True)
        return self.finish(ctx, x)
