"""FDM: the fdm-edm / fdm-vp / fdm-ve processes in the EDM frame, and the fdm sampler."""

from __future__ import annotations

import math

import pytest
import torch

import solverzoo
from solverzoo.grids import karras
from solverzoo.models.gaussian import GaussianModel
from solverzoo.processes import FDMEDMProcess, FDMVEProcess, FDMVPProcess, get_process, list_processes
from solverzoo.solvers import get_solver, solver_info

D64 = torch.float64
FDM = ("fdm-edm", "fdm-vp", "fdm-ve")


def fdm_scale(sigma, sigma_min, sigma_max, m, beta_min=0.1, beta_d=19.9):
    """sail-sg/FDM training/networks.py, FDM_*Precond.s (written out independently)."""
    tau = (sigma - sigma_min) / (sigma_max - sigma_min)
    b = beta_min * tau + 0.5 * beta_d * tau**2
    return math.exp(-m * b) * (1 + m * b)


# --------------------------------------------------------------------------- processes


def test_registered_with_fdm_ranges():
    for name in FDM:
        assert name in list_processes()
    edm, vp, ve = (get_process(n) for n in FDM)
    assert isinstance(edm, FDMEDMProcess) and (edm.sigma_min, edm.sigma_max) == (0.002, 80.0)
    assert isinstance(ve, FDMVEProcess) and (ve.sigma_min, ve.sigma_max) == (0.02, 100.0)
    assert isinstance(vp, FDMVPProcess)
    # FDM_VPPrecond: sigma(t) = sqrt(exp(0.5 beta_d t^2 + beta_min t) - 1) on [epsilon_t = 1e-5, 1]
    assert vp.sigma_min == pytest.approx(math.sqrt(math.expm1(0.5 * 19.9 * 1e-10 + 0.1 * 1e-5)), rel=1e-12)
    assert vp.sigma_max == pytest.approx(math.sqrt(math.expm1(0.5 * 19.9 + 0.1)), rel=1e-12)
    assert get_process("fdm-edm", multiplier=2).multiplier == 2.0
    assert get_process("fdm-ve").describe()["multiplier"] == 1.0
    with pytest.raises(ValueError):
        get_process("fdm-edm", multiplier=0)


@pytest.mark.parametrize("name", FDM)
@pytest.mark.parametrize("m", [1.0, 2.0])
def test_scale_is_fdm_formula(name, m):
    p = get_process(name, multiplier=m)
    t = torch.linspace(p.t_min, p.t_max, 41, dtype=D64)
    sig = p.sigma(t)
    want = torch.tensor([fdm_scale(v, p.sigma_min, p.sigma_max, m) for v in sig.tolist()], dtype=D64)
    torch.testing.assert_close(p.s(t), want, rtol=1e-13, atol=0)
    torch.testing.assert_close(p.s_of_sigma(sig), want, rtol=1e-13, atol=0)
    # ends: s(sigma_min) = 1; s(sigma_max) = e^{-m B(1)} (1 + m B(1)), B(1) = 0.1 + 19.9 / 2 = 10.05
    assert float(p.s_of_sigma(torch.tensor(p.sigma_min, dtype=D64))) == pytest.approx(1.0, abs=1e-15)
    top = float(p.s_of_sigma(torch.tensor(p.sigma_max, dtype=D64)))
    assert top == pytest.approx(math.exp(-10.05 * m) * (1 + 10.05 * m), rel=1e-12)


def test_scale_hand_values():
    p = get_process("fdm-edm")
    # sigma = 40.001: tau = 0.5, B = 0.05 + 2.4875 = 2.5375
    assert float(p.s_of_sigma(torch.tensor(40.001, dtype=D64))) == pytest.approx(math.exp(-2.5375) * 3.5375, rel=1e-13)
    assert float(p.s_of_sigma(torch.tensor(80.0, dtype=D64))) == pytest.approx(4.772e-4, rel=1e-3)


@pytest.mark.parametrize("name", FDM)
def test_time_inverse_round_trip(name):
    p = get_process(name)
    t = torch.cat([torch.tensor([p.t_min, 2 * p.t_min], dtype=D64), torch.linspace(p.t_min, p.t_max, 101, dtype=D64)])
    torch.testing.assert_close(p.t_of_sigma(p.sigma(t)), t, rtol=1e-12, atol=1e-15)
    sig = torch.logspace(math.log10(p.sigma_min), math.log10(p.sigma_max), 57, dtype=D64)
    torch.testing.assert_close(p.sigma(p.t_of_sigma(sig)), sig, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", FDM)
@pytest.mark.parametrize("m", [1.0, 2.0])
def test_derivatives_match_finite_differences(name, m):
    p = get_process(name, multiplier=m)
    t = torch.linspace(p.t_min + 0.02 * (p.t_max - p.t_min), p.t_max * 0.98, 23, dtype=D64)
    eps = 1e-6 * (p.t_max - p.t_min)
    fd_sigma = (p.sigma(t + eps) - p.sigma(t - eps)) / (2 * eps)
    fd_s = (p.s(t + eps) - p.s(t - eps)) / (2 * eps)
    torch.testing.assert_close(p.sigma_deriv(t), fd_sigma, rtol=1e-6, atol=0)
    torch.testing.assert_close(p.s_deriv(t), fd_s, rtol=1e-6, atol=1e-7 * float(fd_s.abs().max()))
    # the forward SDE dx = f x dt + g dw keeps x = s (x0 + sigma n): Var = s^2 (v + sigma^2) obeys
    # dVar/dt = 2 f Var + g^2 with f = s'/s, g^2 = 2 s^2 sigma sigma'
    v = 0.5
    var = lambda u: p.s(u) ** 2 * (v + p.sigma(u) ** 2)  # noqa: E731
    lhs = (var(t + eps) - var(t - eps)) / (2 * eps)
    rhs = 2 * p.drift_coef(t) * var(t) + p.diffusion_sq(t)
    torch.testing.assert_close(lhs, rhs, rtol=1e-6, atol=1e-7 * float(rhs.abs().max()))


# --------------------------------------------------------------------------- the fdm sampler


def test_fdm_refuses_a_model_not_trained_under_fdm():
    message = (r"fdm samples a model trained under an FDM process \(fdm-edm, fdm-vp, fdm-ve\); model 'gaussian' was "
               r"trained under 'edm'\. Use heun for it, or build the analytic model with process='fdm-edm'")
    with pytest.raises(ValueError, match=message):
        solverzoo.sample(GaussianModel((4,)), "fdm", nfe=9, num_samples=2)
    with pytest.raises(ValueError, match="trained under 'vp'"):
        solverzoo.sample(GaussianModel((4,), process="vp"), "fdm", nfe=9, num_samples=2)


def test_fdm_is_edm_heun():
    info = solver_info("fdm")
    assert (info.kind, info.family, info.calls_per_step, info.nfe_offset, info.grid) == ("ode", "fdm", 2, -1, "karras")
    from solverzoo.solvers.edm import Heun
    from solverzoo.solvers.fdm import FDM as FDMSolver

    assert issubclass(FDMSolver, Heun) and FDMSolver.run is Heun.run
    # an analytic model only sees (x_hat, sigma): under fdm-edm, fdm is heun on the same grid
    a = solverzoo.sample(GaussianModel((8,), var=0.5, process="fdm-edm"), "fdm", nfe=17, num_samples=6, dtype=D64)
    b = solverzoo.sample(GaussianModel((8,), var=0.5), "heun", nfe=17, num_samples=6, dtype=D64)
    assert a.nfe == b.nfe == 17
    assert torch.equal(a.grid.sigma, b.grid.sigma)
    torch.testing.assert_close(a.samples, b.samples, rtol=0, atol=0)
    c = solverzoo.sample(GaussianModel((8,), var=0.5, process="fdm-edm"), "fdm", nfe=17, num_samples=6, dtype=D64,
                         s_churn=10.0)
    assert c.nfe == 17 and not torch.equal(a.samples, c.samples)


@pytest.mark.parametrize("name,lo,hi", [("fdm-edm", 0.002, 80.0), ("fdm-vp", 0.002, 80.0), ("fdm-ve", 0.02, 80.0)])
def test_fdm_grid_is_generate_py(name, lo, hi):
    """generate.py: sigma_min = max(0.002, net.sigma_min), sigma_max = min(80, net.sigma_max),
    Karras rho = 7, then sigma = 0."""
    model = GaussianModel((4,), var=0.5, process=name)
    res = solverzoo.sample(model, "fdm", nfe=35, num_samples=2, dtype=D64)
    n = 18
    i = torch.arange(n, dtype=D64)
    want = (hi ** (1 / 7) + i / (n - 1) * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7
    assert res.steps == n and res.nfe == 2 * n - 1
    torch.testing.assert_close(res.grid.sigma[:-1], want, rtol=1e-12, atol=0)
    assert res.grid.sigma[-1] == 0
    torch.testing.assert_close(res.grid.sigma, karras(model.process, n, sigma_min=lo, sigma_max=hi).sigma)
    # user grid options win
    r2 = solverzoo.sample(model, "fdm", nfe=9, num_samples=2, dtype=D64, grid_options={"sigma_max": 10.0, "rho": 3.0})
    assert float(r2.grid.sigma[0]) == pytest.approx(10.0, rel=1e-14)


@pytest.mark.parametrize("name", FDM)
def test_fdm_converges(name):
    """As NFE grows the samples' variance approaches the data variance (ODE: paired initial noise,
    so the errors are compared on the same draws)."""
    model = GaussianModel((8,), var=0.5, process=name)
    z = solverzoo.sample(model, "fdm", nfe=401, num_samples=800, dtype=D64).samples.var()
    errs = []
    for nfe in (11, 35, 101):
        x = solverzoo.sample(model, "fdm", nfe=nfe, num_samples=800, dtype=D64).samples
        errs.append(abs(float(x.var() - z)))
    assert errs[2] < errs[1] < errs[0], errs
    assert abs(float(z) - 0.5) < 0.04


def test_score_sde_solvers_see_the_fdm_scale():
    """Euler-Maruyama steps in x = s(t) x_hat with f = s'/s: on fdm-vp (s from 1 down to 5e-4) it
    only lands on the data variance if s, s' and the frame are consistent."""
    model = GaussianModel((8,), var=0.5, process="fdm-vp")
    res = solverzoo.sample(model, "euler_maruyama", nfe=400, num_samples=1000, dtype=D64)
    assert torch.isfinite(res.samples).all()
    assert abs(float(res.samples.var()) - 0.5) < 0.05
    assert get_solver("euler_maruyama").make_grid(model.process, 10).sigma[0] == pytest.approx(model.process.sigma_max)
