"""Linear multistep solvers of the probability-flow ODE: LMS (k-diffusion), DEIS (Zhang & Chen
2023) and UniPC (Zhao et al. 2023), with the machinery every history-based solver here shares
(on :class:`~solverzoo.solvers.blocks.Multistep`, which ``dpm_solver`` and ``momentum`` share).

Frame.  On x_hat against sigma the probability-flow ODE is (Karras et al. 2022, Eq. 4)

    dx/dsigma = eps(x; sigma) = (x - D(x; sigma)) / sigma,

and in lambda = -log sigma (h = lambda_t - lambda_s) its exact data-prediction solution is

    x_t = (sigma_t / sigma_s) x_s + int_0^h e^{-(h - r)} D(lambda_s + r) dr.

Adams-Bashforth in sigma (LMS, DEIS): the derivatives eps_i of the last p nodes are
interpolated by a Lagrange polynomial, in sigma (LMS) or in log sigma (DEIS's "log-rho" form,
rho = sigma), and integrated exactly over the step:

    x_{i+1} = x_i + sum_j w_ij eps_{i-j},   w_ij = int_{sigma_i}^{sigma_{i+1}} l_j(phi(sigma)) dsigma.

The weights depend only on the grid: ``blocks.lagrange_weights`` integrates the basis polynomials in
closed form (in log sigma through int P(u) e^u du = e^u (P - P' + P'' - ...)), once per run,
outside the sampling loop.

Order schedule, ``lower_order_final``, ``denoise_to_zero`` and the budget (one call per step):
:class:`~solverzoo.solvers.blocks.Multistep`.  A step to sigma = 0 (lambda = inf) is the
first-order step x = D(x; sigma_i) in every solver whose coefficients are written in lambda
(their higher-order terms divide by h = inf).
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from .base import Context, SolverInfo, register
from .blocks import Multistep, lagrange_weights, phi, warmup_note

__all__ = ["LMS", "DEIS", "UniPC"]

LMS_REF = "Crowson, k-diffusion sample_lms (linear multistep / Adams-Bashforth in sigma, Lagrange coefficients)"
DEIS_REF = ("Zhang & Chen 2023, Fast Sampling of Diffusion Models with Exponential Integrator (ICLR), "
            "rho-AB-DEIS, Eq. 15 with log-rho Lagrange interpolation (diffusers DEISMultistepScheduler)")
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
            out.append(lagrange_weights(sigma[i - p + 1:i + 1][::-1], sigma[i], sigma[i + 1], log=self.log_interpolation))
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

        x_{i+1} = x_i + sum_{j<p} eps_{i-j} int_{sigma_i}^{sigma_{i+1}} prod_{k != j} (s - sigma_{i-k}) / (sigma_{i-j} - sigma_{i-k}) ds

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
    """UniPC (Zhao et al. 2023), data prediction, on x_hat against lambda = -log sigma.

    Predictor UniP-p from node i (sigma_s) to i+1 (sigma_t), h = lambda_t - lambda_s, history
    r_k = (lambda_{i-k} - lambda_i) / h, D1_k = (D_{i-k} - D_i) / r_k (k < p):

        x_t = (sigma_t / sigma_s) x_s + (1 - e^{-h}) D_i - B(h) sum_{k<p} rho_k D1_k

    Corrector UniC-p, at the start of the next step, with the new model value D_t (no extra call):

        x_t^c = (sigma_t / sigma_s) x_s + (1 - e^{-h}) D_i - B(h) [sum_{k<p} rho^c_k D1_k + rho^c_p (D_t - D_i)]

    B(h) = -h (``variant="bh1"``) or e^{-h} - 1 (``"bh2"``); rho solves R rho = b with R_{mk} = r_k^{m-1}
    (r_p = 1) and b_m = m! (-h) phi_{m+1}(-h) / B(h), m = 1..p (the predictor uses the first p - 1
    rows; p = 2 predictor and p = 1 corrector take rho = 1/2, as the paper's code and diffusers).
    The corrector is not applied after the last step (it would need a model call); the next step
    starts from x_t^c but keeps D_t, evaluated at the predicted x_t.  Order p + 1 with the
    corrector (``corrector=True``), p without.  A step to sigma = 0 is x = D_i.

    Parity: diffusers ``UniPCMultistepScheduler`` (predict_x0, lower_order_final: min(order, N - i) at
    every step count) to 1e-15 on its own sigmas.  There, ``solver_type="bh1"`` with
    ``final_sigmas_type="zero"`` returns NaN: the last step multiplies B(h) = -h = -inf by a zero
    residual; here that step is x = D.
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
