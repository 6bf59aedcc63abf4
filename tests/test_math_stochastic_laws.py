"""The laws of the stochastic updates, at general parameters.

On a zero-mean Gaussian model (``D(x; sigma) = k(sigma) x``, k = v / (v + sigma^2)) one step of every
solver here is linear: ``x_t = a x_s + sum_j b_j z_j``.  Running the step on impulses (row 0 carries
x_s = 1, draw j is 1 on row j and 0 elsewhere) reads ``a`` and every ``b_j`` exactly, so the conditional
law ``x_t | x_s ~ N(a x_s, sum_j b_j^2)`` is compared with the paper's formula to rounding, with no
Monte-Carlo error.  The Monte-Carlo tests then run the real noise source and check the empirical
moments against the same law, with tolerances of about four standard errors and a guard that the
wrong law (the mutation named in each test) lies far outside them.
"""

from __future__ import annotations

import math

import pytest
import torch
from noise_doubles import Counter, Impulse, ctx_for

from solverzoo.models.gaussian import GaussianModel
from solverzoo.noise import INIT, PATH, NoiseSource
from solverzoo.processes import get_process
from solverzoo.solvers import get_solver

D64 = torch.float64
VAR = 0.25
GAUSS = GaussianModel(shape=(1,), mean=0.0, var=VAR)






class PointMass:
    """Data = 0: D = 0 exactly, so the probability-flow ODE is x proportional to sigma and every Heun step
    is exact; the marginal at sigma is N(0, sigma^2)."""

    name, shape = "point-mass", (1,)

    def __init__(self, shape=(1,)):
        self.process, self.shape = get_process("edm"), shape

    def denoise(self, x, sigma):
        return torch.zeros_like(x)



def linear_coefficients(solver, model, sigmas) -> tuple[float, list[float]]:
    """(a, [b_1, b_2, ...]) of the run x_end = a x_0 + sum_j b_j z_j on a linear one-coordinate model."""
    counter = Counter()
    solver.run(ctx_for(model, sigmas, counter), torch.zeros(1, *model.shape, dtype=D64))
    x0 = torch.zeros(counter.n + 1, *model.shape, dtype=D64)
    x0[0] = 1.0
    out = solver.run(ctx_for(model, sigmas, Impulse()), x0).reshape(counter.n + 1, -1)[:, 0]
    return float(out[0]), out[1:].tolist()


def k_of(sigma: float) -> float:
    return VAR / (VAR + sigma * sigma)


S, T = 2.0, 1.2  # one step, inside SA-Solver's default tau interval [0.7236, 25.74]
H = math.log(S / T)


def er_sde_phi(sigma: float) -> float:
    """Cui et al. 2023's recommended noise scale, 'ER SDE 5': phi(sigma) = sigma (e^{sigma^0.3} + 10)."""
    return sigma * (math.exp(sigma**0.3) + 10.0)


def expected_one_step(name: str, options: dict) -> tuple[float, float]:
    """(a, noise variance) of one step s -> t, written from each paper's update."""
    k = k_of(S)
    eta = options.get("eta", 1.0)
    if name == "er_sde":  # Cui et al. 2023, Eq. 19 (stage 1): r x + (1 - r) D + sqrt(t^2 - r^2 s^2) z
        r = er_sde_phi(T) / er_sde_phi(S)
        return r + (1 - r) * k, options.get("s_noise", 1.0) ** 2 * (T * T - r * r * S * S)
    if name in ("seeds1", "er_sde_sde"):  # the exact OU / DDPM posterior step (SEEDS-1, phi = sigma^2)
        q = (T / S) ** 2
        return q + (1 - q) * k, T * T * (1 - q)
    if name == "euler_ancestral":  # Euler to sigma_down, then sigma_up z (Ho et al. / k-diffusion split)
        up = min(T, eta * T * math.sqrt(1 - (T / S) ** 2))
        down = math.sqrt(T * T - up * up)
        return down / S + (1 - down / S) * k, up * up
    if name == "dpmpp_2m_sde":  # (t/s) e^{-eta h} x + (1 - e^{-(1+eta) h}) D + t sqrt(1 - e^{-2 eta h}) z
        return (T / S) * math.exp(-eta * H) + (1 - math.exp(-(1 + eta) * H)) * k, T * T * (1 - math.exp(-2 * eta * H))
    if name == "sa_solver":  # Xue et al. 2023, Eq. 14 at order 1: kappa = 1 + tau^2, tau = eta inside the interval
        kappa = 1 + eta * eta
        return math.exp(-kappa * H) + (1 - math.exp(-kappa * H)) * k, T * T * (1 - math.exp(-2 * eta * eta * H))
    raise AssertionError(name)


ONE_STEP = [
    ("er_sde", {}),
    ("er_sde", {"s_noise": 0.7}),
    ("er_sde_sde", {}),
    ("seeds1", {}),
    ("euler_ancestral", {"eta": 0.6}),
    ("euler_ancestral", {"eta": 1.0}),
    ("dpmpp_2m_sde", {"eta": 0.6}),
    ("dpmpp_3m_sde", {"eta": 0.6}),
    ("sa_solver", {"eta": 0.6}),
    ("sa_solver", {"eta": 1.0}),
]


@pytest.mark.parametrize("name,options", ONE_STEP,
                         ids=["-".join([n, *(f"{k}={v}" for k, v in o.items())]) for n, o in ONE_STEP])
def test_one_step_conditional_law_is_the_papers_transition(name, options):
    """x_t | x_s ~ N(a x_s, c^2) with a and c^2 from each paper's step formula, at eta / s_noise away from
    the special values 0 and 1, read exactly (impulses)."""
    solver_name, extra = (("er_sde", {"noise_scale": "sde", "max_stage": 1}) if name == "er_sde_sde" else (name, {}))
    solver = get_solver(solver_name, grid=[S, T], **options, **extra)
    a, b = linear_coefficients(solver, GAUSS, [S, T])
    reference_name = "dpmpp_2m_sde" if name == "dpmpp_3m_sde" else name  # a first step is the same order-1 step
    want_a, want_var = expected_one_step(reference_name, options)
    assert a == pytest.approx(want_a, rel=1e-12)
    assert sum(v * v for v in b) == pytest.approx(want_var, rel=1e-12)
    assert len(b) == 1, "one step, one Gaussian draw"


def test_er_sde_noise_scale_is_sigma_times_exp_sigma_pow_0_3_plus_10():
    """The ER SDE 5 scale phi(sigma) = sigma (e^{sigma^0.3} + 10) fixes r = phi(t)/phi(s) and the step noise
    t^2 - r^2 s^2; checked on a two-step grid (the second step's stage-2 terms vanish on D = 0)."""
    model = PointMass()
    sigmas = [3.0, 1.0, 0.4]
    a, b = linear_coefficients(get_solver("er_sde", grid=sigmas), model, sigmas)
    r1, r2 = er_sde_phi(1.0) / er_sde_phi(3.0), er_sde_phi(0.4) / er_sde_phi(1.0)
    assert a == pytest.approx(r1 * r2, rel=1e-12)
    assert b[0] == pytest.approx(r2 * math.sqrt(1.0 - r1 * r1 * 9.0), rel=1e-12)
    assert b[1] == pytest.approx(math.sqrt(0.16 - r2 * r2), rel=1e-12)


def test_er_sde_one_step_noise_variance_monte_carlo():
    """Real draws: from x_s = 0 on the zero-mean model, x_t = sqrt(t^2 - r^2 s^2) z.  32768 draws give
    the variance to about 0.8% (one standard error); the tolerance is 4%.  With phi = sigma (e^{sigma^0.3}
    + 1) the variance would be more than 25% larger at these sigmas."""
    s, t, n = 1.0, 0.5, 32768
    model = GaussianModel(shape=(n // 4,), mean=0.0, var=VAR)
    solver = get_solver("er_sde", grid=[s, t])
    x = solver.run(ctx_for(model, [s, t], NoiseSource(7, range(4), PATH, dtype=D64)),
                   torch.zeros(4, *model.shape, dtype=D64))
    r = er_sde_phi(t) / er_sde_phi(s)
    want = t * t - r * r * s * s
    wrong_r = t * (math.exp(t**0.3) + 1) / (s * (math.exp(s**0.3) + 1))
    assert abs((t * t - wrong_r**2 * s * s) / want - 1) > 0.25  # the tolerance below separates the two laws
    assert abs(x.var().item() / want - 1) < 0.04, (x.var().item(), want)
    assert abs(x.mean().item()) < 4 * math.sqrt(want / n)


# --- Restart: K independent restarts -----------------------------------------------------------------------


RESTART_SIGMAS = [2.0, 0.9, 0.25, 0.12, 0.05]  # the node nearest t_min = 0.25 is 0.25


def restart_solver(restarts: int):
    return get_solver("restart", grid=RESTART_SIGMAS, restart_t_min=0.25, restart_t_max=0.5, restarts=restarts,
                      restart_steps=2)


@pytest.mark.parametrize("restarts", [1, 3])
def test_restart_adds_one_independent_draw_per_restart(restarts):
    """Xu et al. 2023, Algorithm 1: restart k adds its own sqrt(t_max^2 - t_min^2) z_k.  On the point mass
    (exact Heun), the draw of restart k reaches the output scaled by (t_min/t_max)^(K-k+1) (the ODE back to
    t_min after it and after every later restart) and sigma_N / t_min (the main steps after): K draws,
    each with its own coefficient, and the output law N(0, sigma_N^2) is kept exactly."""
    sigmas = RESTART_SIGMAS
    a, b = linear_coefficients(restart_solver(restarts), PointMass(), sigmas)
    t_min, t_max, last = 0.25, 0.5, sigmas[-1]
    c = t_min / t_max
    want = [c ** (restarts - k + 1) * math.sqrt(t_max**2 - t_min**2) * last / t_min for k in range(1, restarts + 1)]
    assert len(b) == restarts
    assert b == pytest.approx(want, rel=1e-12)
    # x_0 = sigma_0 z_0: the output variance is sigma_N^2 (the law of the data at sigma_N) exactly
    assert (a * sigmas[0]) ** 2 + sum(v * v for v in b) == pytest.approx(last**2, rel=1e-12)


def test_restart_keeps_the_marginal_law_monte_carlo():
    """Real draws through the whole run (x_0 = sigma_0 z): the output variance is sigma_N^2 when the K = 3
    restart noises are independent; one noise reused by the three restarts would make it 2.31 sigma_N^2.
    32768 draws: standard error 0.8%, tolerance 4%."""
    n, batch = 32768, 4
    model = PointMass(shape=(n // batch,))
    solver = restart_solver(3)
    x0 = RESTART_SIGMAS[0] * NoiseSource(11, range(batch), INIT, dtype=D64).randn(model.shape)
    out = solver.run(ctx_for(model, RESTART_SIGMAS, NoiseSource(11, range(batch), PATH, dtype=D64)), x0)
    t_min, t_max = 0.25, 0.5
    c = t_min / t_max
    shared = c**6 + (c + c**2 + c**3) ** 2 * (t_max**2 - t_min**2) / t_min**2
    assert shared > 2  # the reused-noise law, relative to sigma_N^2
    ratio = out.var().item() / RESTART_SIGMAS[-1] ** 2
    assert abs(ratio - 1) < 0.04, ratio
