"""Every multistep weight on non-uniform grids, against an independent closed form.

The Adams-type solvers integrate a Lagrange interpolant of their history over each step.  Here the
weights are integrals of the Lagrange basis computed by adaptive quadrature (scipy.integrate.quad) and
a whole run on an irregular grid is replayed with them:

* lms:  x_{i+1} = x_i + sum_j eps_{i-j} int_{sigma_i}^{sigma_{i+1}} l_j(sigma) dsigma        (k-diffusion)
* deis: the same with l_j the basis on log sigma                               (Zhang & Chen 2023, Eq. 15)
* DPM-Solver++ multistep (heun 2M, 3M, RES, SDE): the exact solution of dx = (1+eta)(D - x) dlambda
  with D replaced by its interpolant in lambda (Lu et al. 2022; module docstring of dpm_solver),
  x_t = (sigma_t/sigma_s) e^{-eta h} x_s + (1+eta) int e^{-(1+eta)(lambda_t - l)} P(l) dl.

Weights that are not Lagrange integrals are pinned in their own published closed forms: DPM-Solver++(2M)
(midpoint), iPNDM-v (Zhou et al. 2024, in exact rational arithmetic), the constant-step Adams-Bashforth
weights of iPNDM, and gradient estimation's eps + (gamma - 1)(eps - eps_old) at a general gamma.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
import scipy.integrate
import torch

from solverzoo.grids import from_sigmas
from solverzoo.models.base import CountingDenoiser
from solverzoo.models.gaussian import GaussianModel
from solverzoo.solvers import get_solver
from solverzoo.solvers.base import Context
from solverzoo.solvers.blocks import (
    ab_weights,
    exponential_lagrange_weights,
    lagrange_weights,
)
from solverzoo.solvers.multistep import ipndm_v_weights

D64 = torch.float64
MODEL = GaussianModel(shape=(3,), mean=torch.tensor([0.3, -0.7, 1.1]), var=torch.tensor([0.2, 1.5, 0.6]))
#: an irregular grid: step ratios sigma_{i+1}/sigma_i from 0.38 to 0.78
GRID = [14.0, 9.5, 4.1, 2.9, 1.3, 0.71, 0.52, 0.2, 0.09]


def basis(nodes: list[float], j: int):
    """The Lagrange basis polynomial l_j on ``nodes`` as a function."""
    def l_j(u: float) -> float:
        out = 1.0
        for k, uk in enumerate(nodes):
            if k != j:
                out *= (u - uk) / (nodes[j] - uk)
        return out
    return l_j


def quad(f, a: float, b: float) -> float:
    return scipy.integrate.quad(f, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0]


def basis_integral(nodes: list[float], j: int, a: float, b: float, log: bool = False) -> float:
    """int_a^b l_j(u(sigma)) dsigma, u = sigma or log sigma, by quadrature."""
    l_j = basis(nodes, j)
    return quad(lambda s: l_j(math.log(s) if log else s), a, b)


def kernel_integral(nodes: list[float], j: int, a: float, b: float, k: float) -> float:
    """k int_a^b e^{-k (b - l)} l_j(l) dl (in lambda), by quadrature."""
    l_j = basis(nodes, j)
    return k * quad(lambda v: math.exp(-k * (b - v)) * l_j(v), a, b)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_lagrange_weights_are_integrals_of_the_basis_by_quadrature(p, log):
    rng = random.Random(p + 10 * log)
    for _ in range(5):
        sig = [rng.uniform(5, 20)]
        for _ in range(p):
            sig.append(sig[-1] * rng.uniform(0.3, 0.9))
        nodes, a, b = sig[:p][::-1], sig[p - 1], sig[p]  # newest first: sigma_i, sigma_{i-1}, ...
        u = [math.log(v) for v in nodes] if log else nodes
        want = [basis_integral(u, j, a, b, log) for j in range(p)]
        assert lagrange_weights(nodes, a, b, log=log) == pytest.approx(want, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_exponential_lagrange_weights_are_kernel_integrals_by_quadrature(p):
    rng = random.Random(p)
    for k in (1.0, 1.36, 2.0):
        lam = [rng.uniform(-2, 0)]
        for _ in range(p):
            lam.append(lam[-1] + rng.uniform(0.1, 0.9))
        nodes, a, b = lam[:p][::-1], lam[p - 1], lam[p]
        want = [kernel_integral(nodes, j, a, b, k) for j in range(p)]
        assert exponential_lagrange_weights(nodes, a, b, k) == pytest.approx(want, rel=1e-10, abs=1e-13)


# --- whole runs on an irregular grid, replayed with quadrature weights -----------------------------------


def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return MODEL.denoise(x, torch.full((x.shape[0],), sigma, dtype=D64))


def replay(kind: str, sigmas: list[float], x: torch.Tensor, order_at, eta: float = 0.0) -> torch.Tensor:
    """The multistep run with weights from quadrature: kind "sigma" (lms), "log" (deis) or "exp" (DPM-Solver++
    in lambda, SDE drift with ``eta``); step i uses order_at(i) history nodes."""
    steps = len(sigmas) - 1
    ds: list[torch.Tensor] = []
    eps: list[torch.Tensor] = []
    for i in range(steps):
        s, t = sigmas[i], sigmas[i + 1]
        d = denoise(x, s)
        ds.append(d)
        eps.append((x - d) / s)
        p = order_at(i)
        nodes = sigmas[i - p + 1:i + 1][::-1]  # sigma_i, sigma_{i-1}, ...
        if kind in ("sigma", "log"):
            u = [math.log(v) for v in nodes] if kind == "log" else nodes
            w = [basis_integral(u, j, s, t, kind == "log") for j in range(p)]
            x = x + sum(wj * eps[-1 - j] for j, wj in enumerate(w))
        else:
            lam = [-math.log(v) for v in nodes]
            lam_s, lam_t, kk = -math.log(s), -math.log(t), 1 + eta
            w = [kernel_integral(lam, j, lam_s, lam_t, kk) for j in range(p)]
            x = (t / s) * math.exp(-eta * (lam_t - lam_s)) * x + sum(wj * ds[-1 - j] for j, wj in enumerate(w))
    return x


class Zeros:
    """A noise source of zeros: the drift of an SDE step alone."""

    def randn_like(self, x):
        return torch.zeros_like(x)


def run_solver(name: str, sigmas: list[float], x: torch.Tensor, **options) -> torch.Tensor:
    solver = get_solver(name, grid=sigmas, **options)
    ctx = Context(CountingDenoiser(MODEL), from_sigmas(MODEL.process, sigmas), Zeros())
    return solver.run(ctx, x.clone())


N = len(GRID) - 1
CASES = {
    # name, options, kind, order schedule (warm-up min(order, i + 1); lower_order_final min(., N - i)), eta
    "lms": ({}, "sigma", lambda i: min(4, i + 1), 0.0),
    "lms-order-3": ({"order": 3}, "sigma", lambda i: min(3, i + 1), 0.0),
    "deis": ({}, "log", lambda i: min(3, i + 1, N - i), 0.0),
    "deis-no-lof": ({"lower_order_final": False}, "log", lambda i: min(3, i + 1), 0.0),
    "dpmpp_2m-heun": ({"solver_type": "heun"}, "exp", lambda i: min(2, i + 1, N - i), 0.0),
    "res_multistep": ({}, "exp", lambda i: min(2, i + 1), 0.0),
    "dpmpp_3m": ({}, "exp", lambda i: min(3, i + 1, N - i), 0.0),
    "dpmpp_3m-no-lof": ({"lower_order_final": False}, "exp", lambda i: min(3, i + 1), 0.0),
    "dpmpp_3m_sde": ({"eta": 0.6}, "exp", lambda i: min(3, i + 1), 0.6),
    "dpmpp_2m_sde-heun": ({"eta": 0.6, "solver_type": "heun"}, "exp", lambda i: min(2, i + 1), 0.6),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_multistep_run_on_an_irregular_grid_equals_lagrange_quadrature_replay(case):
    options, kind, order_at, eta = CASES[case]
    name = case.split("-")[0]
    x0 = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.2, -1.0]], dtype=D64) * GRID[0]
    got = run_solver(name, GRID, x0, **options)
    want = replay(kind, GRID, x0, order_at, eta)
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-9), (got - want).abs().max()


def test_dpmpp_2m_midpoint_weight_is_one_plus_one_over_2r():
    """Lu et al. 2022, Algorithm 2: x_t = (sigma_t/sigma_s) x + (1 - e^{-h}) [(1 + 1/(2r)) D_i - D_{i-1}/(2r)],
    r = h_{i-1} / h, first and last steps first order."""
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=D64) * GRID[0]
    got = run_solver("dpmpp_2m", GRID, x)
    d_old = None
    for i in range(N):
        s, t = GRID[i], GRID[i + 1]
        d = denoise(x, s)
        h = math.log(s / t)
        if d_old is None or i == N - 1:
            x = (t / s) * x - math.expm1(-h) * d
        else:
            r = math.log(GRID[i - 1] / s) / h
            x = (t / s) * x - math.expm1(-h) * ((1 + 1 / (2 * r)) * d - d_old / (2 * r))
        d_old = d
    assert torch.allclose(got, x, rtol=1e-12, atol=1e-12)


def ipndm_v_published(h: Fraction, h1: Fraction, h2: Fraction, h3: Fraction | None = None) -> list[Fraction]:
    """Zhou et al. 2024 (zju-pi/diff-sampler ``ipndm_v``), orders 3 and 4 written as the reference's
    coefficients: temp = (1 - h/(3(h + h1)) * h(h + h1)/(h1(h1 + h2))) / 2 on top of variable-step AB2."""
    temp = (1 - h / (3 * (h + h1)) * (h * (h + h1)) / (h1 * (h1 + h2))) / 2
    c1 = (2 + h / h1) / 2 + temp
    c2 = -(h / h1) / 2 - (1 + h1 / h2) * temp
    c3 = temp * h1 / h2
    if h3 is None:
        return [c1, c2, c3]
    temp2 = (((1 - h / (3 * (h + h1))) / 2 + (1 - h / (2 * (h + h1))) * h / (6 * (h + h1 + h2)))
             * (h * (h + h1) * (h + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3)))
    return [c1 + temp2,
            c2 - (1 + h1 / h2 + h1 * (h1 + h2) / (h2 * (h2 + h3))) * temp2,
            c3 + (h1 / h2 + h1 * (h1 + h2) / (h2 * (h2 + h3)) * (1 + h2 / h3)) * temp2,
            -h1 * (h1 + h2) / (h2 * (h2 + h3)) * h1 / h2 * temp2]


def test_ipndm_v_weights_on_uneven_steps_in_exact_arithmetic():
    """On steps h, h1, h2 = -1, -2, -4 (every ratio different) the order-3 correction weight is exactly
    35/72 (h1 (h1 + h2) in its denominator; h1 (h1 + h1) would give 23/48), and order 4 adds the published
    nabla^3 term; compared in rational arithmetic, so any change of a coefficient shows."""
    h, h1, h2, h3 = Fraction(-1), Fraction(-2), Fraction(-4), Fraction(-3)
    w3 = ipndm_v_weights(h, [h1, h2])
    assert w3 == ipndm_v_published(h, h1, h2)
    assert w3[2] == Fraction(35, 72) * h1 / h2  # temp = 35/72
    assert ipndm_v_weights(h, [h1, h2, h3]) == ipndm_v_published(h, h1, h2, h3)
    assert ipndm_v_weights(h, [h1]) == [1 + Fraction(1, 4), Fraction(-1, 4)]  # variable-step AB2, r = 1/2


def test_ipndm_weights_are_the_constant_step_adams_bashforth_integrals():
    """AB-p: b_j = int_0^1 l_j(u) du on the nodes 0, -1, ..., -(p - 1) (quadrature)."""
    for p in (1, 2, 3, 4):
        nodes = [-float(j) for j in range(p)]
        want = [quad(basis(nodes, j), 0.0, 1.0) for j in range(p)]
        assert ab_weights(p) == pytest.approx(want, rel=1e-12, abs=1e-13)


@pytest.mark.parametrize("gamma", [1.3, 2.7])
def test_gradient_estimation_uses_gamma_minus_one_at_a_general_gamma(gamma):
    """Permenter & Yuan 2024: x_{i+1} = x_i + (sigma_{i+1} - sigma_i)[eps_i + (gamma - 1)(eps_i - eps_{i-1})]
    at gammas where (gamma - 1) and (gamma - 1)^2 differ; Euler on the first step, x = D on a step to 0."""
    sigmas = GRID + [0.0]
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=D64) * GRID[0]
    got = run_solver("gradient_estimation", sigmas, x, gamma=gamma)
    old = None
    for i in range(len(sigmas) - 1):
        d = denoise(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = d
            break
        eps = (x - d) / sigmas[i]
        x = x + (sigmas[i + 1] - sigmas[i]) * (eps if old is None else eps + (gamma - 1) * (eps - old))
        old = eps
    assert torch.allclose(got, x, rtol=1e-12, atol=1e-12)


def er_sde_phi(sigma: float) -> float:
    """Cui et al. 2023's noise scale 'ER SDE 5': phi(sigma) = sigma (e^{sigma^0.3} + 10)."""
    return sigma * (math.exp(sigma**0.3) + 10.0)


@pytest.mark.parametrize("max_stage", [2, 3])
def test_er_sde_stage_2_and_3_weights_on_an_irregular_grid(max_stage):
    """Cui et al. 2023, Eq. 20-21 with the history differences D' = (D_i - D_{i-1}) / (sigma_i - sigma_{i-1}) and
    D'' = (D'_i - D'_{i-1}) / ((sigma_i - sigma_{i-2}) / 2), weights (t - s) + phi_t S_0 and (t - s)^2 / 2 + phi_t S_1,
    S_0 = int_t^s dsigma / phi, S_1 = int_t^s (sigma - s) / phi dsigma by quadrature; the drift alone (zero noise)."""
    x = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.9, -1.4]], dtype=D64) * GRID[0]
    got = run_solver("er_sde", GRID, x, max_stage=max_stage)
    d_old = dd_old = None
    for i in range(N):
        s, t = GRID[i], GRID[i + 1]
        d = denoise(x, s)
        stage = min(max_stage, i + 1)
        r = er_sde_phi(t) / er_sde_phi(s)
        x_next = r * x + (1 - r) * d
        if stage >= 2:
            s0 = quad(lambda v: 1 / er_sde_phi(v), t, s)
            s1 = quad(lambda v, s=s: (v - s) / er_sde_phi(v), t, s)
            dd = (d - d_old) / (s - GRID[i - 1])
            x_next = x_next + ((t - s) + er_sde_phi(t) * s0) * dd
            if stage == 3:
                ddd = (dd - dd_old) / ((s - GRID[i - 2]) / 2)
                x_next = x_next + ((t - s) ** 2 / 2 + er_sde_phi(t) * s1) * ddd
            dd_old = dd
        x, d_old = x_next, d
    assert torch.allclose(got, x, rtol=1e-10, atol=1e-10), (got - x).abs().max()
