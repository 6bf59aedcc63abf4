"""Processes in the EDM frame x_t = s(t) (x0 + sigma(t) n): schedules, derivatives, inverses.

Every check is against an independent formula (finite differences, the score_sde
marginals written out here, the VP identity s^2 (1 + sigma^2) = 1), in float64.
"""

from __future__ import annotations

import math

import pytest
import torch

from solverzoo.processes import EDMProcess, Process, VEProcess, VPProcess, get_process, list_processes

F64 = torch.float64
CORE = ("ve", "vp", "edm")


def times(process: Process, n: int = 41) -> torch.Tensor:
    """Interior times of the process's interval, log-spaced so the small-t end is covered."""
    lo, hi = process.t_min, process.t_max
    return torch.exp(torch.linspace(math.log(lo), math.log(hi), n, dtype=F64))[1:-1]


def central_diff(fn, t: torch.Tensor) -> torch.Tensor:
    # t spans several decades: a relative step, floored so round-off stays below 1e-9
    h = 1e-5 * t.clamp_min(1e-2)
    return (fn(t + h) - fn(t - h)) / (2 * h)


@pytest.fixture(params=CORE)
def process(request) -> Process:
    return get_process(request.param)


# ---------------------------------------------------------------------------------
# derivatives
# ---------------------------------------------------------------------------------
def test_sigma_deriv_matches_central_differences(process):
    t = times(process)
    fd = central_diff(process.sigma, t)
    torch.testing.assert_close(process.sigma_deriv(t), fd, rtol=1e-6, atol=0)


def test_s_deriv_matches_central_differences(process):
    t = times(process)
    fd = central_diff(process.s, t)
    # s' = 0 exactly for VE/EDM; relative check for VP
    torch.testing.assert_close(process.s_deriv(t), fd, rtol=1e-6, atol=1e-12)


def test_drift_and_diffusion_of_the_forward_sde(process):
    """f = d log s / dt and g^2 = d(s^2 sigma^2)/dt - 2 f s^2 sigma^2 (variance of the noise part)."""
    t = times(process)
    f_fd = central_diff(lambda u: torch.log(process.s(u)), t)
    torch.testing.assert_close(process.drift_coef(t), f_fd, rtol=1e-6, atol=1e-12)
    var = lambda u: (process.s(u) * process.sigma(u)) ** 2  # noqa: E731
    g2_fd = central_diff(var, t) - 2 * process.drift_coef(t) * var(t)
    torch.testing.assert_close(process.diffusion_sq(t), g2_fd, rtol=1e-6, atol=1e-12)


def test_returns_float64(process):
    t = torch.tensor([0.5], dtype=torch.float32)
    for fn in (process.sigma, process.sigma_deriv, process.s, process.s_deriv, process.lambda_):
        assert fn(t).dtype == F64
    assert process.t_of_sigma(torch.tensor([1.0])).dtype == F64


# ---------------------------------------------------------------------------------
# inverses and identities
# ---------------------------------------------------------------------------------
def test_t_of_sigma_inverts_sigma(process):
    t = times(process)
    torch.testing.assert_close(process.t_of_sigma(process.sigma(t)), t, rtol=1e-10, atol=0)
    sig = torch.exp(torch.linspace(math.log(process.sigma_min), math.log(process.sigma_max), 33, dtype=F64))
    torch.testing.assert_close(process.sigma(process.t_of_sigma(sig)), sig, rtol=1e-10, atol=0)
    torch.testing.assert_close(process.s_of_sigma(sig), process.s(process.t_of_sigma(sig)), rtol=1e-14, atol=0)


def test_sigma_range_matches_time_range(process):
    sigma_at = lambda t: process.sigma(torch.tensor(t, dtype=F64)).item()  # noqa: E731
    if process.name == "ve":
        # score_sde VE: sigma_min is sigma(0); sampling stops at eps = 1e-5, slightly above it
        assert sigma_at(0.0) == pytest.approx(process.sigma_min, rel=1e-14)
        assert process.sigma_min < sigma_at(process.t_min) < process.sigma_min * 1.001
    else:
        assert sigma_at(process.t_min) == pytest.approx(process.sigma_min, rel=1e-12)
    assert sigma_at(process.t_max) == pytest.approx(process.sigma_max, rel=1e-12)


def test_lambda_is_minus_log_sigma(process):
    t = times(process)
    torch.testing.assert_close(process.lambda_(t), -torch.log(process.sigma(t)), rtol=0, atol=0)
    # and decreasing in t (log-SNR falls as noise is added)
    assert (process.lambda_(t)[1:] < process.lambda_(t)[:-1]).all()


def test_sigma_increasing(process):
    t = times(process)
    assert (process.sigma(t)[1:] > process.sigma(t)[:-1]).all()
    assert (process.sigma_deriv(t) > 0).all()


# ---------------------------------------------------------------------------------
# each process against its paper's formulas
# ---------------------------------------------------------------------------------
def test_ve_is_score_sde_vesde():
    """score_sde VESDE.marginal_prob: std = sigma_min (sigma_max / sigma_min)^t, mean = x."""
    p = VEProcess(sigma_min=0.01, sigma_max=50.0)
    t = torch.linspace(0, 1, 11, dtype=F64)
    std = torch.tensor([0.01 * (50.0 / 0.01) ** v for v in t.tolist()], dtype=F64)
    torch.testing.assert_close(p.sigma(t), std, rtol=1e-13, atol=0)
    torch.testing.assert_close(p.s(t), torch.ones_like(t), rtol=0, atol=0)
    torch.testing.assert_close(p.s_deriv(t), torch.zeros_like(t), rtol=0, atol=0)
    # score_sde VESDE.sde: g = sigma(t) sqrt(2 log(sigma_max / sigma_min))
    torch.testing.assert_close(p.diffusion_sq(t), std**2 * 2 * math.log(5000.0), rtol=1e-13, atol=0)
    assert p.t_min == 1e-5 and p.t_max == 1.0


def test_vp_is_score_sde_vpsde():
    """score_sde VPSDE: log_mean_coeff = -t^2 (b1 - b0) / 4 - t b0 / 2, std = sqrt(1 - e^(2 lmc));
    drift -beta x / 2, diffusion sqrt(beta). In the EDM frame s = mean coeff, s sigma = std."""
    b0, b1 = 0.1, 20.0
    p = VPProcess(beta_min=b0, beta_max=b1)
    t = torch.linspace(1e-3, 1, 21, dtype=F64)
    lmc = -0.25 * t**2 * (b1 - b0) - 0.5 * t * b0
    torch.testing.assert_close(p.s(t), torch.exp(lmc), rtol=1e-13, atol=0)
    torch.testing.assert_close(p.s(t) * p.sigma(t), torch.sqrt(1 - torch.exp(2 * lmc)), rtol=1e-12, atol=0)
    beta = b0 + t * (b1 - b0)
    torch.testing.assert_close(p.drift_coef(t), -0.5 * beta, rtol=1e-13, atol=0)
    torch.testing.assert_close(p.diffusion_sq(t), beta, rtol=1e-12, atol=0)
    assert p.t_min == 1e-3 and p.t_max == 1.0


def test_vp_variance_preserving():
    p = VPProcess()
    t = torch.linspace(0, 1, 51, dtype=F64)
    torch.testing.assert_close(p.s(t) ** 2 * (1 + p.sigma(t) ** 2), torch.ones_like(t), rtol=1e-13, atol=0)


@pytest.mark.parametrize("beta_min,beta_max", [(0.1, 20.0), (0.1, 10.0), (0.5, 5.0)])
def test_vp_sigma_at_t1(beta_min, beta_max):
    """EDM Table 1: sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1); 0.1..20 gives 152.167."""
    p = VPProcess(beta_min=beta_min, beta_max=beta_max)
    expected = math.sqrt(math.expm1(beta_min + 0.5 * (beta_max - beta_min)))
    assert p.sigma(torch.tensor(1.0)).item() == pytest.approx(expected, rel=1e-13)
    assert p.sigma_max == pytest.approx(expected, rel=1e-13)
    if (beta_min, beta_max) == (0.1, 20.0):
        assert p.sigma_max == pytest.approx(152.167, abs=1e-3)
        # sigma_min is sigma(eps = 1e-3)
        assert p.sigma_min == pytest.approx(math.sqrt(math.expm1(0.1e-3 + 0.5 * 19.9e-6)), rel=1e-12)


def test_vp_sigma_at_zero_is_zero_and_s_is_one():
    p = VPProcess()
    assert p.sigma(torch.tensor(0.0)).item() == 0.0
    assert p.s(torch.tensor(0.0)).item() == 1.0
    assert p.t_of_sigma(torch.tensor(0.0)).item() == 0.0


def test_edm_is_identity_time():
    p = EDMProcess()
    t = torch.tensor([0.002, 0.5, 1.0, 80.0], dtype=F64)
    torch.testing.assert_close(p.sigma(t), t, rtol=0, atol=0)
    torch.testing.assert_close(p.t_of_sigma(t), t, rtol=0, atol=0)
    torch.testing.assert_close(p.s(t), torch.ones_like(t), rtol=0, atol=0)
    assert (p.sigma_min, p.sigma_max) == (0.002, 80.0)
    # the returned tensor must not alias the input (solvers may modify grids in place)
    out = p.sigma(t)
    out[0] = -1.0
    assert t[0] == 0.002


# ---------------------------------------------------------------------------------
# registry and validation
# ---------------------------------------------------------------------------------
def test_registry_contains_core_processes():
    for name in CORE:
        assert name in list_processes()
        assert get_process(name).name == name


def test_get_process_passes_through_an_instance():
    p = VEProcess(sigma_min=0.02, sigma_max=10.0)
    assert get_process(p) is p


def test_get_process_options():
    p = get_process("ve", sigma_min=0.02, sigma_max=378.0)
    assert (p.sigma_min, p.sigma_max) == (0.02, 378.0)
    p = get_process("vp", beta_min=0.1, beta_max=10.0)
    assert p.describe()["beta_max"] == pytest.approx(10.0)


def test_get_process_unknown_name_lists_choices():
    with pytest.raises(ValueError) as err:
        get_process("vpp")
    msg = str(err.value)
    assert "vpp" in msg
    for name in list_processes():
        assert name in msg


@pytest.mark.parametrize(
    "name,options",
    [
        ("ve", dict(sigma_min=0.0)),
        ("ve", dict(sigma_min=5.0, sigma_max=1.0)),
        ("vp", dict(beta_min=0.0)),
        ("vp", dict(beta_min=20.0, beta_max=0.1)),
        ("edm", dict(sigma_min=-1.0)),
        ("edm", dict(sigma_min=80.0, sigma_max=80.0)),
    ],
)
def test_invalid_parameters_raise(name, options):
    with pytest.raises(ValueError):
        get_process(name, **options)
