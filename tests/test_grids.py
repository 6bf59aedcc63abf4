"""Step grids: Karras Eq. 5, geometric, uniform_t, the final step, and the NaN traps."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solverzoo.grids import FINALS, GRIDS, Grid, from_sigmas, geometric, karras, list_grids, make_grid, uniform_t
from solverzoo.processes import get_process

F64 = torch.float64


def eq5_karras(n: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    """Karras et al. 2022, Eq. 5 (i < N), written with python floats; sigma_N = 0."""
    out = []
    for i in range(n):
        frac = i / (n - 1) if n > 1 else 0.0
        out.append((sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho)
    return out + [0.0]


def kdiffusion_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """k-diffusion's get_sigmas_karras: ramp = linspace(0, 1, n), then append_zero."""
    ramp = torch.linspace(0, 1, n, dtype=F64)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


# ---------------------------------------------------------------------------------
# karras
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 2, 5, 18, 79])
@pytest.mark.parametrize("rho", [1.0, 3.0, 7.0, 11.5])
def test_karras_matches_eq5(steps, rho):
    p = get_process("edm")
    g = karras(p, steps, rho=rho)
    assert g.final == "zero" and g.steps == steps and len(g.sigma) == steps + 1
    expected = torch.tensor(eq5_karras(steps, 0.002, 80.0, rho), dtype=F64)
    # atol: Eq. 5 evaluated as written cancels at the sigma_min end (80 - 79.998)
    torch.testing.assert_close(g.sigma, expected, rtol=1e-12, atol=1e-13)
    assert g.sigma[-1].item() == 0.0


@pytest.mark.parametrize("steps", [2, 10, 40])
@pytest.mark.parametrize("proc", ["edm", "ve", "vp"])
def test_karras_matches_kdiffusion(steps, proc):
    """k-diffusion: n sigmas from sigma_max to sigma_min, then 0 -- over the process's own range."""
    p = get_process(proc)
    g = make_grid("karras", p, steps)
    torch.testing.assert_close(g.sigma, kdiffusion_karras(steps, p.sigma_min, p.sigma_max), rtol=1e-12, atol=0)


def test_karras_sigma_min_final_includes_both_ends():
    p = get_process("edm")
    g = karras(p, 10, final="sigma_min")
    assert len(g.sigma) == 11 and g.steps == 10
    assert g.sigma[0].item() == pytest.approx(80.0, rel=1e-14)
    assert g.sigma[-1].item() == pytest.approx(0.002, rel=1e-13)
    # the same ramp as Eq. 5 with N + 1 points (no appended zero)
    torch.testing.assert_close(g.sigma, torch.tensor(eq5_karras(11, 0.002, 80.0, 7.0)[:-1], dtype=F64),
                               rtol=1e-12, atol=0)


def test_karras_custom_range():
    p = get_process("edm")
    g = make_grid("karras", p, 6, sigma_min=0.05, sigma_max=10.0, rho=3.0)
    torch.testing.assert_close(g.sigma, torch.tensor(eq5_karras(6, 0.05, 10.0, 3.0), dtype=F64), rtol=1e-12, atol=0)


def test_karras_rho_must_be_positive():
    for rho in (0.0, -7.0):
        with pytest.raises(ValueError, match="rho"):
            karras(get_process("edm"), 10, rho=rho)


# ---------------------------------------------------------------------------------
# geometric / uniform_lambda / uniform_t
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("proc", ["ve", "edm", "vp"])
@pytest.mark.parametrize("steps", [1, 7, 100])
def test_geometric_endpoints_and_ratio(proc, steps):
    p = get_process(proc)
    g = geometric(p, steps, final="sigma_min")
    assert g.sigma[0].item() == pytest.approx(p.sigma_max, rel=1e-14)
    assert g.sigma[-1].item() == pytest.approx(p.sigma_min, rel=1e-14)
    ratios = g.sigma[1:] / g.sigma[:-1]
    expected = (p.sigma_min / p.sigma_max) ** (1 / steps)
    torch.testing.assert_close(ratios, torch.full_like(ratios, expected), rtol=1e-12, atol=0)
    # final="zero": `steps` geometric nodes from sigma_max down to sigma_min, then 0
    z = geometric(p, steps, final="zero")
    assert len(z.sigma) == steps + 1 and z.sigma[-1].item() == 0.0
    assert z.sigma[0].item() == pytest.approx(p.sigma_max, rel=1e-14)
    if steps > 1:
        assert z.sigma[-2].item() == pytest.approx(p.sigma_min, rel=1e-14)
        expected = (p.sigma_min / p.sigma_max) ** (1 / (steps - 1))
        r = z.sigma[1:-1] / z.sigma[:-2]
        torch.testing.assert_close(r, torch.full_like(r, expected), rtol=1e-12, atol=0)


def test_uniform_lambda_is_uniform_in_minus_log_sigma():
    p = get_process("edm")
    g = make_grid("uniform_lambda", p, 12, final="sigma_min")
    assert g.name == "uniform_lambda"
    lam = g.lambda_
    h = lam[1:] - lam[:-1]
    torch.testing.assert_close(h, torch.full_like(h, math.log(80.0 / 0.002) / 12), rtol=1e-12, atol=0)
    torch.testing.assert_close(g.sigma, geometric(p, 12, final="sigma_min").sigma, rtol=0, atol=0)


@pytest.mark.parametrize("final", FINALS)
@pytest.mark.parametrize("steps", [1, 10, 1000])
def test_uniform_t_on_ve_is_geometric(final, steps):
    """score_sde VE: linspace(1, eps, N) in t is geometric in sigma between sigma(eps) and sigma(1)."""
    p = get_process("ve")
    g = uniform_t(p, steps, final=final)
    lo = p.sigma(torch.tensor(p.t_min, dtype=F64)).item()
    hi = p.sigma(torch.tensor(p.t_max, dtype=F64)).item()
    ref = geometric(p, steps, final=final, sigma_min=lo, sigma_max=hi)
    torch.testing.assert_close(g.sigma, ref.sigma, rtol=1e-12, atol=0)
    n = steps if final == "zero" else steps + 1
    torch.testing.assert_close(g.t[:n], torch.linspace(1, p.t_min, n, dtype=F64), rtol=1e-9, atol=1e-12)


def test_uniform_t_on_vp_matches_the_process():
    p = get_process("vp")
    g = uniform_t(p, 20, final="sigma_min")
    t = torch.linspace(1.0, 1e-3, 21, dtype=F64)
    torch.testing.assert_close(g.sigma, p.sigma(t), rtol=1e-14, atol=0)
    torch.testing.assert_close(g.t, t, rtol=1e-10, atol=0)
    torch.testing.assert_close(g.s, p.s(t), rtol=1e-12, atol=0)
    torch.testing.assert_close(g.s**2 * (1 + g.sigma**2), torch.ones_like(t), rtol=1e-13, atol=0)


def test_uniform_t_bad_range():
    with pytest.raises(ValueError, match="t_min"):
        uniform_t(get_process("vp"), 10, t_min=0.5, t_max=0.5)


# ---------------------------------------------------------------------------------
# the final step
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GRIDS))
@pytest.mark.parametrize("proc", ["ve", "vp", "edm"])
def test_final_zero_appends_zero_sigma_min_does_not(name, proc):
    p = get_process(proc)
    z = make_grid(name, p, 8, final="zero")
    m = make_grid(name, p, 8, final="sigma_min")
    assert z.final == "zero" and m.final == "sigma_min"
    assert z.steps == m.steps == 8 and len(z.sigma) == len(m.sigma) == 9
    assert z.sigma[-1].item() == 0.0 and m.sigma[-1].item() > 0
    assert z.sigma[0].item() == m.sigma[0].item()
    # both end at the smallest trained noise level before any zero; grids in the process's own
    # time (uniform_t, quadratic) end at sigma(t_min); k-diffusion's vp grid at its own sigma(eps_s = 1e-3)
    if name in ("uniform_t", "quadratic"):
        sig_lo = p.sigma(torch.tensor(p.t_min, dtype=F64)).item()
    elif name == "vp":
        sig_lo = math.sqrt(math.expm1(19.9 * 1e-3**2 / 2 + 0.1 * 1e-3))
    else:
        sig_lo = p.sigma_min
    assert m.sigma[-1].item() == pytest.approx(sig_lo, rel=1e-12)
    assert z.sigma[-2].item() == pytest.approx(sig_lo, rel=1e-12)
    # t and s consistent with the process at every positive node
    for g in (z, m):
        pos = g.sigma > 0
        torch.testing.assert_close(g.sigma[pos], p.sigma(g.t[pos]), rtol=1e-10, atol=0)
        torch.testing.assert_close(g.s[pos], p.s(g.t[pos]), rtol=1e-14, atol=0)
    # the zero node: s = s(t -> 0) = 1 for these processes; t = 0 where sigma(0) = 0, -inf on VE
    assert z.s[-1].item() == 1.0
    assert z.t[-1].item() == (float("-inf") if proc == "ve" else 0.0)
    assert not torch.isnan(z.t).any() and not torch.isnan(z.s).any()


def test_grid_properties():
    g = karras(get_process("edm"), 4)
    assert g.sigmas() == g.sigma.tolist()
    assert g.lambda_[-1].item() == float("inf")
    d = g.describe()
    assert d["steps"] == 4 and d["final"] == "zero" and d["sigma"][-1] == 0.0


# ---------------------------------------------------------------------------------
# explicit sigmas
# ---------------------------------------------------------------------------------
def test_from_sigmas_trailing_zero_means_final_zero():
    p = get_process("edm")
    g = from_sigmas(p, [80.0, 10.0, 1.0, 0.0])
    assert g.final == "zero" and g.steps == 3 and g.sigma.tolist() == [80.0, 10.0, 1.0, 0.0]
    g = from_sigmas(p, [80.0, 10.0, 1.0])
    assert g.final == "sigma_min" and g.steps == 2 and g.sigma.tolist() == [80.0, 10.0, 1.0]
    g = from_sigmas(p, [80.0, 10.0, 1.0], final="zero")
    assert g.sigma.tolist() == [80.0, 10.0, 1.0, 0.0]
    with pytest.raises(ValueError):
        from_sigmas(p, [80.0, 1.0, 0.0], final="sigma_min")


@pytest.mark.parametrize(
    "sigmas",
    [
        [80.0, 1.0, 0.002, 0.002],  # duplicated last sigma: a zero-length step (h = 0)
        [80.0, 1.0, 0.002, 0.002, 0.0],
        [80.0, 80.0, 1.0, 0.0],
        [1.0, 2.0, 0.0],  # increasing
        [80.0, 0.0, 0.0],  # two zeros
        [5.0, 1.0, 3.0],
    ],
)
def test_from_sigmas_rejects_non_decreasing(sigmas):
    with pytest.raises(ValueError, match="strictly decreasing"):
        from_sigmas(get_process("edm"), sigmas)


@pytest.mark.parametrize("sigmas", [[], [1.0], [0.0], [float("nan"), 1.0], [float("inf"), 1.0, 0.0], [1.0, -0.5]])
def test_from_sigmas_rejects_degenerate(sigmas):
    with pytest.raises(ValueError):
        from_sigmas(get_process("edm"), sigmas)


# ---------------------------------------------------------------------------------
# the NaN traps and the error messages
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["karras", "geometric", "uniform_lambda"])
@pytest.mark.parametrize("sigma_min", [0.0, -0.01])
def test_sigma_min_nonpositive_raises_clear_error(name, sigma_min):
    """log 0 / 0^(1/rho) would give NaN or a duplicated zero: a ValueError naming sigma_min instead."""
    with pytest.raises(ValueError, match="sigma_min"):
        make_grid(name, get_process("edm"), 10, sigma_min=sigma_min)


@pytest.mark.parametrize("name", sorted(GRIDS))
@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_bad_steps_raise(name, steps):
    with pytest.raises(ValueError, match="steps"):
        make_grid(name, get_process("edm"), steps)


def test_sigma_range_reversed_raises():
    with pytest.raises(ValueError, match="sigma_min"):
        make_grid("karras", get_process("edm"), 10, sigma_min=10.0, sigma_max=1.0)


def test_unknown_grid_lists_choices():
    with pytest.raises(ValueError) as err:
        make_grid("karas", get_process("edm"), 10)
    assert "karas" in str(err.value)
    for name in list_grids():
        assert name in str(err.value)


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_unknown_final_lists_choices(name):
    with pytest.raises(ValueError) as err:
        make_grid(name, get_process("edm"), 10, final="zer0")
    assert "zer0" in str(err.value)
    for final in FINALS:
        assert final in str(err.value)


def test_unknown_grid_option_is_a_value_error():
    with pytest.raises(ValueError, match="rho"):
        make_grid("geometric", get_process("ve"), 10, rho=7.0)


# ---------------------------------------------------------------------------------
# fuzzing: a valid grid or a ValueError, never NaN and never another exception
# ---------------------------------------------------------------------------------
def check_valid(g: Grid, steps: int, final: str) -> None:
    assert isinstance(g, Grid)
    assert g.sigma.dtype == F64 and g.steps == steps and len(g.sigma) == steps + 1
    assert len(g.t) == len(g.s) == len(g.sigma)
    assert torch.isfinite(g.sigma).all()
    assert (g.sigma[1:] < g.sigma[:-1]).all()
    assert g.final == final
    if final == "zero":
        assert g.sigma[-1].item() == 0.0
    else:
        assert g.sigma[-1].item() >= 0.0
    assert not torch.isnan(g.t).any() and not torch.isnan(g.s).any()
    assert torch.isfinite(g.s).all() and (g.s > 0).all()


sigma_values = st.one_of(
    st.floats(min_value=1e-6, max_value=1e4), st.sampled_from([0.0, -1.0, 1e-300, float("nan"), float("inf")])
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(GRIDS) + ["bogus"]),
    proc=st.sampled_from(["ve", "vp", "edm"]),
    steps=st.one_of(st.integers(min_value=1, max_value=200), st.sampled_from([0, -1])),
    rho=st.one_of(st.floats(min_value=0.05, max_value=50.0), st.sampled_from([0.0, -2.0, float("nan"), float("inf")])),
    lo=sigma_values,
    hi=sigma_values,
    final=st.sampled_from(list(FINALS) + ["none"]),
    use_range=st.booleans(),
)
def test_fuzz_grids(name, proc, steps, rho, lo, hi, final, use_range):
    p = get_process(proc)
    options: dict = {}
    if name == "karras":
        options["rho"] = rho
    if use_range:
        if name == "uniform_t":
            # times: map the fuzzed values into plausible and implausible t ranges
            options.update(t_min=lo if lo <= 1 else lo / 1e4, t_max=hi if hi <= 1 else 1.0)
        else:
            options.update(sigma_min=lo, sigma_max=hi)
    try:
        g = make_grid(name, p, steps, final=final, **options)
    except ValueError:
        return
    check_valid(g, steps, final)


@settings(max_examples=200, deadline=None)
@given(
    sigmas=st.lists(st.one_of(st.floats(min_value=-1.0, max_value=1e3), st.just(0.0)), min_size=0, max_size=12),
    final=st.sampled_from([None, "zero", "sigma_min"]),
)
def test_fuzz_from_sigmas(sigmas, final):
    try:
        g = from_sigmas(get_process("edm"), sigmas, final=final)
    except ValueError:
        return
    check_valid(g, len(g.sigma) - 1, g.final)
    assert g.steps >= 1


# ---------------------------------------------------------------------------------
# kl_optimal (Align Your Steps, Sabour et al. 2024, Sec. 3.1)
# ---------------------------------------------------------------------------------
def ays_kl_optimal(n: int, sigma_min: float, sigma_max: float) -> list[float]:
    """sigma_i = tan((1 - i/(n-1)) atan(sigma_max) + i/(n-1) atan(sigma_min)), python floats."""
    if n == 1:
        return [sigma_max]
    return [math.tan((1 - i / (n - 1)) * math.atan(sigma_max) + i / (n - 1) * math.atan(sigma_min))
            for i in range(n)]


@pytest.mark.parametrize("steps", [1, 2, 5, 10, 37])
@pytest.mark.parametrize("proc", ["ve", "vp", "edm"])
def test_kl_optimal_matches_the_closed_form(steps, proc):
    p = get_process(proc)
    zero = make_grid("kl_optimal", p, steps, final="zero")
    assert zero.steps == steps and zero.name == "kl_optimal"
    assert zero.sigmas() == pytest.approx(ays_kl_optimal(steps, p.sigma_min, p.sigma_max) + [0.0], rel=1e-12, abs=0)
    last = make_grid("kl_optimal", p, steps, final="sigma_min")
    assert last.steps == steps
    assert last.sigmas() == pytest.approx(ays_kl_optimal(steps + 1, p.sigma_min, p.sigma_max), rel=1e-12, abs=0)
    # exact endpoints
    assert zero.sigmas()[0] == p.sigma_max and last.sigmas()[0] == p.sigma_max and last.sigmas()[-1] == p.sigma_min
    if steps > 1:
        assert zero.sigmas()[-2] == p.sigma_min


def test_kl_optimal_is_uniform_in_atan_sigma_and_respects_a_custom_range():
    g = make_grid("kl_optimal", get_process("edm"), 8, final="sigma_min", sigma_min=0.05, sigma_max=20.0)
    angles = torch.atan(g.sigma)
    steps = angles[:-1] - angles[1:]
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-12, atol=0)
    assert g.sigmas()[0] == 20.0 and g.sigmas()[-1] == 0.05
    # it is not the geometric nor the Karras grid: check one interior node against the formula by hand
    a_hi, a_lo = math.atan(20.0), math.atan(0.05)
    assert g.sigmas()[4] == pytest.approx(math.tan(0.5 * a_hi + 0.5 * a_lo), rel=1e-13)
    with pytest.raises(ValueError, match="sigma_min"):
        make_grid("kl_optimal", get_process("edm"), 8, sigma_min=0.0)
