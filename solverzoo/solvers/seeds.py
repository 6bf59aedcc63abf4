"""SEEDS, stochastic exponential derivative-free solvers (Gonzalez et al. 2023, "SEEDS:
Exponential SDE Solvers for Fast High-Quality Sampling from Diffusion Models", NeurIPS;
code nfsrules/SEEDS ``seeds_lib/methods/etd_serk.py``), and their noise-free counterparts
ETD-ERK (exponential Runge-Kutta: DPM-Solver(++)-1/2/3 single-step).

Frame.  On x_hat against the half log-SNR lambda = -log sigma (h = lambda_t - lambda_s > 0
from sigma_s to sigma_t < sigma_s), the reverse SDE (Karras et al. 2022, Eq. 6 with
beta = sigma'/sigma, i.e. score_sde's reverse SDE) and the probability-flow ODE are

    SDE:  dx = 2 (D - x) dlambda + sqrt(2) sigma dW      (kappa = 2)
    ODE:  dx =   (D - x) dlambda                         (kappa = 1)

with D = D(x; sigma).  Variation of constants over [lambda_s, lambda_s + u], u = c h:

    data prediction (F = D):
        x_u = e^{-kappa u} x_s + kappa int_0^u e^{-kappa (u - r)} D(lambda_s + r) dr + N_u
    noise prediction (F = eps = (x - D) / sigma, so D - x = -sigma eps):
        x_u = x_s - kappa int_0^u sigma(lambda_s + r) eps(lambda_s + r) dr + N_u

and the Taylor expansion F(lambda_s + r) = F_s + r F' + ... integrates exactly to

    x_u = L(u) x_s + phi1(u) F_s + phi2(u) F' + N_u,
        data:  L = e^{-kappa u},  phi1 = 1 - e^{-kappa u},     phi2 = u - (1 - e^{-kappa u}) / kappa
        noise: L = 1,             phi1 = -kappa sigma_u (e^u - 1), phi2 = -kappa sigma_u (e^u - 1 - u)

(for the SDE in data prediction L = (sigma_u/sigma_s)^2, phi1 = 1 - (sigma_u/sigma_s)^2).
The derivative-free schemes replace F' by (F_c - F_s) / (c h) with F_c the model output at an
intermediate stage c; stages are uniform in lambda inside each step:

    order 1:  x_t = L(h) x + phi1(h) F_s + N_t
    order 2 (stage c2, default 1/2):
              x_2 = L(c2 h) x + phi1(c2 h) F_s + N_2
              x_t = L(h) x + phi1(h) F_s + phi1(h) / (2 c2) (F_2 - F_s) + N_t
              (phi1/2 in place of phi2/h: DPM-Solver-2's form, the official '2a'; with c2 = 1/2
              the data-prediction final is x_t = L x + phi1 D_2: D at the midpoint)
    order 3 (stages c2 = 1/3, c3 = 2/3):
              x_2 = L(c2 h) x + phi1(c2 h) F_s + N_2
              x_3 = L(c3 h) x + phi1(c3 h) F_s + phi2(c3 h) / (c2 h) (F_2 - F_s) + N_3
              x_t = L(h) x + phi1(h) F_s + phi2(h) / (c3 h) (F_3 - F_s) + N_t

In data prediction phi2(u) / u = 1 + (e^{-kappa u} - 1) / (kappa u), so the SDE coefficients are
(c3/c2) [1 + (e^{-2 c3 h} - 1) / (2 c3 h)] on (D_2 - D_s) and 1.5 [1 + (e^{-2h} - 1) / (2h)] on
(D_3 - D_s).  SEEDS-1 in data prediction is DPM-Solver++(1)-SDE = DDIM with eta = 1 = Euler
ancestral with eta = 1.  With kappa = 1 and no noise the schemes are DPM-Solver++(1/2S/3S)
(data) and DPM-Solver-1/2/3 (noise).

Noise: one Brownian path.  The stochastic term of the exact solution is, per prediction,

    data:  N_u = int_{lambda_s}^{lambda_u} e^{-2 (lambda_u - tau)} sqrt(2) e^{-tau} dW_tau,
           Var = sigma_u^2 (1 - e^{-2u});
    noise: N_u = int_{lambda_s}^{lambda_u} sqrt(2) e^{-tau} dW_tau,  Var = sigma_s^2 - sigma_u^2.

The stage noises N_2, N_3 and the final N_t are integrals of the *same* path, so they are
correlated.  They are drawn as a running noise over the sub-intervals lambda_s < lambda_2 <
lambda_3 < lambda_t: N_j = a_j N_{j-1} + b_j xi_j with fresh xi_j ~ N(0, I) (``ctx.randn_like``,
so TDAS filters M compose: the path becomes M W) and

    data:  a_j = (sigma_j / sigma_{j-1})^2,  b_j = sigma_j sqrt(1 - (sigma_j / sigma_{j-1})^2)
    noise: a_j = 1,                          b_j = sqrt(sigma_{j-1}^2 - sigma_j^2),

which gives the exact joint covariance of (N_2, N_3, N_t).  ``blocks.noise_chain`` returns
these (a_j, b_j); the tests drive the solvers along a given fine Brownian path with it.
The schemes themselves are :class:`~solverzoo.solvers.blocks.ExponentialRK` (shared with
DPM-Solver++(2S)).

The official code differs here.  (1) Its second-order final noise N_t (data and noise
prediction) weights the stage draw and the fresh draw with the c2 <-> 1 - c2 mirror image of
the exact coefficients (data: e^{-c2 h} psi(1 - c2) and psi(c2) instead of e^{-(1-c2) h} psi(c2)
and psi(1 - c2), psi(c) = sqrt(1 - e^{-2ch})): the variance of N_t is right, its correlation
with N_2 is right only at c2 = 1/2.  (2) Its noise-prediction third-order stage noise N_3 is
scaled by sigma_t instead of sigma_3 (too small by e^{(1-c3) h}), and N_t swaps the weights of
the first two draws.  (3) Its data-prediction third-order stage uses (c3/c2) [1 + (e^{-2 c2 h}
- 1) / (c2 h)], which tends to -c3/c2 as h -> 0, where (c3/c2) [1 + (e^{-2 c3 h} - 1) / (2 c3
h)] = O(h) is due: an O(h) error in x_3 that lowers the scheme to order 1.  tests/test_seeds.py
measures (1)-(2) against the covariance of the path (by quadrature) and (3) as an order drop.

Orders (measured in tests/test_seeds.py): with the noise off, SEEDS-k integrates the drift with
order k (``info.order``); in law (exact output variance on a Gaussian model) data-prediction
SEEDS-1/2/3 converge with order 1, 2, 2; pathwise (strong, on one fixed Brownian path) all three
have order 1, the most a scheme that sees the path only at finitely many points per step can
have (Clark-Cameron); more stages lower the constant.

Last step.  The official sampler appends sigma = 0 to its Karras grid and skips the last
interval (``x_t = x``): it returns the state at sigma_min (0.002) with no final denoise, so
N Karras nodes give N - 1 steps of ``order`` calls.  The default here is the same:
final='sigma_min', the grid ends at sigma_min and NFE = stages x steps, counted.  With
final='zero' the step from sigma_min to 0 (h = inf) is one denoise x = D(x; sigma_min), the
h -> inf limit of every scheme above, and NFE = stages x (steps - 1) + 1.
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
    """SEEDS-1 (Gonzalez et al. 2023): one exact-in-the-linear-part step of the reverse SDE.

    Data prediction (default), sigma_s -> sigma_t, xi ~ N(0, I):
        x_t = (sigma_t/sigma_s)^2 x + (1 - (sigma_t/sigma_s)^2) D(x; sigma_s)
              + sigma_t sqrt(1 - (sigma_t/sigma_s)^2) xi
    (= DPM-Solver++(1)-SDE = DDIM eta = 1 = Euler ancestral eta = 1).
    Noise prediction: x_t = x - 2 (sigma_s - sigma_t) eps(x; sigma_s) + sqrt(sigma_s^2 - sigma_t^2) xi.
    """

    info = _seeds_info(1)

    def step(self, ctx, x, s, t):
        return self.step1(ctx, x, s, t)


@register
class SEEDS2(ExponentialRK):
    """SEEDS-2 (Gonzalez et al. 2023): one stage at lambda_s + c2 h (default c2 = 1/2), data
    prediction:

        x_2 = e^{-2 c2 h} x + (1 - e^{-2 c2 h}) D_s + N_2
        x_t = e^{-2h} x + (1 - e^{-2h}) [D_s + (D_2 - D_s) / (2 c2)] + N_t

    N_2, N_t: one Brownian path (module docstring), exact for every c2 in (0, 1].
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
    """SEEDS-3 (Gonzalez et al. 2023): stages at lambda_s + h/3 and lambda_s + 2h/3, data
    prediction (phi(u) = 1 + (e^{-2u} - 1) / (2u)):

        x_2 = e^{-2h/3} x + (1 - e^{-2h/3}) D_s + N_2
        x_3 = e^{-4h/3} x + (1 - e^{-4h/3}) D_s + 2 phi(2h/3) (D_2 - D_s) + N_3
        x_t = e^{-2h} x + (1 - e^{-2h}) D_s + 1.5 phi(h) (D_3 - D_s) + N_t
    """

    info = _seeds_info(3)

    def step(self, ctx, x, s, t):
        return self.step3(ctx, x, s, t)


@register
class ETDERK(ExponentialRK):
    """ETD-ERK (Gonzalez et al. 2023's noise-free exponential Runge-Kutta schemes): the SEEDS
    stage structure on the probability-flow ODE, e^{-h} in place of e^{-2h} and no noise.
    ``order`` 1, 2 (c2 = 1/2) or 3 (1/3, 2/3); data prediction = DPM-Solver++(1/2S/3S),
    noise prediction = DPM-Solver-1/2/3 (Lu et al. 2022).  Order 1 is DDIM, which on
    x_hat against sigma is Euler: x_t = (sigma_t/sigma_s) x + (1 - sigma_t/sigma_s) D_s.
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
