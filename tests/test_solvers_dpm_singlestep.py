"""Singlestep DPM-Solver (Lu et al. 2022): ``dpm_solver_fast`` and ``dpm_solver_adaptive``.

* float64 parity with k-diffusion's ``sample_dpm_fast`` / ``sample_dpm_adaptive`` on a Gaussian's exact
  denoiser, through ``solverzoo.k_diffusion``'s drop-ins (results, callbacks, the controller's counts);
* DPM-Solver-fast spends exactly the requested NFE (counted), for every residue of NFE mod 3;
* its convergence order on the exact flow: 3 when NFE = 2 (mod 3), 2 when the schedule ends with a
  first-order step;
* the adaptive solver reports its counted NFE and its controller's record, and converges with its tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch

import solverzoo
import solverzoo.k_diffusion as zoo_kd
from solverzoo.models.gaussian import GaussianModel
from solverzoo.noise import INIT, NoiseSource
from solverzoo.solvers import get_solver
from solverzoo.solvers.dpm_singlestep import fast_orders

k_sampling = pytest.importorskip("k_diffusion.sampling", reason="needs k-diffusion (pip install '.[parity]')")

F64 = torch.float64
#: variances 1e-2..1e4: the flow bends at every sigma of 80 -> 0.05 (tests/test_orders.py)
WIDE = GaussianModel(shape=(8,), mean=torch.linspace(-1, 1, 8), var=torch.logspace(-2, 4, 8)).to("cpu", F64)
SMAX, SMIN = 80.0, 0.002
#: parity tolerance on samples of size ~50: k-diffusion computes its coefficients from the same float64
#: lambdas in another order (rounding at 1e-16 relative, amplified by e^h of a single step over the whole range
#: at n = 2 to 5e-12)
TOL = 1e-11


@pytest.fixture
def float64_default():
    """k-diffusion builds its lambda grid and tolerances in the default dtype: float64 for the parity runs."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(previous)


class Counted:
    """The exact denoiser of WIDE as a k-diffusion model, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, sigma):
        self.calls += 1
        return WIDE.denoise(x, sigma)


def start(batch: int = 4) -> torch.Tensor:
    return SMAX * NoiseSource(0, range(batch), INIT, dtype=F64).randn(WIDE.shape)


def keyed_noise(a, b) -> torch.Tensor:
    """A noise sampler that answers an interval with the same draw whoever asks (zoo or k-diffusion)."""
    key = (round(math.log(float(a)), 9), round(math.log(float(b)), 9))
    seed = int(abs(key[0]) * 1e6) * 7919 + int(abs(key[1]) * 1e6)
    return torch.randn(4, *WIDE.shape, generator=torch.Generator().manual_seed(seed % 2**62), dtype=F64)


def range_args() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(SMIN, dtype=F64), torch.tensor(SMAX, dtype=F64)


# ----------------------------------------------------------------------------- DPM-Solver-fast
def test_fast_orders_are_the_papers_schedule():
    """Sec. 3.4: K = floor(N/3) + 1 steps, [3, ..., 3, 2, 1] when 3 | N, else [3, ..., 3, N mod 3]."""
    assert fast_orders(1) == [1] and fast_orders(2) == [2] and fast_orders(3) == [2, 1]
    assert fast_orders(10) == [3, 3, 3, 1] and fast_orders(11) == [3, 3, 3, 2] and fast_orders(12) == [3, 3, 3, 2, 1]
    for nfe in range(1, 40):
        orders = fast_orders(nfe)
        assert sum(orders) == nfe and len(orders) == nfe // 3 + 1 and set(orders[:-2]) <= {3}
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="NFE"):
            fast_orders(bad)


@pytest.mark.parametrize("final", ["sigma_min", "zero"])
def test_fast_spends_exactly_the_requested_nfe(final):
    """NFE 1..14 (every residue mod 3) and 20, 31: the counted calls are the budget, on either final."""
    for nfe in [*range(1, 15), 20, 31]:
        r = solverzoo.sample(WIDE, "dpm_solver_fast", nfe=nfe, num_samples=2, seed=0, dtype=F64, final=final)
        assert r.nfe == nfe == r.steps, (final, nfe, r.nfe)
        # one grid node per call (then sigma_min, and 0 on final='zero')
        assert len(r.grid.sigmas()) == nfe + 1


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 11, 20])
def test_fast_equals_k_diffusion(float64_default, n):
    x = start()
    ours_model, theirs_model = Counted(), Counted()
    ours_calls, theirs_calls = [], []
    ours = zoo_kd.sample_dpm_fast(ours_model, x.clone(), SMIN, SMAX, n, callback=ours_calls.append)
    theirs = k_sampling.sample_dpm_fast(theirs_model, x.clone(), *range_args(), n, disable=True,
                                        callback=theirs_calls.append)
    diff = (ours - theirs).abs().max().item()
    assert ours.dtype == F64 and diff <= TOL, f"n={n}: max |solverzoo - k-diffusion| = {diff:.3e}"
    assert ours_model.calls == theirs_model.calls == n
    assert len(ours_calls) == len(theirs_calls) == len(fast_orders(n))
    for a, b in zip(ours_calls, theirs_calls):
        assert set(a) == set(b) and a["i"] == b["i"]
        for key in ("x", "sigma", "sigma_hat", "denoised", "t", "t_up"):
            assert (torch.as_tensor(a[key]) - torch.as_tensor(b[key])).abs().max().item() <= TOL, key


@pytest.mark.parametrize("n,eta", [(7, 0.5), (10, 1.0), (9, 2.0)])
def test_fast_ancestral_equals_k_diffusion(float64_default, n, eta):
    """eta > 0: steps to sigma_down (clamped at sigma_min, eta = 2) with stages at the same fractions."""
    x = start()
    kwargs = dict(eta=eta, s_noise=0.9, noise_sampler=keyed_noise)
    ours = zoo_kd.sample_dpm_fast(WIDE.denoise, x.clone(), SMIN, SMAX, n, **kwargs)
    theirs = k_sampling.sample_dpm_fast(WIDE.denoise, x.clone(), *range_args(), n, disable=True, **kwargs)
    assert (ours - theirs).abs().max().item() <= TOL
    deterministic = zoo_kd.sample_dpm_fast(WIDE.denoise, x.clone(), SMIN, SMAX, n)
    assert (ours - deterministic).abs().max().item() > 1e-3  # the noise is there


def test_fast_ancestral_is_batch_invariant():
    """eta > 0 draws per-sample noise: sample i is the same at any batch size (cpu and philox streams)."""
    for noise in ("cpu", "philox"):
        kw = dict(nfe=10, num_samples=6, seed=3, eta=0.5, noise=noise, dtype=F64)
        full = solverzoo.sample(WIDE, "dpm_solver_fast", **kw).samples
        assert torch.equal(full, solverzoo.sample(WIDE, "dpm_solver_fast", batch_size=4, **kw).samples)
        assert get_solver("dpm_solver_fast", eta=0.5).stochastic and not get_solver("dpm_solver_fast").stochastic


def flow_error(nfe: int, grid: str = "uniform_lambda") -> float:
    """max |x - exact flow at sigma_min| of a fast run of ``nfe`` calls, 80 -> 0.05 (the outer grid ``grid``)."""
    r = solverzoo.sample(WIDE, "dpm_solver_fast", nfe=nfe, num_samples=4, seed=0, dtype=F64, grid=grid,
                         grid_options={"sigma_min": 0.05, "sigma_max": SMAX})
    z = NoiseSource(0, range(4), INIT, dtype=F64).randn(WIDE.shape)
    return (r.samples - WIDE.ode_flow(SMAX * z, SMAX, 0.05)).abs().max().item()


@pytest.mark.parametrize("nfe,doubled,grid,order", [(47, 95, "uniform_lambda", 3), (47, 95, "karras", 3),
                                                     (63, 129, "karras", 2)])
def test_fast_convergence_order(nfe, doubled, grid, order):
    """Against the exact flow, twice the steps: NFE 47 -> 95 (K = 16 -> 32 steps, orders [3, ..., 3, 2]) is
    third order; NFE 63 -> 129 (K = 22 -> 44, [3, ..., 3, 2, 1]) second order, the listed one: the last
    first-order step's O(h^2).  (Uniform in lambda, the default, that term is still below the rest at 63 -> 129:
    slope 2.95; on the Karras outer grid, whose last step is the longest in lambda, it shows: 2.00.)"""
    assert 2 * len(fast_orders(nfe)) == len(fast_orders(doubled)) and nfe % 3 == doubled % 3
    slope = math.log2(flow_error(nfe, grid) / flow_error(doubled, grid))
    assert order - 0.25 <= slope <= order + 0.35, f"NFE {nfe} -> {doubled} on {grid}: slope {slope:.2f}, not {order}"
    assert get_solver("dpm_solver_fast").info.order == 2


# ----------------------------------------------------------------------------- adaptive step size
ADAPTIVE_CASES = [
    {},
    {"order": 2},
    {"rtol": 0.01, "atol": 1e-3},
    {"h_init": 3.0},  # a first step too long: rejected
    {"order": 2, "h_init": 3.0, "pcoeff": 0.1, "dcoeff": 0.05, "accept_safety": 0.9},
]


@pytest.mark.parametrize("options", ADAPTIVE_CASES, ids=[str(o) for o in ADAPTIVE_CASES])
def test_adaptive_equals_k_diffusion(float64_default, options):
    """Same sample, attempts, accepted and rejected steps; the counted NFE is k-diffusion's count less one
    call per rejection (eps at the start of a rejected attempt is kept)."""
    x = start()
    ours_model, theirs_model = Counted(), Counted()
    ours, info = zoo_kd.sample_dpm_adaptive(ours_model, x.clone(), SMIN, SMAX, return_info=True, **options)
    theirs, their_info = k_sampling.sample_dpm_adaptive(theirs_model, x.clone(), *range_args(), disable=True,
                                                        return_info=True, **options)
    diff = (ours - theirs).abs().max().item()
    assert diff <= TOL, f"{options}: max |solverzoo - k-diffusion| = {diff:.3e}"
    assert {k: info[k] for k in ("steps", "n_accept", "n_reject")} == {
        k: their_info[k] for k in ("steps", "n_accept", "n_reject")}
    assert info["nfe"] == ours_model.calls == their_info["nfe"] - info["n_reject"]
    assert their_info["nfe"] == theirs_model.calls
    if "h_init" in options:
        assert info["n_reject"] > 0


def test_adaptive_ancestral_equals_k_diffusion(float64_default):
    """eta > 0: k-diffusion's sigma_up = sqrt(sigma_t^2 - sigma_down^2) loses digits to cancellation on short
    steps (ours is computed without it), so the samples agree to 1e-9 here, not 1e-11."""
    x = start()
    kwargs = dict(order=3, eta=0.7, h_init=1.0, pcoeff=0.1, dcoeff=0.05, rtol=0.02, noise_sampler=keyed_noise)
    ours, info = zoo_kd.sample_dpm_adaptive(WIDE.denoise, x.clone(), SMIN, SMAX, return_info=True, **kwargs)
    theirs, their_info = k_sampling.sample_dpm_adaptive(WIDE.denoise, x.clone(), *range_args(), disable=True,
                                                        return_info=True, **kwargs)
    assert (ours - theirs).abs().max().item() <= 1e-9
    assert (info["n_accept"], info["n_reject"]) == (their_info["n_accept"], their_info["n_reject"])


def test_adaptive_reports_its_counted_nfe_and_record():
    model = Counted()
    x = start()
    out, info = solverzoo.solve(model, x, [SMAX, SMIN], "dpm_solver_adaptive", return_info=True)
    assert info.nfe == model.calls > 0 and set(info.record) == {"steps", "n_accept", "n_reject"}
    assert info.record["steps"] == info.record["n_accept"] + info.record["n_reject"]
    assert info.nfe == 3 * info.record["steps"] - info.record["n_reject"]  # order 3: three calls per attempt
    # through sample(): counted, and an NFE budget is accepted and ignored (as ode_adaptive's)
    r = solverzoo.sample(WIDE, "dpm_solver_adaptive", nfe=5, num_samples=4, seed=0, dtype=F64)
    assert r.nfe_requested == 5 and r.nfe > 5 and r.steps == 1
    zero = solverzoo.sample(WIDE, "dpm_solver_adaptive", num_samples=4, seed=0, dtype=F64, final="zero")
    assert zero.nfe == r.nfe + 1  # the last call x = D(x; sigma_min)
    solver = get_solver("dpm_solver_adaptive")
    assert solver.adaptive and solver.info.order == 3 and get_solver("dpm_solver_adaptive", order=2).info.order == 2
    with pytest.raises(ValueError, match="tolerances"):
        solver.info.nfe_for_steps(3)


def test_adaptive_converges_with_its_tolerance():
    """Tighter tolerances: more calls and a smaller error against the exact flow, to sigma_min."""
    z = NoiseSource(0, range(4), INIT, dtype=F64).randn(WIDE.shape)
    exact = WIDE.ode_flow(SMAX * z, SMAX, SMIN)
    errors, calls = [], []
    for tol in (1e-2, 1e-3, 1e-4):
        r = solverzoo.sample(WIDE, "dpm_solver_adaptive", num_samples=4, seed=0, dtype=F64, rtol=tol, atol=tol)
        errors.append((r.samples - exact).abs().max().item())
        calls.append(r.nfe)
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3, errors
    assert calls[0] < calls[1] < calls[2], calls


def test_adaptive_error_norms():
    """sample_max (default) holds every sample to the tolerance: at least as many calls as the batch RMS."""
    kw = dict(num_samples=4, seed=0, dtype=F64, rtol=1e-3, atol=1e-3)
    worst = solverzoo.sample(WIDE, "dpm_solver_adaptive", **kw)
    batch = solverzoo.sample(WIDE, "dpm_solver_adaptive", error_norm="batch", **kw)
    assert worst.nfe >= batch.nfe and not torch.equal(worst.samples, batch.samples)


@pytest.mark.parametrize("name,options,message", [
    ("dpm_solver_adaptive", {"order": 4}, "order must be 2"),
    ("dpm_solver_adaptive", {"rtol": -1.0}, "rtol >= 0"),
    ("dpm_solver_adaptive", {"rtol": 0.0, "atol": 0.0}, "not both 0"),
    ("dpm_solver_adaptive", {"h_init": 0.0}, "h_init > 0"),
    ("dpm_solver_adaptive", {"error_norm": "l1"}, "error_norm"),
    ("dpm_solver_adaptive", {"eta": -0.5}, "eta >= 0"),
    ("dpm_solver_fast", {"eta": -1.0}, "eta >= 0"),
    ("dpm_solver_fast", {"s_noise": -1.0}, "s_noise >= 0"),
])
def test_bad_options_name_the_problem(name, options, message):
    with pytest.raises(ValueError, match=message):
        get_solver(name, **options)


def test_drop_ins_refuse_a_bad_range():
    x = start()
    for lo, hi in ((0.0, 80.0), (1.0, 0.5), (-1.0, 2.0)):
        with pytest.raises(ValueError, match="sigma_min < sigma_max"):
            zoo_kd.sample_dpm_fast(WIDE.denoise, x, lo, hi, 10)
        with pytest.raises(ValueError, match="sigma_min < sigma_max"):
            zoo_kd.sample_dpm_adaptive(WIDE.denoise, x, lo, hi)
    with pytest.raises(ValueError, match="NFE of at least 1"):
        zoo_kd.sample_dpm_fast(WIDE.denoise, x, SMIN, SMAX, 0)
