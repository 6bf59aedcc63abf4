"""The peer samplers: convergence orders on the Gaussian's exact flow (a wrong coefficient shows as a
wrong slope), the equivalences between them, counted NFE, batch-size independence, convergence of
the stochastic ones in law, and bad options."""

from __future__ import annotations

import math

import pytest
import torch

import solverzoo
from solverzoo.models.gaussian import GaussianModel
from solverzoo.noise import INIT, NoiseSource
from solverzoo.solvers.blocks import SigmaBrownian, ancestral_step, lagrange_weights, phi

GAUSS = GaussianModel(shape=(8,), mean=torch.linspace(-1, 1, 8), var=torch.linspace(0.1, 4, 8))
SMAX, SMIN = 80.0, 0.05


def flow_error(name, steps, grid="karras", final="sigma_min", model=GAUSS, **options):
    """max |x_N - exact flow| from the grid's first to its last sigma (x_0 = sigma_0 z, INIT stream)."""
    r = solverzoo.sample(model, name, steps=steps, num_samples=4, seed=0, dtype=torch.float64, grid=grid, final=final,
                         grid_options=dict(sigma_min=SMIN, sigma_max=SMAX), **options)
    s0, s1 = float(r.grid.sigma[0]), float(r.grid.sigma[-1])
    z = NoiseSource(0, range(4), INIT, dtype=torch.float64).randn(model.shape)
    return (r.samples - model.ode_flow(s0 * z, s0, s1)).abs().max().item()


def slope(name, n, **options):
    return math.log2(flow_error(name, n, **options) / flow_error(name, 2 * n, **options))


NO_LOF = {"lower_order_final": False}
RK = {"warmup": "rk"}  # single-step start: methods of order >= 3 reach it (tests/test_orders.py)
# (solver, options, declared order, step count n: the slope is measured between n and 2n steps).
# On this Gaussian (variances <= 4, far below sigma_max^2) a first-order start is invisible until a
# few hundred steps; tests/test_orders.py measures the listed orders on one where it is not.
ORDERS = [
    ("ddim", {}, 1, 32),
    ("euler_ancestral", {"eta": 0.0}, 1, 32),
    ("dpm2", {}, 2, 32),
    ("dpmpp_2s", {}, 2, 32),
    ("dpmpp_2m", NO_LOF, 2, 32),
    ("dpmpp_2m", {**NO_LOF, "solver_type": "heun"}, 2, 32),
    ("dpmpp_3m", {**NO_LOF, **RK}, 3, 64),
    ("dpmpp_3m", {**NO_LOF, **RK, "solver_type": "midpoint"}, 3, 64),
    ("dpmpp_2m_sde", {"eta": 0.0}, 2, 32),
    ("dpmpp_3m_sde", {"eta": 0.0, **RK}, 3, 64),
    ("lms", {"order": 1}, 1, 32),
    ("lms", {"order": 2}, 2, 64),
    ("lms", {"order": 3, **RK}, 3, 64),
    ("lms", {"order": 4, **RK}, 4, 128),
    ("deis", {"order": 1, **NO_LOF}, 1, 32),
    ("deis", {"order": 2, **NO_LOF}, 2, 32),
    ("deis", {"order": 3, **NO_LOF, **RK}, 3, 64),
    ("unipc", {"order": 1, **NO_LOF}, 2, 32),
    ("unipc", {"order": 2, **NO_LOF}, 3, 64),
    ("unipc", {"order": 2, "variant": "bh1", **NO_LOF}, 3, 64),
    ("unipc", {"order": 2, "corrector": False, **NO_LOF}, 2, 32),
]


@pytest.mark.parametrize("name,options,order,n", ORDERS,
                         ids=[f"{c[0]}-{'-'.join(f'{k}={v}' for k, v in c[1].items())}" for c in ORDERS])
def test_convergence_order(name, options, order, n):
    """Log-log slope of the error against the exact flow on a Karras grid (80 -> 0.05)."""
    s = slope(name, n, **options)
    assert order - 0.25 <= s <= order + 0.35, f"{name} {options}: slope {s:.2f}, declared order {order}"
    assert solverzoo.get_solver(name, **options).info.order == order


def test_upstream_third_order_is_second_order():
    """DPM-Solver / diffusers / k-diffusion weight the D'' term by curve_weight (their phi_3) instead of
    2 curve_weight: order 2."""
    s = slope("dpmpp_3m", 64, third_order="upstream", **NO_LOF)
    assert 1.75 <= s <= 2.3
    assert solverzoo.get_solver("dpmpp_3m", third_order="upstream").info.order == 2


def test_lower_order_final_costs_accuracy_at_many_steps():
    """With lower_order_final the last two steps have orders 2 and 1: at 128 uniform-lambda steps
    their O(h^2) local error dominates the third-order global error."""
    lof = flow_error("dpmpp_3m", 128, grid="uniform_lambda")
    assert lof > 3 * flow_error("dpmpp_3m", 128, grid="uniform_lambda", **NO_LOF)
    assert 1.6 < slope("dpmpp_3m", 128, grid="uniform_lambda") < 2.3


# --- equivalences ----------------------------------------------------------------------------------


def run(name, steps=12, model=GAUSS, num_samples=3, **options):
    """Samples of ``name``; an explicit grid (a list) sets the steps itself."""
    steps = None if isinstance(options.get("grid"), list) else steps
    return solverzoo.sample(model, name, steps=steps, num_samples=num_samples, seed=5, dtype=torch.float64,
                            **options).samples


@pytest.mark.parametrize("final", ["zero", "sigma_min"])
def test_ddim_eta0_is_euler_and_dpm_solver_1(final):
    ddim = run("ddim", grid="karras", final=final)
    for other, options in [("euler", {}), ("euler_ancestral", {"eta": 0.0}), ("etd_erk", {"order": 1}),
                           ("deis", {"order": 1}), ("lms", {"order": 1})]:
        assert torch.allclose(ddim, run(other, grid="karras", final=final, **options), rtol=0, atol=1e-12), other


def test_ddim_eta1_is_ancestral_ddpm_and_seeds1():
    ddim = run("ddim", eta=1.0, grid="karras", final="zero")
    assert torch.allclose(ddim, run("euler_ancestral", eta=1.0, final="zero"), rtol=0, atol=1e-12)
    assert torch.allclose(ddim, run("seeds1", final="zero"), rtol=0, atol=1e-12)


def test_unipc_predictor_is_dpm_solver_pp():
    """UniP-2 (bh2, rho = 1/2) is DPM-Solver++(2M); UniP-3 (bh2) is 3M with the exact D'' weight."""
    for lof in (True, False):
        assert torch.allclose(run("unipc", order=2, corrector=False, lower_order_final=lof),
                              run("dpmpp_2m", grid=None, lower_order_final=lof), rtol=0, atol=1e-12)
    assert torch.allclose(run("unipc", order=3, corrector=False, lower_order_final=False),
                          run("dpmpp_3m", grid=None, solver_type="midpoint", lower_order_final=False),
                          rtol=0, atol=1e-11)


def test_sde_multistep_with_eta0_is_the_ode_solver():
    assert torch.allclose(run("dpmpp_2m_sde", eta=0.0), run("dpmpp_2m", lower_order_final=False), rtol=0, atol=1e-12)
    assert torch.allclose(run("dpmpp_3m_sde", eta=0.0), run("dpmpp_3m", lower_order_final=False), rtol=0, atol=1e-12)


def test_dpmpp_2s_is_etd_erk_2():
    assert torch.allclose(run("dpmpp_2s", final="sigma_min"), run("etd_erk", order=2, final="sigma_min"),
                          rtol=0, atol=1e-12)


def test_dpmpp_sde_without_noise_is_dpmpp_2s():
    assert torch.allclose(run("dpmpp_sde", eta=0.0), run("dpmpp_2s"), rtol=0, atol=1e-12)


def test_denoise_to_zero_is_the_zero_grid():
    """N steps to sigma_min then x = D(x; sigma_min) = the zero grid with nodes sigma_0..sigma_min, 0."""
    grid = solverzoo.make_grid("karras", GAUSS.process, 8, final="sigma_min").sigmas()
    a = run("dpmpp_2m", grid=grid, denoise_to_zero=True, lower_order_final=False)
    b = run("dpmpp_2m", grid=grid + [0.0], lower_order_final=False)
    assert torch.allclose(a, b, rtol=0, atol=1e-12)


# --- helpers ----------------------------------------------------------------------------------------


def test_phi_functions():
    for z in (-40.0, -3.0, -0.7, -0.3, -1e-6, 0.0, 1e-6, 0.3, 2.0):
        assert phi(0, z) == pytest.approx(math.exp(z), rel=1e-14)
        if z != 0:
            assert phi(1, z) == pytest.approx(math.expm1(z) / z, rel=1e-13)
    for k in (1, 2, 3, 4):  # continuity across the series / recursion switch
        assert phi(k, 0.4999999) == pytest.approx(phi(k, 0.5000001), rel=1e-6)
        assert phi(k, 0.0) == pytest.approx(1 / math.factorial(k))


def test_lagrange_weights_integrate_polynomials_exactly():
    nodes, a, b = [3.0, 4.5, 6.0, 8.0], 3.0, 1.7
    w = lagrange_weights(nodes, a, b)
    for p in range(4):  # int_a^b s^p ds
        exact = (b ** (p + 1) - a ** (p + 1)) / (p + 1)
        assert sum(wj * n**p for wj, n in zip(w, nodes)) == pytest.approx(exact, rel=1e-12)
    wl = lagrange_weights(nodes, a, b, log=True)  # exact for polynomials in log s
    for p in range(4):
        from scipy.integrate import quad
        ref = quad(lambda s, p=p: math.log(s) ** p, a, b, epsabs=1e-13, epsrel=1e-13)[0]
        assert sum(wj * math.log(n) ** p for wj, n in zip(wl, nodes)) == pytest.approx(ref, rel=1e-10)
    assert sum(lagrange_weights(nodes, 3.0, 0.0, log=True)) == pytest.approx(-3.0)  # int_3^0 1 ds


def test_ancestral_step():
    down, up = ancestral_step(2.0, 1.0, 1.0)
    assert up == pytest.approx(math.sqrt(0.75)) and down == pytest.approx(0.5)
    assert ancestral_step(2.0, 1.0, 0.0) == (1.0, 0.0)
    assert ancestral_step(2.0, 0.0, 1.0) == (0.0, 0.0)
    assert ancestral_step(2.0, 1.0, 5.0) == (0.0, 1.0)  # k-diffusion's clamp
    down, up = ancestral_step(80.0, 1e-3, 0.7)
    assert down**2 + up**2 == pytest.approx(1e-6, rel=1e-12)


def test_sigma_brownian_bridge():
    """dpmpp_sde's two increments over [t, mid] and [t, s] are those of one Brownian motion in sigma."""
    draws = iter([torch.tensor([1.0]), torch.tensor([-2.0])])
    w = SigmaBrownian(3.0, lambda a, b: next(draws))
    assert w.increment(3.0, 2.0).item() == pytest.approx(1.0)
    assert w.increment(3.0, 0.5).item() == pytest.approx((1.0 - 2.0 * math.sqrt(1.5)) / math.sqrt(2.5))
    with pytest.raises(ValueError):
        w.W(1.0)  # between visited points: would need a bridge draw
    gen = torch.Generator().manual_seed(0)
    w = SigmaBrownian(3.0, lambda a, b: torch.randn(200_000, generator=gen, dtype=torch.float64))
    n1, n2 = w.increment(3.0, 2.0), w.increment(3.0, 0.5)
    assert n2.var().item() == pytest.approx(1.0, abs=0.01)
    assert (n1 * n2).mean().item() == pytest.approx(math.sqrt(1.0 / 2.5), abs=0.01)


# --- NFE, batch independence, convergence in law -----------------------------------------------------

NEW = ["ddim", "euler_ancestral", "dpm2", "dpmpp_2s", "dpmpp_sde", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde",
       "dpmpp_3m_sde", "lms", "deis", "unipc"]


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("final", ["zero", "sigma_min"])
def test_counted_nfe_is_declared(name, final):
    solver = solverzoo.get_solver(name, final=final)
    for nfe in (5, 8):
        r = solverzoo.sample(GAUSS, name, nfe=nfe, num_samples=2, final=final)
        assert r.nfe == solver.nfe_for_steps(r.steps) <= nfe
        assert r.nfe >= nfe - solver.info.calls_per_step + 1


def test_denoise_to_zero_costs_one_call():
    r = solverzoo.sample(GAUSS, "unipc", nfe=7, num_samples=2, final="sigma_min", denoise_to_zero=True)
    assert (r.nfe, r.steps) == (7, 6)


STOCHASTIC = [("euler_ancestral", {}), ("ddim", {"eta": 0.5}), ("dpm2", {"eta": 1.0}), ("dpm2", {"s_churn": 10.0}),
              ("dpmpp_2s", {"eta": 1.0}), ("dpmpp_sde", {}), ("dpmpp_2m_sde", {}), ("dpmpp_3m_sde", {})]


@pytest.mark.parametrize("name,options", STOCHASTIC, ids=[f"{n}-{o}" for n, o in STOCHASTIC])
def test_stochastic_samplers_are_batch_size_independent(name, options):
    """Bit for bit on an elementwise denoiser (image-shaped Gaussian)."""
    model = GaussianModel(shape=(3, 4, 4), mean=0.2, var=0.5)
    whole = solverzoo.sample(model, name, nfe=10, num_samples=5, seed=3, **options)
    assert solverzoo.get_solver(name, **options).stochastic
    for batch in (1, 2):
        split = solverzoo.sample(model, name, nfe=10, num_samples=5, seed=3, batch_size=batch, **options)
        assert torch.equal(whole.samples, split.samples)
    tail = solverzoo.sample(model, name, nfe=10, num_samples=2, seed=3, start_index=3, **options)
    assert torch.equal(whole.samples[3:], tail.samples)
    other = solverzoo.sample(model, name, nfe=10, num_samples=5, seed=4, **options)
    assert not torch.allclose(whole.samples, other.samples)


def test_batch_size_independence_on_gmm_image():
    """GMMImage's matmuls may round differently by batch: equal to 1e-10."""
    model = solverzoo.get_model("gmm-image", resolution=8, num_components=3, process="edm")
    whole = solverzoo.sample(model, "dpmpp_sde", nfe=9, num_samples=3, seed=3, dtype=torch.float64)
    split = solverzoo.sample(model, "dpmpp_sde", nfe=9, num_samples=3, seed=3, dtype=torch.float64, batch_size=1)
    assert torch.allclose(whole.samples, split.samples, rtol=0, atol=1e-10)


WIDE = GaussianModel(shape=(16384,), mean=0.5, var=0.25)  # iid coordinates: 32768 draws from 2 samples


def law_error(name, steps, **options):
    x = solverzoo.sample(WIDE, name, steps=steps, num_samples=2, seed=1, dtype=torch.float64, **options).samples
    return max(abs(x.mean().item() - 0.5) / 0.5, abs(x.var().item() / 0.25 - 1))


@pytest.mark.parametrize("name,options", STOCHASTIC, ids=[f"{n}-{o}" for n, o in STOCHASTIC])
def test_stochastic_samplers_converge_in_law(name, options):
    """Mean and variance of the Gaussian data law: error at 256 steps within 4 Monte-Carlo standard errors
    (variance ratio over 32768 draws: 0.8% each) of the first-order bias where there is one (measured
    euler_ancestral 0.052, ddim eta = 0.5 0.039; the others 0.005-0.008), and well below the error at 8
    steps unless that is already small."""
    coarse, fine = law_error(name, 8, **options), law_error(name, 256, **options)
    assert fine < {"euler_ancestral": 0.085, "ddim": 0.07}.get(name, 0.035), (coarse, fine)
    assert fine < 0.5 * coarse or coarse < 0.12


@pytest.mark.parametrize("name", ["ddim", "dpm2", "dpmpp_2s", "dpmpp_2m", "dpmpp_3m", "lms", "deis", "unipc"])
def test_ode_samplers_converge_to_the_flow(name):
    errors = [flow_error(name, n, grid=None, final="zero") for n in (8, 32, 128)]
    assert errors[2] < 0.05 and errors[2] < errors[0] / 8, errors


# --- bad options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,options", [
    ("ddim", {"eta": 1.5}), ("ddim", {"eta": -0.1}), ("euler_ancestral", {"s_noise": -1}),
    ("dpm2", {"eta": 0.5, "s_churn": 1.0}), ("dpm2", {"eta": 2.0}), ("dpmpp_2s", {"eta": 1.2}),
    ("dpmpp_sde", {"r": 0.0}), ("dpmpp_2m", {"solver_type": "rk4"}), ("dpmpp_3m", {"third_order": "double"}),
    ("lms", {"order": 5}), ("lms", {"order": 2.5}), ("deis", {"order": 4}), ("unipc", {"order": 0}),
    ("unipc", {"variant": "bh3"}), ("dpmpp_2m", {"denoise_to_zero": True}),
    ("dpmpp_2m_sde", {"eta": -1.0}),
])
def test_bad_options(name, options):
    with pytest.raises(ValueError):
        solverzoo.get_solver(name, **options)


@pytest.mark.parametrize("name,option", [("lms", "lower_order_final"), ("dpmpp_2m", "order"), ("dpmpp_2m", "eta"),
                                         ("dpmpp_2s", "prediction"), ("dpmpp_3m", "eta")])
def test_options_that_do_not_belong(name, option):
    with pytest.raises(ValueError, match="unknown option"):
        solverzoo.get_solver(name, **{option: 1})


def test_ode_solvers_refuse_preconditioners_and_sde_ones_accept_noise_filters():
    from solverzoo.preconditioners import Identity
    with pytest.raises(ValueError):
        solverzoo.get_solver("dpmpp_2m", preconditioner=Identity())
    solverzoo.get_solver("dpmpp_2m_sde", preconditioner=Identity())


# --- momentum (Wizadwongsa et al. 2023) ----------------------------------------------------------

from solverzoo.solvers.blocks import ab_weights, adams_gammas  # noqa: E402
from solverzoo.solvers.momentum import ghvb_weights  # noqa: E402


def test_adams_bashforth_coefficients():
    assert adams_gammas(5) == pytest.approx((1, 1 / 2, 5 / 12, 3 / 8, 251 / 720))
    assert ab_weights(1) == pytest.approx([1])
    assert ab_weights(2) == pytest.approx([3 / 2, -1 / 2])
    assert ab_weights(3) == pytest.approx([23 / 12, -16 / 12, 5 / 12])
    assert ab_weights(4) == pytest.approx([55 / 24, -59 / 24, 37 / 24, -9 / 24])
    for k in (1, 2, 3, 4):
        assert ghvb_weights(k, 1.0) == pytest.approx(ab_weights(k))


@pytest.mark.parametrize("b", [0.3, 0.8])
def test_ghvb_weights_match_the_papers_closed_forms(b):
    """The momentum-diffusion code's AdamBmixer, divided by beta."""
    assert ghvb_weights(1, b) == pytest.approx([1.0])
    assert ghvb_weights(2, b) == pytest.approx([(2 + b) / (2 * b), -(2 - b) / (2 * b)])
    assert ghvb_weights(3, b) == pytest.approx([(18 + 5 * b) / (12 * b), -(24 - 8 * b) / (12 * b), (6 - b) / (12 * b)])
    assert ghvb_weights(4, b) == pytest.approx([(46 + 9 * b) / (24 * b), -(78 - 19 * b) / (24 * b),
                                                (42 - 5 * b) / (24 * b), -(10 - b) / (24 * b)])


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("beta", [0.4, 0.8])
def test_ghvb_is_exact_on_polynomials_of_degree_below_its_order(k, beta):
    """Unit steps, f_n = p(n) with deg p < k and a long history (the start-up transient decays like
    (1 - beta)^n): the GHVB increment sum_m c_m v_{n+1-m} equals int_n^{n+1} p."""
    p = [0.3, -1.1, 0.7, 0.25][:k]  # coefficients of p(s) = sum_i p_i s^i
    f = lambda s: sum(c * s**i for i, c in enumerate(p))  # noqa: E731
    v, vs = None, []
    for n in range(-120, 1):
        v = f(n) if v is None else (1 - beta) * v + beta * f(n)
        vs.append(v)
    increment = sum(c * u for c, u in zip(ghvb_weights(k, beta), reversed(vs)))
    exact = sum(c * (1 ** (i + 1) - 0 ** (i + 1)) / (i + 1) for i, c in enumerate(p))
    assert increment == pytest.approx(exact, abs=1e-12)


def test_momentum_reductions():
    for k in (1, 2, 4):  # beta = 1: both are PLMS-k
        assert torch.allclose(run("ghvb", order=k, beta=1.0), run("plms_hb", order=k, beta=1.0), rtol=0, atol=1e-12)
    # order 1: GHVB is Euler with HB (the paper's remark after Eq. 19)
    assert torch.allclose(run("ghvb", order=1, beta=0.6), run("plms_hb", order=1, beta=0.6), rtol=0, atol=1e-12)
    assert torch.allclose(run("plms_hb", order=1, beta=1.0), run("euler", grid=None), rtol=0, atol=1e-12)
    assert torch.allclose(run("dpmpp_2m_hb", beta=1.0), run("dpmpp_2m"), rtol=0, atol=1e-12)
    assert not torch.allclose(run("dpmpp_2m_hb", beta=0.8), run("dpmpp_2m"), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name,options,order,n", [
    ("plms_hb", {"order": 4, "beta": 0.8}, 1, 64),
    ("plms_hb", {"order": 2, "beta": 1.0}, 2, 64),
    ("dpmpp_2m_hb", {"beta": 0.8, "lower_order_final": False}, 1, 64),
    ("ghvb", {"order": 1, "beta": 0.5}, 1, 64),
    ("ghvb", {"order": 2, "beta": 0.5}, 2, 64),
    ("ghvb", {"order": 2, "beta": 0.8}, 2, 64),
])
def test_momentum_convergence_order(name, options, order, n):
    """HB drops the order to 1 (their Theorem 1); GHVB keeps it (Theorem 2)."""
    s = slope(name, n, **options)
    assert order - 0.25 <= s <= order + 0.35, f"{name} {options}: slope {s:.2f}"


@pytest.mark.parametrize("k", [3, 4])
def test_ghvb_higher_orders_with_warm_up_on_a_karras_grid(k):
    """Constant-step coefficients on a non-uniform grid and the code's lower-order warm-up leave
    orders >= 3 at an observed 2 (documented in solvers/momentum.py); they must not be worse."""
    assert slope("ghvb", 64, order=k, beta=0.8) >= 1.8
    assert flow_error("ghvb", 64, order=k, beta=0.8) < flow_error("ghvb", 64, order=1, beta=0.8) / 20


@pytest.mark.parametrize("name", ["plms_hb", "ghvb", "dpmpp_2m_hb"])
def test_momentum_nfe_and_convergence(name):
    for nfe in (4, 9):
        assert solverzoo.sample(GAUSS, name, nfe=nfe, num_samples=2).nfe == nfe
    errors = [flow_error(name, n, grid=None, final="zero") for n in (8, 32, 128)]
    assert errors[2] < 0.05 and errors[2] < errors[0] / 4, errors


@pytest.mark.parametrize("name,options", [("ghvb", {"beta": 0.0}), ("ghvb", {"beta": 1.2}), ("ghvb", {"order": 5}),
                                          ("plms_hb", {"beta": -1}), ("dpmpp_2m_hb", {"beta": 0})])
def test_momentum_bad_options(name, options):
    with pytest.raises(ValueError):
        solverzoo.get_solver(name, **options)


# --- reference integrators (torchdiffeq, torchsde) -----------------------------------------------


class CallCounter(GaussianModel):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls = 0

    def denoise(self, x_hat, sigma):
        self.calls += 1
        return super().denoise(x_hat, sigma)


def test_ode_adaptive_converges_and_reports_its_counted_nfe():
    model = CallCounter(shape=(8,), mean=torch.linspace(-1, 1, 8), var=torch.linspace(0.1, 4, 8))
    z = NoiseSource(0, range(4), INIT, dtype=torch.float64).randn((8,))
    exact = model.ode_flow(80.0 * z, 80.0, 0.0)
    errors, nfes = [], []
    for tol in (1e-4, 1e-6, 1e-8):
        model.calls = 0
        r = solverzoo.sample(model, "ode_adaptive", num_samples=4, seed=0, dtype=torch.float64, rtol=tol, atol=tol)
        assert r.nfe == model.calls and r.steps == 2 and r.grid.sigmas()[-1] == 0
        errors.append((r.samples - exact).abs().max().item())
        nfes.append(r.nfe)
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-5, errors
    assert nfes[0] < nfes[1] < nfes[2]
    # the budget cannot be honoured: it is accepted and the counted NFE reported
    r = solverzoo.sample(model, "ode_adaptive", nfe=5, num_samples=2, dtype=torch.float64)
    assert r.nfe_requested == 5 and r.nfe > 5
    assert solverzoo.get_solver("ode_adaptive").adaptive


def test_ode_adaptive_final_sigma_min_and_batches():
    r = solverzoo.sample(GAUSS, "ode_adaptive", num_samples=3, seed=0, dtype=torch.float64, final="sigma_min")
    assert r.grid.sigmas() == pytest.approx([80.0, 0.002], rel=1e-12)
    model = GAUSS
    batch = solverzoo.sample(model, "ode_adaptive", num_samples=3, seed=0, dtype=torch.float64)
    alone = solverzoo.sample(model, "ode_adaptive", num_samples=1, seed=0, dtype=torch.float64)
    # the step sequence is the batch's; with the per-sample max norm each sample keeps its tolerance
    assert (batch.samples[:1] - alone.samples).abs().max().item() < 1e-3
    other = solverzoo.sample(model, "ode_adaptive", num_samples=3, seed=0, dtype=torch.float64, error_norm="batch")
    assert (other.samples - batch.samples).abs().max().item() < 1e-3


@pytest.mark.parametrize("method,calls", [("euler", 1), ("srk", 2)])
def test_sde_reference_nfe_and_batch_independence(method, calls):
    model = solverzoo.get_model("gmm-image", resolution=8, num_components=3, process="edm")
    solver = solverzoo.get_solver("sde_reference", method=method)
    assert solver.stochastic
    whole = solverzoo.sample(model, "sde_reference", steps=6, num_samples=4, seed=2, dtype=torch.float64, method=method)
    assert whole.nfe == calls * 5 + 1 == solver.nfe_for_steps(6)
    split = solverzoo.sample(model, "sde_reference", steps=6, num_samples=4, seed=2, dtype=torch.float64,
                             method=method, batch_size=1)
    assert torch.allclose(whole.samples, split.samples, rtol=1e-12, atol=1e-12)  # GMMImage's matmuls round by batch
    a = solverzoo.sample(GAUSS, "sde_reference", steps=6, num_samples=4, seed=2, method=method)
    b = solverzoo.sample(GAUSS, "sde_reference", steps=6, num_samples=4, seed=2, method=method, batch_size=3)
    assert torch.equal(a.samples, b.samples)
    r = solverzoo.sample(GAUSS, "sde_reference", nfe=9, num_samples=2, final="sigma_min", method=method)
    assert r.nfe == calls * r.steps <= 9


WIDE_SMALL = GaussianModel(shape=(4096,), mean=0.5, var=0.25)


@pytest.mark.parametrize("method,steps", [("euler", 128), ("srk", 64)])
def test_sde_reference_converges_in_law(method, steps):
    x = solverzoo.sample(WIDE_SMALL, "sde_reference", steps=steps, num_samples=2, seed=1, dtype=torch.float64,
                         method=method).samples
    assert abs(x.mean().item() - 0.5) < 0.02 and abs(x.var().item() / 0.25 - 1) < 0.08


@pytest.mark.parametrize("name,options", [
    ("ode_adaptive", {"rtol": 0}),
    ("ode_adaptive", {"method": "rk4"}),
    ("ode_adaptive", {"error_norm": "l1"}),
    ("sde_reference", {"method": "milstein"}),
])
def test_reference_bad_options(name, options):
    with pytest.raises(ValueError):
        solverzoo.get_solver(name, **options)


# --- grids: exponential, polyexponential, vp, quadratic -------------------------------------------

from solverzoo.processes import get_process  # noqa: E402


@pytest.mark.parametrize("final", ["zero", "sigma_min"])
def test_new_grids_by_hand(final):
    edm, vpp = get_process("edm"), get_process("vp")
    n = 6 if final == "zero" else 7  # nodes before the optional zero
    tail = [0.0] if final == "zero" else []
    ramp = [1 - i / (n - 1) for i in range(n)]
    expo = [math.exp(math.log(0.002) + r * (math.log(80) - math.log(0.002))) for r in ramp]
    assert solverzoo.make_grid("exponential", edm, 6, final=final).sigmas() == pytest.approx(expo + tail, rel=1e-13)
    poly = [math.exp(math.log(0.002) + r**2.5 * (math.log(80) - math.log(0.002))) for r in ramp]
    assert solverzoo.make_grid("polyexponential", edm, 6, final=final, rho=2.5).sigmas() == pytest.approx(
        poly + tail, rel=1e-13)
    assert solverzoo.make_grid("polyexponential", edm, 6, final=final).sigmas() == pytest.approx(expo + tail, rel=1e-13)
    ts = [1 + i / (n - 1) * (1e-3 - 1) for i in range(n)]
    vps = [math.sqrt(math.expm1(19.9 * t * t / 2 + 0.1 * t)) for t in ts]
    assert solverzoo.make_grid("vp", edm, 6, final=final).sigmas() == pytest.approx(vps + tail, rel=1e-12)
    # on the default VP process, k-diffusion's vp grid is the process's uniform-t grid
    assert solverzoo.make_grid("vp", vpp, 6, final=final).sigmas() == pytest.approx(
        solverzoo.make_grid("uniform_t", vpp, 6, final=final).sigmas(), rel=1e-13)
    # DPM-Solver's time_quadratic: sqrt(t) uniform from sqrt(t_max) to sqrt(t_min), in the process's time
    quad_t = [(math.sqrt(1.0) + i / (n - 1) * (math.sqrt(1e-3) - 1.0)) ** 2 for i in range(n)]
    quad = [math.sqrt(math.expm1(0.1 * t + 19.9 * t * t / 2)) for t in quad_t]
    assert solverzoo.make_grid("quadratic", vpp, 6, final=final).sigmas() == pytest.approx(quad + tail, rel=1e-12)
    quad_edm = [(math.sqrt(80) + i / (n - 1) * (math.sqrt(0.002) - math.sqrt(80))) ** 2 for i in range(n)]
    assert solverzoo.make_grid("quadratic", edm, 6, final=final).sigmas() == pytest.approx(quad_edm + tail, rel=1e-12)


@pytest.mark.parametrize("grid", ["exponential", "polyexponential", "vp", "quadratic"])
def test_solvers_run_on_the_new_grids(grid):
    for name in ("dpmpp_2m", "unipc", "dpmpp_sde"):
        r = solverzoo.sample(GAUSS, name, nfe=9, num_samples=2, grid=grid)
        assert r.grid.name.startswith(grid) and torch.isfinite(r.samples).all()


@pytest.mark.parametrize("grid,options", [("polyexponential", {"rho": 0}), ("vp", {"eps_s": 0.0}),
                                          ("vp", {"beta_d": -1.0}), ("quadratic", {"t_min": 100.0}),
                                          ("vp", {"sigma_min": 0.1})])
def test_new_grids_bad_options(grid, options):
    with pytest.raises(ValueError):
        solverzoo.make_grid(grid, get_process("edm"), 5, **options)
