"""SEEDS, stochastic exponential derivative-free solvers (Gonzalez et al. 2023, "SEEDS: Exponential SDE
Solvers for Fast High-Quality Sampling from Diffusion Models", NeurIPS; code nfsrules/SEEDS
``seeds_lib/methods/etd_serk.py``), and their noise-free counterparts ETD-ERK (DPM-Solver(++)-1/2/3).

On x_hat against lambda = -log sigma the reverse SDE (kappa = 2) and the probability-flow ODE (kappa = 1)
read dx = kappa (D - x) dlambda [+ sqrt(2) sigma dW] (Karras et al. 2022, Eq. 4 and 6).  Variation of
constants and a Taylor expansion of F = D (data prediction) or eps (noise prediction) give the stages
x_u = decay(u) x_s + f_weight(u) F_s + df_weight(u) F' + N_u, with F' replaced by stage differences at
c = 1/2 (order 2) or 1/3, 2/3 (order 3): :class:`~solverzoo.solvers.blocks.ExponentialStages`.  The noises
N_2, N_3, N_t are integrals of one Brownian path, drawn with their exact joint covariance
(``blocks.noise_chain``).  Where the official code differs, and the orders: docs/solver-notes.md.
As the official sampler, the grid ends at sigma_min (final='sigma_min', NFE = stages x steps); with
final='zero' the last step is the denoise x = D (NFE = stages x (steps - 1) + 1).
"""

from __future__ import annotations

from .base import SolverInfo, register
from .blocks import ExponentialRK

__all__ = ["SEEDS1", "SEEDS2", "SEEDS3", "ETDERK"]

SEEDS = ("Gonzalez et al. 2023, SEEDS: Exponential SDE Solvers for Fast High-Quality Sampling from "
         "Diffusion Models (NeurIPS)")


def _seeds_info(order: int) -> SolverInfo:
    return SolverInfo(
        name=f"seeds{order}", family="seeds", kind="sde", order=order, calls_per_step=order,
        paper=SEEDS + f", SEEDS-{order} (exponential integrator of the reverse SDE, data/noise prediction)",
        grid="karras", final="sigma_min", zero_step_calls=1, preconditioning=frozenset({"noise"}),
    )


@register
class SEEDS1(ExponentialRK):
    """SEEDS-1 (Gonzalez et al. 2023), data prediction (default), sigma_s -> sigma_t, xi ~ N(0, I):

        x_t = (sigma_t/sigma_s)^2 x + (1 - (sigma_t/sigma_s)^2) D(x; sigma_s) + sigma_t sqrt(1 - (sigma_t/sigma_s)^2) xi

    (= DPM-Solver++(1)-SDE = DDIM eta = 1 = Euler ancestral eta = 1).
    Noise prediction: x_t = x - 2 (sigma_s - sigma_t) eps(x; sigma_s) + sqrt(sigma_s^2 - sigma_t^2) xi.
    """

    info = _seeds_info(1)

    def step(self, ctx, x, s, t):
        return self.step1(ctx, x, s, t)


@register
class SEEDS2(ExponentialRK):
    """SEEDS-2 (Gonzalez et al. 2023): one stage at lambda_s + c2 h (default c2 = 1/2), data prediction:

        x_2 = e^{-2 c2 h} x + (1 - e^{-2 c2 h}) D_s + N_2
        x_t = e^{-2h} x + (1 - e^{-2h}) [D_s + (D_2 - D_s) / (2 c2)] + N_t

    N_2, N_t: one Brownian path, exact for every c2 in (0, 1].
    """

    info = _seeds_info(2)

    def __init__(self, c2: float = 0.5, **base):
        super().__init__(**base)
        if not 0 < c2 <= 1:
            raise ValueError(f"c2 must be in (0, 1], got {c2}")
        self.c2 = float(c2)

    def step(self, ctx, x, s, t):
        return self.step2(ctx, x, s, t, self.c2)


@register
class SEEDS3(ExponentialRK):
    """SEEDS-3 (Gonzalez et al. 2023): stages at lambda_s + h/3 and lambda_s + 2h/3, data prediction
    (g(u) = 1 + (e^{-2u} - 1) / (2u)):

        x_2 = e^{-2h/3} x + (1 - e^{-2h/3}) D_s + N_2
        x_3 = e^{-4h/3} x + (1 - e^{-4h/3}) D_s + 2 g(2h/3) (D_2 - D_s) + N_3
        x_t = e^{-2h} x + (1 - e^{-2h}) D_s + 1.5 g(h) (D_3 - D_s) + N_t
    """

    info = _seeds_info(3)

    def step(self, ctx, x, s, t):
        return self.step3(ctx, x, s, t)


@register
class ETDERK(ExponentialRK):
    """ETD-ERK (Gonzalez et al. 2023's noise-free exponential Runge-Kutta schemes): the SEEDS stages on the
    probability-flow ODE (kappa = 1, no noise).  ``order`` 1, 2 (c2 = 1/2) or 3 (1/3, 2/3); data prediction
    = DPM-Solver++(1/2S/3S), noise prediction = DPM-Solver-1/2/3 (Lu et al. 2022, Algorithms 1-2).  Order 1
    is DDIM, on x_hat against sigma Euler: x_t = (sigma_t/sigma_s) x + (1 - sigma_t/sigma_s) D_s.
    NFE = order x steps.
    """

    info = SolverInfo(
        name="etd_erk", family="seeds", kind="ode", order=3, calls_per_step=3,
        paper=SEEDS + ", ETD-ERK (exponential Runge-Kutta on the probability-flow ODE)",
        grid="karras", final="sigma_min", zero_step_calls=1,
    )
    kappa = 1

    def __init__(self, order: int = 3, **base):
        if order not in (1, 2, 3):
            raise ValueError(f"etd_erk order must be 1, 2 or 3, got {order!r}")
        super().__init__(**base)
        self.order = int(order)

    def info_changes(self) -> dict:
        return {"order": self.order, "calls_per_step": self.order}

    def step(self, ctx, x, s, t):
        return (self.step1, self.step2, self.step3)[self.order - 1](ctx, x, s, t)
