"""Singlestep DPM-Solver (Lu et al. 2022, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model
Sampling in Around 10 Steps", NeurIPS; code LuChengTHU/dpm-solver; k-diffusion ``DPMSolver``), noise
prediction on x_hat against lambda = -log sigma.  With eps = (x - D) / sigma and h = lambda_t - lambda_s the
exact solution of the probability-flow ODE is x_t = x_s - sigma_t int_0^h e^{u} eps(lambda_t - u) du (Eq. 3.4
with alpha = 1), and the Taylor expansion of eps in lambda gives DPM-Solver-k, k = 1, 2, 3 (Sec. 3.3), with
stages at lambda_s + r_i h:

    DPM-Solver-1 (Eq. 3.7):  x_t = x_s - sigma_t (e^h - 1) eps_s
    DPM-Solver-2 (Alg. 1):   u_1 = x_s - sigma_1 (e^{r1 h} - 1) eps_s
                             x_t = x_s - sigma_t (e^h - 1) eps_s - sigma_t / (2 r1) (e^h - 1) (eps(u_1) - eps_s)
    DPM-Solver-3 (Alg. 2):   u_1 as above,  D_1 = eps(u_1) - eps_s
                             u_2 = x_s - sigma_2 (e^{r2 h} - 1) eps_s - sigma_2 (r2/r1) ((e^{r2 h} - 1)/(r2 h) - 1) D_1
                             x_t = x_s - sigma_t (e^h - 1) eps_s - sigma_t / r2 ((e^h - 1)/h - 1) (eps(u_2) - eps_s)

(r1 = 1/2 for order 2, r1 = 1/3, r2 = 2/3 for order 3: third order needs r2 = 2/3).  The same schemes serve
ETD-ERK with ``prediction="noise"`` (``blocks.ExponentialStages``); here each stage is evaluated at a given
sigma, a node of the grid (:class:`DPMSolverFast`) or of the controller's step (:class:`DPMSolverAdaptive`).
Parity with k-diffusion ``sample_dpm_fast`` / ``sample_dpm_adaptive``: tests/test_solvers_dpm_singlestep.py.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from ..grids import Grid, from_sigmas, make_grid
from .base import Context, Solver, SolverInfo, register
from .blocks import ancestral_step, check_eta, expm1_minus_z
from .k_diffusion_family import DPM_SOLVER, KDIFF
from .reference import ERROR_NORMS

__all__ = ["DPMSolverFast", "DPMSolverAdaptive", "PIDController", "fast_orders", "dpm_solver_1", "dpm_solver_2",
           "dpm_solver_3"]

#: the stage fractions r of each order's step (Sec. 3.3: r1 = 1/2; r1 = 1/3, r2 = 2/3)
STAGE_FRACTIONS = {1: (), 2: (1 / 2,), 3: (1 / 3, 2 / 3)}


def eps_of(ctx: Context, x: Tensor, sigma: float) -> Tensor:
    """The noise prediction eps(x; sigma) = (x - D(x; sigma)) / sigma. One NFE."""
    return (x - ctx.denoise(x, sigma)) / sigma


def dpm_solver_1(x: Tensor, eps_s: Tensor, s: float, t: float) -> Tensor:
    """DPM-Solver-1 (Eq. 3.7; DDIM) from sigma s to t: x_t = x_s - sigma_t (e^h - 1) eps_s."""
    return x - (t * math.expm1(math.log(s / t))) * eps_s


def dpm_solver_2(ctx: Context, x: Tensor, eps_s: Tensor, s: float, s1: float, t: float,
                 eps_1: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """DPM-Solver-2 (Algorithm 1) from sigma s to t with its stage at sigma s1 (r1 = log(s/s1) / h);
    returns x_t and eps at the stage (``eps_1``, when given, is that value already computed)."""
    h = math.log(s / t)
    r1 = math.log(s / s1) / h
    if eps_1 is None:
        u_1 = x - (s1 * math.expm1(r1 * h)) * eps_s
        eps_1 = eps_of(ctx, u_1, s1)
    x_t = x - (t * math.expm1(h)) * eps_s - (t / (2 * r1) * math.expm1(h)) * (eps_1 - eps_s)
    return x_t, eps_1


def dpm_solver_3(ctx: Context, x: Tensor, eps_s: Tensor, s: float, s1: float, s2: float, t: float,
                 eps_1: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """DPM-Solver-3 (Algorithm 2) from sigma s to t with stages at sigma s1, s2 (r_i = log(s/s_i) / h);
    returns x_t and eps at the first stage (``eps_1``, when given, is that value already computed)."""
    h = math.log(s / t)
    r1, r2 = math.log(s / s1) / h, math.log(s / s2) / h
    if eps_1 is None:
        eps_1 = eps_of(ctx, x - (s1 * math.expm1(r1 * h)) * eps_s, s1)
    d_1 = eps_1 - eps_s
    u_2 = x - (s2 * math.expm1(r2 * h)) * eps_s - (s2 * (r2 / r1) * expm1_minus_z(r2 * h) / (r2 * h)) * d_1
    d_2 = eps_of(ctx, u_2, s2) - eps_s
    x_t = x - (t * math.expm1(h)) * eps_s - (t / r2 * expm1_minus_z(h) / h) * d_2
    return x_t, eps_1


def fast_orders(nfe: int) -> list[int]:
    """DPM-Solver-fast's orders for an NFE budget (Sec. 3.4): K = floor(nfe / 3) + 1 steps, orders
    [3, ..., 3, 2, 1] when 3 divides nfe, else [3, ..., 3, nfe mod 3]; they sum to nfe."""
    if int(nfe) != nfe or nfe < 1:
        raise ValueError(f"DPM-Solver-fast needs an NFE of at least 1, got {nfe}")
    steps = int(nfe) // 3 + 1
    return [3] * (steps - 2) + [2, 1] if nfe % 3 == 0 else [3] * (steps - 1) + [int(nfe) % 3]


def _ancestral_target(s: float, t: float, lowest: float, eta: float) -> tuple[float, float]:
    """(sigma_down, sigma_up) of an ancestral step s -> t (``blocks.ancestral_step``) with sigma_down kept
    at or above the run's last sigma ``lowest`` (k-diffusion's t_next = min(t_end, t(sigma_down)))."""
    down, up = ancestral_step(s, t, eta)
    if down < lowest:
        down, up = lowest, math.sqrt(max(t * t - lowest * lowest, 0.0))
    return down, up


@register
class DPMSolverFast(Solver):
    """DPM-Solver-fast (Lu et al. 2022, Sec. 3.4; k-diffusion ``sample_dpm_fast``): an NFE budget N spends
    exactly N model calls in K = floor(N/3) + 1 steps of orders [3, ..., 3, 2, 1] (3 | N) or [3, ..., 3,
    N mod 3] (:func:`fast_orders`), each step one DPM-Solver-k update (module docstring), uniform in
    lambda by default.

    The grid lists every model call: one node per call, its step's stages at lambda_s + h/3, 2h/3 (order
    3) or h/2 (order 2) between the step's ends, then sigma_min (:meth:`make_grid`: the ``grid`` option
    names the K-step outer grid, default ``uniform_lambda``).  So a run of N steps is N calls; an
    explicit grid is read the same way (its stage nodes set r1, r2).  ``final="sigma_min"`` (default, as
    the paper and k-diffusion) returns the sample there; ``final="zero"`` spends the last call on x = D.
    ``eta`` > 0 (k-diffusion's ancestral form): each step goes to sigma_down (not below sigma_min) with its
    stages at the same fractions of that step, then adds s_noise sigma_up z.  The fast schedule ends
    with a first-order step unless N = 2 (mod 3), which bounds the global order at 2 (``order_note``); on
    the default grid, uniform in lambda, that step's O(h^2) stays below the other steps' error up to ~130
    calls on tests/test_solvers_dpm_singlestep.py's Gaussian, where every residue converges at ~3.
    """

    info = SolverInfo(name="dpm_solver_fast", family="dpm-solver", kind="ode", order=2, calls_per_step=1,
                      paper=DPM_SOLVER + ", Sec. 3.3-3.4 (DPM-Solver-1/2/3, DPM-Solver-fast); " + KDIFF
                      + ", sample_dpm_fast", grid="uniform_lambda", final="sigma_min",
                      order_note="3 when NFE = 2 (mod 3); otherwise the schedule's last step is first order",
                      in_default_bench=False)
    noise_off = {"eta": 0.0}

    def __init__(self, eta: float = 0.0, s_noise: float = 1.0, **base):
        super().__init__(**base)
        check_eta(self.name, eta, s_noise)
        self.eta, self.s_noise = float(eta), float(s_noise)

    def make_grid(self, process, steps: int) -> Grid:
        """The call grid of ``steps`` calls (module and class docstrings): the named outer grid of
        K steps to sigma_min with each step's stage nodes inserted at lambda_s + r h."""
        calls = steps - 1 if self.final == "zero" else steps
        if isinstance(self.grid, (list, tuple)) or calls < 1:
            return super().make_grid(process, steps)
        outer = make_grid(self.grid_for(process), process, len(fast_orders(calls)), final="sigma_min",
                          **self.grid_options)
        nodes = outer.sigmas()
        sigmas = []
        for order, s, t in zip(fast_orders(calls), nodes[:-1], nodes[1:]):
            h = math.log(s / t)
            sigmas += [s] + [s * math.exp(-r * h) for r in STAGE_FRACTIONS[order]]
        sigmas += [nodes[-1]] + ([0.0] if self.final == "zero" else [])
        grid = from_sigmas(process, sigmas)
        return dataclasses.replace(grid, name=f"{outer.name}, dpm-solver-fast stages")

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma = ctx.sigma
        last = len(sigma) - 2 if sigma[-1] == 0 else len(sigma) - 1  # the node of sigma_min
        if last == 0:
            return ctx.denoise(x, sigma[0]) if sigma[-1] == 0 else x
        j = 0
        for order in fast_orders(last):
            x = self.step(ctx, x, sigma[j:j + order + 1], sigma[last])
            j += order
        return ctx.denoise(x, sigma[last]) if sigma[-1] == 0 else x

    def step(self, ctx: Context, x: Tensor, nodes: list[float], lowest: float) -> Tensor:
        """One DPM-Solver-k step over ``nodes`` = [s, stages..., t] (k = len(nodes) - 1)."""
        s, t = nodes[0], nodes[-1]
        stages = nodes[1:-1]
        down, up = _ancestral_target(s, t, lowest, self.eta) if self.eta > 0 else (t, 0.0)
        if down != t:  # the stages divide the step to sigma_down as the grid divides s -> t
            h, h_down = math.log(s / t), math.log(s / down)
            stages = [s * math.exp(-math.log(s / v) / h * h_down) for v in stages]
        eps_s = eps_of(ctx, x, s)
        if not stages:
            x = dpm_solver_1(x, eps_s, s, down)
        elif len(stages) == 1:
            x, _ = dpm_solver_2(ctx, x, eps_s, s, stages[0], down)
        else:
            x, _ = dpm_solver_3(ctx, x, eps_s, s, stages[0], stages[1], down)
        if up > 0:
            x = x + ctx.randn_like(x, s, t) * (self.s_noise * up)
        return x


class PIDController:
    """The PID step-size controller of k-diffusion's ``dpm_solver_adaptive`` (Soderlind 2003, "Digital
    filters in adaptive time-stepping"): with the inverse errors e_n = 1 / (E_n + 1e-8) of the current
    and the last two accepted steps, factor = 1 + atan(e_n^b1 e_{n-1}^b2 e_{n-2}^b3 - 1) (a smooth
    limiter), b1 = (p + i + d) / k, b2 = -(p + 2 d) / k, b3 = d / k for the order k; a step is accepted
    when factor >= ``accept_safety``, and h <- factor h either way.  (p, i, d) = (0, 1, 0): the
    elementary controller h <- h E^{-1/k} of the paper's Sec. 3.4."""

    def __init__(self, h: float, pcoeff: float, icoeff: float, dcoeff: float, order: float, accept_safety: float,
                 eps: float = 1e-8):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety, self.eps = accept_safety, eps
        self.inverse_errors: list[float] = []

    def propose_step(self, error: float) -> bool:
        """Accept or reject the step of error ``error`` (1: at the tolerance) and rescale h."""
        inverse = 1 / (error + self.eps)
        if not self.inverse_errors:
            self.inverse_errors = [inverse] * 3
        self.inverse_errors[0] = inverse
        e0, e1, e2 = self.inverse_errors
        factor = 1 + math.atan(e0**self.b1 * e1**self.b2 * e2**self.b3 - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.inverse_errors = [e0, e0, e1]
        self.h *= factor
        return accept


@register
class DPMSolverAdaptive(Solver):
    """DPM-Solver-12 / DPM-Solver-23 with adaptive step size (Lu et al. 2022, Sec. 3.4 and Appendix C; k-diffusion
    ``sample_dpm_adaptive``), from the grid's first sigma to its last positive one, in lambda = -log sigma.
    Each attempt from lambda_s with step h (first ``h_init``) to lambda_t = min(lambda_s + h, lambda_min)
    computes a lower- and a higher-order solution from the same calls (module docstring):

        order 3:  x_low = DPM-Solver-2 with r1 = 1/3,  x_high = DPM-Solver-3 (r1 = 1/3, r2 = 2/3)
        order 2:  x_low = DPM-Solver-1,                x_high = DPM-Solver-2 (r1 = 1/2)
        E = || (x_low - x_high) / max(atol, rtol max(|x_low|, |x_low,prev|)) ||_RMS

    and :class:`PIDController` accepts (x <- x_high, and x_low,prev <- x_low) or rejects the attempt
    and rescales h; the run ends within 1e-5 of lambda_min.  ``error_norm``: "sample_max" (default) the
    max over samples of each one's RMS, so every sample meets the tolerance; "batch" the RMS over the
    batch (k-diffusion's).  A rejected attempt keeps eps(x_s) (the same point): an attempt costs
    ``order`` calls, one fewer after a rejection.  The controller sets the NFE (counted; an NFE budget
    is accepted and ignored); ``ctx.record`` gets the attempts (``steps``), ``n_accept`` and ``n_reject``.
    ``eta`` > 0: k-diffusion's ancestral steps (the controller then takes order 1.5).  With final='zero'
    a last call x = D(x; sigma_min).
    """

    info = SolverInfo(name="dpm_solver_adaptive", family="dpm-solver", kind="ode", order=3, calls_per_step=3,
                      paper=DPM_SOLVER + ", Sec. 3.4 (adaptive step size, DPM-Solver-12/23); " + KDIFF
                      + ", sample_dpm_adaptive", final="sigma_min", adaptive=True,
                      in_default_bench=False)
    noise_off = {"eta": 0.0}

    def __init__(self, order: int = 3, rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05,
                 pcoeff: float = 0.0, icoeff: float = 1.0, dcoeff: float = 0.0, accept_safety: float = 0.81,
                 eta: float = 0.0, s_noise: float = 1.0, error_norm: str = "sample_max", **base):
        super().__init__(**base)
        if order not in (2, 3):
            raise ValueError(f"dpm_solver_adaptive order must be 2 (DPM-Solver-12) or 3 (DPM-Solver-23), got {order!r}")
        if not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
            raise ValueError(f"dpm_solver_adaptive needs rtol >= 0, atol >= 0, not both 0; got rtol={rtol}, "
                             f"atol={atol}")
        if not h_init > 0 or not accept_safety > 0:
            raise ValueError(f"dpm_solver_adaptive needs h_init > 0 and accept_safety > 0, got h_init={h_init}, "
                             f"accept_safety={accept_safety}")
        if error_norm not in ERROR_NORMS:
            raise ValueError(f"error_norm must be one of {ERROR_NORMS}, got {error_norm!r}")
        check_eta(self.name, eta, s_noise)
        self.order, self.rtol, self.atol, self.h_init = int(order), float(rtol), float(atol), float(h_init)
        self.pcoeff, self.icoeff, self.dcoeff = float(pcoeff), float(icoeff), float(dcoeff)
        self.accept_safety, self.eta, self.s_noise = float(accept_safety), float(eta), float(s_noise)
        self.error_norm = error_norm

    def info_changes(self) -> dict:
        return {"order": self.order, "calls_per_step": self.order}

    @property
    def fixed_steps(self) -> int:
        """The grid [sigma_max, sigma_min] (+ 0): one interval for the controller, one denoise step to zero."""
        return 2 if self.final == "zero" else 1

    def error(self, x_low: Tensor, x_high: Tensor, x_prev: Tensor) -> float:
        """E of the class docstring (a float: the controller's decision is made on the host)."""
        delta = torch.clamp(torch.maximum(x_low.abs(), x_prev.abs()) * self.rtol, min=self.atol)
        ratio = ((x_low - x_high) / delta).reshape(x_low.shape[0], -1)
        if self.error_norm == "batch":
            return float(ratio.pow(2).mean().sqrt())
        return float(ratio.pow(2).mean(dim=1).sqrt().max())

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        positive = [s for s in ctx.sigma if s > 0]
        lam, lam_end = -math.log(positive[0]), -math.log(positive[-1])
        pid = PIDController(self.h_init, self.pcoeff, self.icoeff, self.dcoeff, 1.5 if self.eta > 0 else self.order,
                            self.accept_safety)
        record = {"steps": 0, "n_accept": 0, "n_reject": 0}
        x_prev, eps_s, s = x, None, positive[0]
        while lam < lam_end - 1e-5:
            lam_t = min(lam_end, lam + pid.h)
            t = positive[-1] if lam_t == lam_end else math.exp(-lam_t)  # the grid's own sigmas at the ends
            down, up = _ancestral_target(s, t, positive[-1], self.eta) if self.eta > 0 else (t, 0.0)
            h = math.log(s / down)
            if eps_s is None:
                eps_s = eps_of(ctx, x, s)
            if self.order == 2:
                x_low = dpm_solver_1(x, eps_s, s, down)
                x_high, _ = dpm_solver_2(ctx, x, eps_s, s, s * math.exp(-h / 2), down)
            else:
                s1, s2 = s * math.exp(-h / 3), s * math.exp(-2 * h / 3)
                x_low, eps_1 = dpm_solver_2(ctx, x, eps_s, s, s1, down)
                x_high, _ = dpm_solver_3(ctx, x, eps_s, s, s1, s2, down, eps_1=eps_1)
            accept = pid.propose_step(self.error(x_low, x_high, x_prev))
            record["steps"] += 1
            if accept:
                x_prev, x = x_low, x_high
                if up > 0:
                    x = x + ctx.randn_like(x, s, t) * (self.s_noise * up)
                lam, s, eps_s = lam_t, t, None
                record["n_accept"] += 1
            else:
                record["n_reject"] += 1
        ctx.record.update(record)
        if ctx.sigma[-1] == 0:
            x = ctx.denoise(x, positive[-1])
        return x
