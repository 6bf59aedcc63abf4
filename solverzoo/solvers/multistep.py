"""Linear multistep solvers of the probability-flow ODE: LMS (k-diffusion), DEIS (Zhang & Chen
2023) and UniPC (Zhao et al. 2023), with the machinery every history-based solver here shares
(``dpm_solver`` and ``momentum`` build on it): the order schedule (warm-up, ``lower_order_final``),
the optional ``denoise_to_zero`` and the one-call-per-step budget.

Frame.  On x_hat against sigma the probability-flow ODE is (Karras et al. 2022, Eq. 4)

    dx/dsigma = eps(x; sigma) = (x - D(x; sigma)) / sigma,

and in lambda = -log sigma (h = lambda_t - lambda_s) its exact data-prediction solution is

    x_t = (sigma_t / sigma_s) x_s + int_0^h e^{-(h - r)} D(lambda_s + r) dr.

Adams-Bashforth in sigma (LMS, DEIS): the derivatives eps_i of the last p nodes are
interpolated by a Lagrange polynomial, in sigma (LMS) or in log sigma (DEIS's "log-rho" form,
rho = sigma), and integrated exactly over the step:

    x_{i+1} = x_i + sum_j w_ij eps_{i-j},   w_ij = int_{sigma_i}^{sigma_{i+1}} l_j(phi(sigma)) dsigma.

The weights depend only on the grid: :func:`lagrange_weights` integrates the basis polynomials in
closed form (in log sigma through int P(u) e^u du = e^u (P - P' + P'' - ...)), once per run,
outside the sampling loop.

Order schedule.  Step i (0-based, N steps) uses order min(order, i + 1) (warm-up from the
available history) and, with ``lower_order_final``, also min(., N - i): the last steps drop to
orders 2 and 1 (DPM-Solver's rule; DPM-Solver applies it only below 10 steps, diffusers'
DPMSolverMultistep and DEIS below 15, diffusers' UniPC always; here it applies whenever the option
is on).  A step to sigma = 0 (lambda = inf) is the first-order step x = D(x; sigma_i) in every
solver whose coefficients are written in lambda (their higher-order terms divide by h = inf).

Budget: one model call per step, plus one for ``denoise_to_zero`` (grids ending at sigma_min:
after the last step, x = D(x; sigma_min), DPM-Solver's option).  On a grid ending at zero the last
step already is that denoise, so the option is refused there.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import torch
from numpy.polynomial import Polynomial
from torch import Tensor

from .base import Context, Solver, SolverInfo, register

__all__ = ["LMS", "DEIS", "UniPC", "lagrange_weights", "phi", "Multistep"]

LMS_REF = "Crowson, k-diffusion sample_lms (linear multistep / Adams-Bashforth in sigma, Lagrange coefficients)"
DEIS_REF = ("Zhang & Chen 2023, Fast Sampling of Diffusion Models with Exponential Integrator (ICLR), "
            "rho-AB-DEIS, Eq. 15 with log-rho Lagrange interpolation (diffusers DEISMultistepScheduler)")
UNIPC_REF = ("Zhao et al. 2023, UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of "
             "Diffusion Models (NeurIPS), Algorithms 2-3 (UniP-p, UniC-p, B(h) variants bh1/bh2)")


# --- exponential-integrator phi functions --------------------------------------------------------


def phi(k: int, z: float) -> float:
    """The phi-function phi_k(z) = sum_{j>=0} z^j / (j + k)!  (phi_0 = e^z, phi_1 = (e^z - 1)/z,
    phi_{k+1} = (phi_k - 1/k!) / z), by its series for |z| < 1/2 (no cancellation) and by the
    recursion otherwise."""
    if k < 0:
        raise ValueError(f"phi_k needs k >= 0, got {k}")
    if abs(z) < 0.5:
        term, total = 1.0 / math.factorial(k), 0.0
        for j in range(30):
            total += term
            term *= z / (j + k + 1)
        return total
    value = math.exp(z)
    for m in range(1, k + 1):
        value = (value - 1.0 / math.factorial(m - 1)) / z
    return value


# --- Lagrange weights ----------------------------------------------------------------------------


def lagrange_weights(nodes: Sequence[float], a: float, b: float, log: bool = False) -> list[float]:
    """w_j = int_a^b l_j(u(sigma)) dsigma for the Lagrange basis l_j on u(nodes), u = sigma or
    u = log sigma (``log=True``; then b may be 0, where the integrand vanishes).  Exact: the basis
    polynomials are integrated in closed form."""
    nodes = [float(v) for v in nodes]
    if len(set(nodes)) != len(nodes):
        raise ValueError(f"Lagrange nodes must be distinct, got {nodes}")
    if log and (min(nodes) <= 0 or a <= 0 or b < 0):
        raise ValueError("log-sigma interpolation needs positive nodes and a >= b >= 0")
    u = [math.log(v) for v in nodes] if log else nodes
    weights = []
    for j, uj in enumerate(u):
        basis = Polynomial([1.0])
        for k, uk in enumerate(u):
            if k != j:
                basis = basis * Polynomial([-uk, 1.0]) / (uj - uk)
        if not log:
            anti = basis.integ()
            weights.append(float(anti(b) - anti(a)))
        else:
            # int P(u) e^u du = e^u (P - P' + P'' - ...)
            series, term, sign = Polynomial([0.0]), basis, 1.0
            while True:
                series = series + sign * term
                if term.degree() == 0:
                    break
                term, sign = term.deriv(), -sign
            upper = 0.0 if b == 0 else b * float(series(math.log(b)))
            weights.append(upper - a * float(series(math.log(a))))
    return weights


# --- the shared base -------------------------------------------------------------------------------


class Multistep(Solver):
    """History-based solvers: one model call per step, an ``order`` with warm-up and
    ``lower_order_final``, and ``denoise_to_zero`` (module docstring)."""

    max_order: int = 3
    default_lower_order_final: bool = True

    def __init__(self, order: int = 2, lower_order_final: bool | None = None, denoise_to_zero: bool = False, **base):
        super().__init__(**base)
        if int(order) != order or not 1 <= order <= self.max_order:
            raise ValueError(f"{self.info.name} order must be an integer in 1..{self.max_order}, got {order}")
        self.order = int(order)
        self.lower_order_final = self.default_lower_order_final if lower_order_final is None else bool(lower_order_final)
        self.denoise_to_zero = bool(denoise_to_zero)
        if self.denoise_to_zero and self.final == "zero" and not isinstance(self.grid_name, (list, tuple)):
            raise ValueError(f"{self.info.name}: denoise_to_zero needs final='sigma_min' (a grid ending at zero already "
                             f"ends with the denoising step x = D(x; sigma_min))")
        self.info = dataclasses.replace(type(self).info, order=self.declared_order())

    def declared_order(self) -> int:
        return self.order

    def step_order(self, i: int, steps: int) -> int:
        """Order of step i of ``steps``: warm-up min(order, i + 1); lower_order_final min(., steps - i)."""
        order = min(self.order, i + 1)
        return min(order, steps - i) if self.lower_order_final else order

    def finish(self, ctx: Context, x: Tensor) -> Tensor:
        """The optional final denoise at the last (positive) sigma: one more call."""
        if self.denoise_to_zero:
            if ctx.grid.final == "zero":
                raise ValueError(f"{self.info.name}: denoise_to_zero on a grid that already ends at sigma = 0")
            x = ctx.denoise(x, ctx.sigma[-1])
        return x

    def nfe_for_steps(self, steps: int) -> int:
        return steps + int(self.denoise_to_zero)

    def steps_for_nfe(self, nfe: int) -> int:
        least = 1 + int(self.denoise_to_zero)
        if int(nfe) != nfe or nfe < least:
            raise ValueError(f"solver {self.info.name!r} needs an NFE budget of at least {least}, got {nfe}")
        return int(nfe) - int(self.denoise_to_zero)


# --- Adams-Bashforth in sigma: LMS and DEIS ----------------------------------------------------------


class _SigmaAdams(Multistep):
    """x_{i+1} = x_i + sum_j w_ij eps_{i-j} with the Lagrange weights of :func:`lagrange_weights`."""

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
            eps = (eps + [torch.sub(x, d).div_(sigma[i])])[-self.order:]  # (x - d) / sigma_i
            # x + sum_j w_j e_j, i.e. x + (((0 + w_0 e_0) + w_1 e_1) + ...), accumulated in place in one
            # fresh tensor: the same operations in the same order (bit for bit), fewer allocations
            acc = None
            for w, e in zip(weights[i], reversed(eps)):
                acc = torch.mul(e, w).add_(0) if acc is None else acc.add_(torch.mul(e, w))
            x = acc.add_(x)
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

    info = SolverInfo(name="lms", family="k-diffusion", kind="ode", order=4, calls_per_step=1,
                      paper=LMS_REF, grid="karras")
    max_order = 4
    default_lower_order_final = False

    def __init__(self, order: int = 4, denoise_to_zero: bool = False, grid=None, final=None, grid_options=None,
                 preconditioner=None):
        super().__init__(order=order, lower_order_final=False, denoise_to_zero=denoise_to_zero, grid=grid, final=final,
                         grid_options=grid_options, preconditioner=preconditioner)


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

    info = SolverInfo(name="deis", family="deis", kind="ode", order=3, calls_per_step=1, paper=DEIS_REF)
    log_interpolation = True
    zero_step_first_order = True

    def __init__(self, order: int = 3, lower_order_final: bool = True, denoise_to_zero: bool = False, **base):
        super().__init__(order=order, lower_order_final=lower_order_final, denoise_to_zero=denoise_to_zero, **base)


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

    def __init__(self, order: int = 2, variant: str = "bh2", corrector: bool = True, lower_order_final: bool = True,
                 denoise_to_zero: bool = False, **base):
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"unipc variant must be 'bh1' or 'bh2', got {variant!r}")
        self.variant, self.corrector = variant, bool(corrector)
        super().__init__(order=order, lower_order_final=lower_order_final, denoise_to_zero=denoise_to_zero, **base)

    def declared_order(self) -> int:
        return self.order + int(self.corrector)

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
