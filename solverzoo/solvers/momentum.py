"""Momentum samplers of Wizadwongsa et al. 2023, "Diffusion Sampling with Momentum for Mitigating
Divergence Artifacts" (ICCV; code sWizad/momentum-diffusion, ``momentum_scheduler.py``), on x_hat
against sigma with f = eps = (x - D)/sigma and delta = sigma_{n+1} - sigma_n (the code's
``del_g * update_val``, g = sigma).

Heavy ball (HB, Sec. 4.1, Eq. 13-14) on a multistep method x_{n+1} = x_n + delta sum_i b_i f_{n-i}:
v_{n+1} = (1 - beta) v_n + beta sum_i b_i f_{n-i}, x_{n+1} = x_n + delta v_{n+1} (v_0 = f_0); beta = 1
is the method, beta < 1 first order with a larger stability region (their Theorem 1).
Generalised heavy ball (GHVB, Sec. 4.2, Eq. 15-19): the velocity is damped before the Adams-Bashforth
differences are taken (:func:`ghvb_weights`), an order-k method for every beta.  (Their Eq. 19 prints
+ (2 - beta)/(2 beta) v_n; expanding Eq. 18 gives -, as the code does.)  The AB weights are the
constant-step ones, as in PLMS and the code, warm-up orders min(order, n + 1); a step to sigma = 0 is
an ordinary step.  NFE = N.
"""

from __future__ import annotations

import math

from torch import Tensor

from .base import Context, SolverInfo, register
from .blocks import Multistep, ab_weights, adams_gammas, expand_differences
from .dpm_solver import DPMPP2M

__all__ = ["PLMSHB", "GHVB", "DPMPP2MHB", "ghvb_weights"]

MOMENTUM = ("Wizadwongsa et al. 2023, Diffusion Sampling with Momentum for Mitigating Divergence Artifacts "
            "(ICCV)")


def ghvb_weights(k: int, beta: float) -> list[float]:
    """GHVB-k weights on v_{n+1}, v_n, ... (Eq. 18): (1/beta) sum_{j<k} a_j nabla^j with
    a_j = beta gamma_j + (1 - beta) gamma_{j-1} (gamma the Adams-Bashforth series, gamma_{-1} = 0).
    """
    g = adams_gammas(k)
    a = [beta * g[j] + (1 - beta) * (g[j - 1] if j > 0 else 0.0) for j in range(k)]
    return [w / beta for w in expand_differences(a)]


def check_beta(name: str, beta: float) -> None:
    if not 0 < beta <= 1:
        raise ValueError(f"{name} needs a damping coefficient 0 < beta <= 1, got {beta}")


class HeavyBall(Multistep):
    """Multistep solvers with a damped velocity (module docstring): ``beta`` in (0, 1], order up to 4,
    no lower_order_final and no final denoise (the paper's code)."""

    max_order = 4
    defaults = {"order": 4}
    pinned = {"lower_order_final": False, "denoise_to_zero": False}

    def __init__(self, beta: float = 0.8, **base):
        check_beta(self.name, beta)
        self.beta = float(beta)
        super().__init__(**base)

    def declared_order(self) -> int:
        """Constant-step weights are second-order consistent on a non-uniform grid (module docstring):
        order min(k, 2) on the default grids whatever the start; order k with ``warmup="rk"`` on a grid
        uniform in sigma (``grid_options={"rho": 1}``; tests/test_orders.py)."""
        return min(super().declared_order(), 2)


@register
class PLMSHB(HeavyBall):
    """PLMS-k (constant-step Adams-Bashforth on dx/dsigma = eps, Liu et al. 2022) with Polyak's heavy
    ball (Wizadwongsa et al. 2023, Eq. 14; the code's ``PLMSWithHBScheduler``):

        v_{n+1} = (1 - beta) v_n + beta sum_i b_i eps_{n-i},   x_{n+1} = x_n + (sigma_{n+1} - sigma_n) v_{n+1}

    b = AB-p weights, p = min(order, n + 1); v_0 = eps_0.  beta = 1 is PLMS-k (order k); beta < 1 is
    first order.  Defaults: PLMS4 with HB 0.8.  NFE = N.
    """

    info = SolverInfo(name="plms_hb", family="momentum", kind="ode", order=1, calls_per_step=1,
                      paper=MOMENTUM + ", Sec. 4.1, Eq. 14 (HB on PLMS)")

    def declared_order(self) -> int:
        return min(super().declared_order(), 2) if self.beta == 1 else 1

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma = ctx.sigma
        eps: list[Tensor] = []
        v = None
        for i in range(ctx.grid.steps):
            d = ctx.denoise(x, sigma[i])
            eps = (eps + [(x - d) / sigma[i]])[-self.order:]
            prime = sum(w * f for w, f in zip(ab_weights(len(eps)), reversed(eps)))
            v = prime if v is None else (1 - self.beta) * v + self.beta * prime
            x = self.warmup_step(ctx, x, d, i) if i < self.warmup_steps() else x + (sigma[i + 1] - sigma[i]) * v
        return x


@register
class GHVB(HeavyBall):
    """Generalised heavy ball GHVB (Wizadwongsa et al. 2023, Eq. 15-19; the code's ``GHVBScheduler``):

        v_{n+1} = (1 - beta) v_n + beta eps_n,    x_{n+1} = x_n + (sigma_{n+1} - sigma_n) sum_m c_m v_{n+1-m}

    c = :func:`ghvb_weights` (order p = min(order, n + 1)), v_0 = eps_0.  GHVB "k - 1 + beta" is
    ``order=k, beta=beta`` (default GHVB 3.8); AB-k (PLMS-k) at beta = 1.  Order k on constant steps (their
    Theorem 2); min(k, 2) as sampled here and in the code (the Euler start, constant-step weights on a
    non-uniform grid); k with ``warmup="rk"`` on a grid uniform in sigma (tests/test_orders.py).  NFE = N.
    """

    info = SolverInfo(name="ghvb", family="momentum", kind="ode", order=2, calls_per_step=1,
                      paper=MOMENTUM + ", Sec. 4.2, Eq. 15-19 (GHVB)",
                      order_note="4 (GHVB 3.8) with warmup='rk' on a grid uniform in sigma; constant-step weights on "
                                 "the Karras grid and the first-order start bound it at 2")

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma = ctx.sigma
        vs: list[Tensor] = []
        v = None
        for i in range(ctx.grid.steps):
            d = ctx.denoise(x, sigma[i])
            e = (x - d) / sigma[i]
            v = e if v is None else (1 - self.beta) * v + self.beta * e
            vs = (vs + [v])[-self.order:]
            if i < self.warmup_steps():
                x = self.warmup_step(ctx, x, d, i)
                continue
            x = x + (sigma[i + 1] - sigma[i]) * sum(
                c * u for c, u in zip(ghvb_weights(len(vs), self.beta), reversed(vs)))
        return x


@register
class DPMPP2MHB(DPMPP2M):
    """DPM-Solver++(2M) with heavy-ball momentum (Wizadwongsa et al. 2023, Sec. 4.1 applied to
    DPM-Solver++; the code's ``MomentumDPMSolverMultistepScheduler``, midpoint type):

        v = (1 - beta) v + beta [D_i + (D_i - D_{i-1}) / (2 r)],   x_t = (sigma_t / sigma_s) x + (1 - e^{-h}) v

    v starts at the first second-order combination; first-order steps (warm-up, lower_order_final, the step
    to zero) use D_i and leave v alone, as the code does.  beta = 1 is dpmpp_2m; beta < 1 is first order.
    NFE = N.
    """

    info = SolverInfo(name="dpmpp_2m_hb", family="momentum", kind="ode", order=1, calls_per_step=1,
                      paper=MOMENTUM + ", Sec. 4.1 (HB on DPM-Solver++(2M))", grid="karras")

    pinned = {"solver_type": "midpoint"}

    def __init__(self, beta: float = 0.8, **base):
        check_beta(self.name, beta)
        self.beta = float(beta)
        super().__init__(**base)

    def declared_order(self) -> int:
        return 2 if self.beta == 1 else 1

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma, steps = ctx.sigma, ctx.grid.steps
        d_old = h_old = v = None
        for i in range(steps):
            d = ctx.denoise(x, sigma[i])
            if sigma[i + 1] == 0:
                x = d
                break
            h = math.log(sigma[i] / sigma[i + 1])
            if self.step_order(i, steps) == 2:
                combined = d + 0.5 * (d - d_old) * (h / h_old)
                v = combined if v is None else (1 - self.beta) * v + self.beta * combined
                x = x * (sigma[i + 1] / sigma[i]) + -math.expm1(-h) * v
            else:
                x = x * (sigma[i + 1] / sigma[i]) + d * -math.expm1(-h)
            d_old, h_old = d, h
        return self.finish(ctx, x)
