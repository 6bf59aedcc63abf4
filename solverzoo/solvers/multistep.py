"""Linear multistep solvers of the probability-flow ODE dx/dsigma = eps = (x - D(x; sigma)) / sigma
(Karras et al. 2022, Eq. 4): LMS (k-diffusion), DEIS (Zhang & Chen 2023), iPNDM (Zhang & Chen 2023;
Zhou et al. 2024) and UniPC (Zhao et al. 2023), on :class:`~solverzoo.solvers.blocks.Multistep`
(order schedule, warm-up, ``lower_order_final``, ``denoise_to_zero``; one call per step).

Adams-Bashforth in sigma (LMS, DEIS): eps at the last p nodes is interpolated by a Lagrange
polynomial, in sigma (LMS) or in log sigma (DEIS's log-rho form), and integrated exactly over the step,
x_{i+1} = x_i + sum_j w_ij eps_{i-j}, w_ij = int_{sigma_i}^{sigma_{i+1}} l_j dsigma
(``blocks.lagrange_weights``, closed form, once per run).  A step to sigma = 0 is x = D(x; sigma_i) in
every solver written in lambda (their higher-order terms divide by h = inf).
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from .base import Context, SolverInfo, register
from .blocks import Multistep, ab_weights, lagrange_weights, phi, warmup_note

__all__ = ["LMS", "DEIS", "UniPC", "IPNDM", "IPNDMV", "ipndm_v_weights"]

LMS_REF = "Crowson, k-diffusion sample_lms (linear multistep / Adams-Bashforth in sigma, Lagrange coefficients)"
DEIS_REF = ("Zhang & Chen 2023, Fast Sampling of Diffusion Models with Exponential Integrator (ICLR), "
            "rho-AB-DEIS, Eq. 15 with log-rho Lagrange interpolation (diffusers DEISMultistepScheduler)")
IPNDM_REF = ("Zhang & Chen 2023, Fast Sampling of Diffusion Models with Exponential Integrator (ICLR), iPNDM "
             "(Sec. 5 / App. B: PNDM's linear multistep with lower-order warm-up, no Runge-Kutta start); "
             "Zhou et al. 2024, Fast ODE-based Sampling for Diffusion Models in Around 5 Steps (CVPR), "
             "zju-pi/diff-sampler ipndm")
IPNDM_V_REF = ("Zhou et al. 2024, Fast ODE-based Sampling for Diffusion Models in Around 5 Steps (CVPR), "
               "zju-pi/diff-sampler ipndm_v (variable-step Adams-Bashforth)")
UNIPC_REF = ("Zhao et al. 2023, UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of "
             "Diffusion Models (NeurIPS), Algorithms 2-3 (UniP-p, UniC-p, B(h) variants bh1/bh2)")


# --- Adams-Bashforth in sigma: LMS and DEIS ----------------------------------------------------------


class _SigmaAdams(Multistep):
    """x_{i+1} = x_i + sum_j w_ij eps_{i-j} with the Lagrange weights of ``blocks.lagrange_weights``."""

    log_interpolation = False
    zero_step_first_order = False

    def coefficients(self, sigma: list[float], steps: int) -> list[list[float]]:
        out = []
        for i in range(steps):
            if sigma[i + 1] == 0 and self.zero_step_first_order:
                out.append([])  # x = D
                continue
            p = self.step_order(i, steps)
            nodes = sigma[i - p + 1:i + 1][::-1]
            out.append(lagrange_weights(nodes, sigma[i], sigma[i + 1], log=self.log_interpolation))
        return out

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma, steps = ctx.sigma, ctx.grid.steps
        weights = self.coefficients(sigma, steps)  # once per run, outside the loop
        eps: list[Tensor] = []
        for i in range(steps):
            d = ctx.denoise(x, sigma[i])
            if not weights[i]:
                x = d
                break
            eps = (eps + [(x - d) / sigma[i]])[-self.order:]
            if i < self.warmup_steps():
                x = self.warmup_step(ctx, x, d, i)
                continue
            x = x + sum(w * e for w, e in zip(weights[i], reversed(eps)))
        return self.finish(ctx, x)


@register
class LMS(_SigmaAdams):
    """Linear multistep (Adams-Bashforth) on dx/dsigma = eps, variable step (k-diffusion
    ``sample_lms``; Karras et al. 2022's ODE, Eq. 4):

        x_{i+1} = x_i + sum_{j<p} eps_{i-j} int_{sigma_i}^{sigma_{i+1}} prod_{k != j} (s - sigma_{i-k})
                                                                      / (sigma_{i-j} - sigma_{i-k}) ds

    p = min(order, i + 1), order <= 4 (default 4, as k-diffusion).  The step to sigma = 0 is a full-order
    step (the polynomial integrates to 0 without trouble).  k-diffusion integrates with
    scipy.integrate.quad; the integrand is a polynomial, integrated here in closed form.
    """

    info = SolverInfo(name="lms", family="k-diffusion", kind="ode", order=2, calls_per_step=1,
                      paper=LMS_REF, grid="karras", order_note=warmup_note(4))
    max_order = 4
    defaults = {"order": 4}
    pinned = {"lower_order_final": False}


@register
class DEIS(_SigmaAdams):
    """DEIS, rho-AB with log-rho interpolation (Zhang & Chen 2023, Eq. 15; diffusers
    ``DEISMultistepScheduler``, ``solver_type="logrho"``): on x_hat = x / alpha against rho = sigma,

        x_{i+1} = x_i + sum_{j<p} eps_{i-j} int_{sigma_i}^{sigma_{i+1}} l_j(log s) ds,

    l_j the Lagrange basis on log sigma_{i}, ..., log sigma_{i-p+1}; p = min(order, i + 1) and, with
    ``lower_order_final`` (default, as diffusers), min(., N - i).  Order 1 is DDIM.  diffusers writes
    the order-2/3 integrals as closed forms (``ind_fn``); here they come from :func:`lagrange_weights`.
    A step to sigma = 0 is x = D (diffusers has no such step: its grid ends at sigma_min, and its
    lower_order_final applies below 15 steps only; pass lower_order_final=False to match it above).
    """

    info = SolverInfo(name="deis", family="deis", kind="ode", order=2, calls_per_step=1, paper=DEIS_REF,
                      order_note=warmup_note(3))
    log_interpolation = True
    zero_step_first_order = True
    defaults = {"order": 3}


# --- UniPC ---------------------------------------------------------------------------------------------


@register
class UniPC(Multistep):
    """UniPC (Zhao et al. 2023, Algorithms 2-3), data prediction, on x_hat against lambda = -log sigma.
    Predictor UniP-p from sigma_s to sigma_t, h = lambda_t - lambda_s, r_k = (lambda_{i-k} - lambda_i) / h,
    D1_k = (D_{i-k} - D_i) / r_k (k < p); corrector UniC-p with the new D_t (the next step's call):

        x_t   = (sigma_t / sigma_s) x_s + (1 - e^{-h}) D_i - B(h) sum_{k<p} rho_k D1_k
        x_t^c = (sigma_t / sigma_s) x_s + (1 - e^{-h}) D_i - B(h) [sum_{k<p} rho^c_k D1_k + rho^c_p (D_t - D_i)]

    B(h) = -h ("bh1") or e^{-h} - 1 ("bh2"); rho solves R rho = b, R_{mk} = r_k^{m-1} (r_p = 1),
    b_m = m! (-h) phi_{m+1}(-h) / B(h) (p = 2 predictor, p = 1 corrector: rho = 1/2, as the code).  No
    corrector after the last step; the next step keeps D_t made at the predicted x_t.  Order p + 1 with
    the corrector.  A step to sigma = 0 is x = D_i (diffusers' bh1 gives NaN there: B(h) = -inf times 0).
    Parity: diffusers ``UniPCMultistepScheduler`` (tests/test_parity.py).
    """

    info = SolverInfo(name="unipc", family="unipc", kind="ode", order=3, calls_per_step=1, paper=UNIPC_REF)
    pinned = {"warmup": "lower"}

    def __init__(self, variant: str = "bh2", corrector: bool = True, **base):
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"unipc variant must be 'bh1' or 'bh2', got {variant!r}")
        self.variant, self.corrector = variant, bool(corrector)
        super().__init__(**base)

    def formula_order(self) -> int:
        return self.order + int(self.corrector)

    def declared_order(self) -> int:
        """UniC-1 lifts the first (Euler) step to local O(h^3): order min(p + 1, 3) with the corrector;
        the uncorrected last step of lower_order_final is Euler: 2."""
        if self.lower_order_final:
            return min(self.formula_order(), 2)
        return min(self.formula_order(), 3 if self.corrector else 2)

    def _rhos(self, h: float, r: list[float], p: int, predictor: bool) -> list[float]:
        """rho for UniP-p (predictor, p - 1 values) or UniC-p (p values); r = [r_1..r_{p-1}]."""
        if predictor and p == 2 or not predictor and p == 1:
            return [0.5]
        if predictor and p == 1:
            return []
        hh = -h
        b_h = hh if self.variant == "bh1" else math.expm1(hh)
        nodes = r + [1.0]
        b = [math.factorial(m) * hh * phi(m + 1, hh) / b_h for m in range(1, p + 1)]
        R = [[rk ** (m - 1) for rk in nodes] for m in range(1, p + 1)]
        n = p - 1 if predictor else p
        return np.linalg.solve(np.array(R)[:n, :n], np.array(b[:n])).tolist()

    def _update(self, x_s: Tensor, d_s: Tensor, hist: list[Tensor], r: list[float], s: float, t: float,
                rhos: list[float], d_t: Tensor | None = None) -> Tensor:
        h = math.log(s / t)
        b_h = -h if self.variant == "bh1" else math.expm1(-h)
        out = (t / s) * x_s - math.expm1(-h) * d_s
        terms = [rho * (dk - d_s) / rk for rho, dk, rk in zip(rhos, hist, r)]
        if d_t is not None:
            terms.append(rhos[-1] * (d_t - d_s))
        if terms:
            out = out - b_h * sum(terms)
        return out

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma, steps = ctx.sigma, ctx.grid.steps
        lam = [-math.log(v) if v > 0 else math.inf for v in sigma]
        ds: list[Tensor] = []
        x_prev = None
        prev_order = 0
        for i in range(steps):
            d = ctx.denoise(x, sigma[i])
            if self.corrector and i > 0:  # UniC-p for the step (i-1) -> i
                p = prev_order
                h = lam[i] - lam[i - 1]
                r = [(lam[i - 1 - k] - lam[i - 1]) / h for k in range(1, p)]
                hist = [ds[-1 - k] for k in range(1, p)]
                x = self._update(x_prev, ds[-1], hist, r, sigma[i - 1], sigma[i], self._rhos(h, r, p, False), d_t=d)
            ds = (ds + [d])[-self.order:]
            if sigma[i + 1] == 0:
                x = d
                break
            p = self.step_order(i, steps)
            h = lam[i + 1] - lam[i]
            r = [(lam[i - k] - lam[i]) / h for k in range(1, p)]
            hist = [ds[-1 - k] for k in range(1, p)]
            x_prev, prev_order = x, p
            x = self._update(x, d, hist, r, sigma[i], sigma[i + 1], self._rhos(h, r, p, True))
        return self.finish(ctx, x)


# --- iPNDM: Adams-Bashforth on dx/dsigma = eps with constant-step or variable-step weights ------------------


def ipndm_v_weights(h: float, past: list[float]) -> list[float]:
    """Weights c on eps_i, eps_{i-1}, ... of ``ipndm_v``'s x_{i+1} = x_i + h sum_j c_j eps_{i-j} (Zhou et al.
    2024, zju-pi/diff-sampler ``ipndm_v``), h = sigma_{i+1} - sigma_i, past = [sigma_i - sigma_{i-1}, ...]
    (p - 1 of them for order p).  Order 2 is the variable-step AB2 (1 + r/2, -r/2, r = h / h_1); orders 3
    and 4 add a nabla^2 and b nabla^3 in divided-difference form with the reference's factors
    a = (1 - h^2 (h + h_1) / (3 (h + h_1) h_1 (h_1 + h_2))) / 2 and
    b = [(1 - h / (3 (h + h_1))) / 2 + (1 - h / (2 (h + h_1))) h / (6 (h + h_1 + h_2))] prod_k (H_k / H'_k)
    (H_k = h + h_1 + .. + h_{k-1}, H'_k = h_1 + .. + h_k).  Order 3 is AB3 on constant steps; order 4 is
    not AB4 (b = 11/24 where AB4 has 3/8) and its weights do not sum to 1 on uneven steps.
    """
    p = len(past) + 1
    if p == 1:
        return [1.0]
    r = h / past[0]
    weights = [1 + r / 2, -r / 2]
    if p == 2:
        return weights
    h1, h2 = past[0], past[1]
    q1 = h1 / h2  # nabla^2 on the past nodes: (e_i - e_{i-1}) - (h_1/h_2)(e_{i-1} - e_{i-2})
    a = (1 - h / (3 * (h + h1)) * (h * (h + h1)) / (h1 * (h1 + h2))) / 2
    weights = [weights[0] + a, weights[1] - (1 + q1) * a, a * q1]
    if p == 3:
        return weights
    h3 = past[2]
    big = h1 * (h1 + h2) / (h2 * (h2 + h3))
    b = (((1 - h / (3 * (h + h1))) / 2 + (1 - h / (2 * (h + h1))) * h / (6 * (h + h1 + h2)))
         * (h * (h + h1) * (h + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3)))
    return [weights[0] + b, weights[1] - (1 + q1 + big) * b, weights[2] + (q1 + big * (1 + h2 / h3)) * b,
            -b * big * q1]


class _IPNDMBase(Multistep):
    """x_{i+1} = x_i + (sigma_{i+1} - sigma_i) sum_j c_j eps_{i-j},  eps = (x - D) / sigma, orders up to 4,
    warm-up min(order, i + 1); no lower_order_final (the code's).  A step to sigma = 0 is an ordinary
    step (diff-sampler stops at sigma_min: pass final="sigma_min").  NFE = N."""

    max_order = 4
    defaults = {"order": 4}
    pinned = {"lower_order_final": False}

    def weights(self, sigma: list[float], i: int, p: int) -> list[float]:
        raise NotImplementedError

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma = ctx.sigma
        eps: list[Tensor] = []
        for i in range(ctx.grid.steps):
            d = ctx.denoise(x, sigma[i])
            eps = (eps + [(x - d) / sigma[i]])[-self.order:]
            if i < self.warmup_steps():
                x = self.warmup_step(ctx, x, d, i)
                continue
            c = self.weights(sigma, i, len(eps))
            x = x + (sigma[i + 1] - sigma[i]) * sum(w * e for w, e in zip(c, reversed(eps)))
        return self.finish(ctx, x)


@register
class IPNDM(_IPNDMBase):
    """iPNDM (Zhang & Chen 2023, DEIS paper's improved PNDM; Zhou et al. 2024's ``ipndm``): constant-step
    Adams-Bashforth on the probability-flow ODE dx/dsigma = eps (Karras et al. 2022, Eq. 4),

        x_{i+1} = x_i + (sigma_{i+1} - sigma_i) sum_{j<p} b_j eps_{i-j},  b = AB-p: (1), (3, -1)/2,
        (23, -16, 5)/12, (55, -59, 37, -9)/24,  p = min(order, i + 1)

    (``blocks.ab_weights``).  PLMS-k without its Runge-Kutta start; ``plms_hb`` with beta = 1 bit for bit.
    Order: the constant-step weights are second-order consistent on a non-uniform grid (``momentum``
    module docstring), so 2 on the Karras grid whatever the start; k on a grid uniform in sigma with
    ``warmup="rk"``.  NFE = N.
    """

    info = SolverInfo(name="ipndm", family="ipndm", kind="ode", order=2, calls_per_step=1, paper=IPNDM_REF,
                      grid="karras", order_note="4 with warmup='rk' on a grid uniform in sigma; constant-step "
                                                "weights on the Karras grid bound it at 2", in_default_bench=False)

    def declared_order(self) -> int:
        return min(super().declared_order(), 2)

    def weights(self, sigma: list[float], i: int, p: int) -> list[float]:
        return ab_weights(p)


@register
class IPNDMV(_IPNDMBase):
    """iPNDM with variable steps (Zhou et al. 2024, zju-pi/diff-sampler ``ipndm_v``): the iPNDM update with
    the step-size-aware weights of :func:`ipndm_v_weights`,

        x_{i+1} = x_i + h sum_{j<p} c_j(h, h_1, .., h_{p-1}) eps_{i-j},   h_k = sigma_{i-k+1} - sigma_{i-k}.

    Order 2 with the default first-order start; ``warmup="rk"`` with ``order=3`` reaches 3.  The
    reference's order-4 weights (the default, reproduced as published) are second-order consistent on the
    Karras grid and gain nothing from the rk start: declared 2.  NFE = N.
    """

    info = SolverInfo(name="ipndm_v", family="ipndm", kind="ode", order=2, calls_per_step=1, paper=IPNDM_V_REF,
                      grid="karras", order_note="3 with warmup='rk' and order=3; the first-order start bounds it at "
                                                "2, and the reference's order-4 weights are not AB4 (nabla^3 weight "
                                                "11/24, not 3/8)", in_default_bench=False)

    def declared_order(self) -> int:
        return min(super().declared_order(), 3 if self.order <= 3 else 2)

    def weights(self, sigma: list[float], i: int, p: int) -> list[float]:
        return ipndm_v_weights(sigma[i + 1] - sigma[i], [sigma[i - k] - sigma[i - k - 1] for k in range(p - 1)])
