"""``sample()`` and randomness, for every registered solver.

* sample i is bit-identical at batch size 1, 3 and all, and when sampled alone via
  ``start_index``;
* every solver starts from the same initial noise (the INIT stream of sample i);
* the counted NFE equals the solver's formula; budgets are filled and validated;
* bad names and options raise ValueErrors that list the valid choices.
"""

from __future__ import annotations

import functools

import pytest
import torch

import solverzoo
from solverzoo.grids import FINALS, list_grids
from solverzoo.models.gaussian import GaussianModel
from solverzoo.noise import DATA, INIT, PATH, NoiseSource, sample_seed
from solverzoo.sampling import batches, resolve_device
from solverzoo.solvers import SOLVERS as REGISTRY
from solverzoo.solvers import get_solver, list_solvers, solver_info

F64 = torch.float64
SOLVERS = list_solvers()
# candidate models, tried in order: a vector Gaussian, an image-shaped one (preconditioned
# solvers act on (C, H, W)), one trained under the FDM process (the fdm solver needs it)
CANDIDATES = [("edm", (8,)), ("edm", (1, 4, 4)), ("fdm-edm", (8,))]


class CountingGaussian(GaussianModel):
    """GaussianModel that counts its own denoiser calls (independently of CountingDenoiser)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def denoise(self, x_hat, sigma):
        self.calls += 1
        return super().denoise(x_hat, sigma)


def make_model(proc, shape, counting=False):
    cls = CountingGaussian if counting else GaussianModel
    return cls(shape, mean=0.1, var=0.5, process=proc)


def batch_free_options(name: str) -> dict:
    """Options that make a solver's samples independent of the batch (pc's per-sample norms)."""
    try:
        get_solver(name, corrector_norm="sample")
    except ValueError:
        return {}
    return {"corrector_norm": "sample"}


@functools.cache
def setup_for(name: str):
    """The first candidate model the solver accepts; skip if it documents that it accepts none."""
    reasons = []
    for proc, shape in CANDIDATES:
        model = make_model(proc, shape)
        try:
            solverzoo.sample(model, name, steps=2, num_samples=1, **batch_free_options(name))
        except ValueError as err:
            reasons.append(str(err))
            continue
        return proc, shape
    # only a documented refusal of the model is a reason to skip
    assert all("model" in r for r in reasons), reasons
    return None, reasons


def model_for(name, counting=False):
    proc, shape = setup_for(name)
    if proc is None:
        pytest.skip(f"{name} runs on none of the Gaussian test models: {shape}")
    return make_model(proc, shape, counting)


def is_adaptive(name: str) -> bool:
    """Adaptive solvers document that their NFE is set by tolerances (budgets ignored) and that the
    step controller sees the whole batch, so batch-independence and the NFE formula do not apply."""
    return REGISTRY[name].info.adaptive  # (the class attribute `adaptive` is a property: always truthy)


def skip_adaptive(name: str) -> None:
    if is_adaptive(name):
        pytest.skip(f"{name} is adaptive: its steps (and NFE) depend on the batch by design")


def run(name, model=None, **kw):
    model = model or model_for(name)
    return solverzoo.sample(model, name, **{**batch_free_options(name), **kw})


# ---------------------------------------------------------------------------------
# batch independence
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SOLVERS)
def test_samples_do_not_depend_on_batching(name):
    skip_adaptive(name)
    kw = dict(steps=4, seed=3)
    full = run(name, num_samples=10, **kw).samples
    assert full.shape[0] == 10 and torch.isfinite(full).all()
    for bs in (1, 3):
        other = run(name, num_samples=10, batch_size=bs, **kw).samples
        assert torch.equal(full, other), f"{name}: batch_size={bs} changed the samples"
    tail = run(name, num_samples=5, start_index=5, **kw).samples
    assert torch.equal(full[5:], tail), f"{name}: sampling 5..9 alone changed them"
    mid = run(name, num_samples=3, start_index=4, batch_size=2, **kw).samples
    assert torch.equal(full[4:7], mid)
    # distinct samples get distinct noise; another seed gives other samples
    assert not torch.equal(full[0], full[1])
    assert not torch.equal(full, run(name, num_samples=10, steps=4, seed=4).samples)


@pytest.mark.parametrize("name", SOLVERS)
def test_float64_batching(name):
    skip_adaptive(name)
    kw = dict(steps=3, seed=8, dtype=F64)
    full = run(name, num_samples=6, **kw).samples
    assert full.dtype == F64
    assert torch.equal(full, run(name, num_samples=6, batch_size=4, **kw).samples)


def test_pc_batch_norm_is_the_documented_exception():
    """corrector_norm='batch' (score_sde's default) lets a sample depend on its batch."""
    model = make_model("ve", (8,))
    a = solverzoo.sample(model, "pc", steps=3, num_samples=6, seed=0, corrector_norm="batch").samples
    b = solverzoo.sample(model, "pc", steps=3, num_samples=6, seed=0, corrector_norm="batch", batch_size=1).samples
    assert not torch.equal(a, b)
    c = solverzoo.sample(model, "pc", steps=3, num_samples=6, seed=0, corrector_norm="sample").samples
    d = solverzoo.sample(model, "pc", steps=3, num_samples=6, seed=0, corrector_norm="sample", batch_size=1).samples
    assert torch.equal(c, d)


# ---------------------------------------------------------------------------------
# the initial noise is shared by all solvers
# ---------------------------------------------------------------------------------
def record_prior(solver):
    """Wrap a built solver's prior to record the standard normal z that sample() feeds it."""
    seen = []
    inner = solver.prior

    def prior(ctx, z):
        x = inner(ctx, z)
        seen.append((z.clone(), x.clone(), ctx.grid.sigma[0].item(), ctx.grid.s[0].item()))
        return x

    solver.prior = prior
    return seen


@pytest.mark.parametrize("name", SOLVERS)
def test_initial_noise_is_the_init_stream(name):
    model = model_for(name)
    solver = get_solver(name, **batch_free_options(name))
    seen = record_prior(solver)
    # adaptive solvers need one batch (their NFE may differ between batches)
    parts = (range(7),) if is_adaptive(name) else (range(4), range(4, 7))
    solverzoo.sample(model, solver, steps=3, num_samples=7, seed=21, batch_size=len(parts[0]))
    assert len(seen) == len(parts)  # one call per batch
    z = torch.cat([s[0] for s in seen])
    expected = torch.cat([NoiseSource(21, idx, INIT).randn(model.shape) for idx in parts])
    assert torch.equal(z, expected)
    # a solver-independent function of the index: the same rows from one 7-sample draw
    assert torch.equal(z, NoiseSource(21, range(7), INIT).randn(model.shape))
    # under EDM (s = 1) every unpreconditioned solver starts at x_T = sigma_0 z
    if model.process.name == "edm" and solver.filter_spec() is None:
        for z_b, x_b, sigma0, _ in seen:
            torch.testing.assert_close(x_b, sigma0 * z_b, rtol=1e-6, atol=0)


def test_paired_comparisons_end_to_end():
    """No hooks: one euler step and one heun step to zero are both D(sigma_max z), z from INIT."""
    model = make_model("edm", (8,))
    a = solverzoo.sample(model, "euler", steps=1, num_samples=5, seed=2, dtype=F64).samples
    b = solverzoo.sample(model, "heun", steps=1, num_samples=5, seed=2, dtype=F64).samples
    torch.testing.assert_close(a, b, rtol=0, atol=1e-13)  # euler's D + (0 / sigma)(x - D) is D to the bit
    x = 80.0 * NoiseSource(2, range(5), INIT, dtype=F64).randn((8,))
    torch.testing.assert_close(a, model.denoise(x, torch.full((5,), 80.0, dtype=F64)), rtol=1e-13, atol=1e-13)
    # and a stochastic solver from the same seed starts from the same x_T: pc with no corrector and
    # one step to zero on VE is the denoiser too (x + sigma^2 score), its PATH stream unused
    ve = make_model("ve", (8,))
    c = solverzoo.sample(ve, "pc", steps=1, num_samples=5, seed=2, dtype=F64, n_corrector=0).samples
    x = 50.0 * NoiseSource(2, range(5), INIT, dtype=F64).randn((8,))
    torch.testing.assert_close(c, ve.denoise(x, torch.full((5,), 50.0, dtype=F64)), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------
# NoiseSource
# ---------------------------------------------------------------------------------
def test_noise_rows_belong_to_samples():
    full = NoiseSource(5, range(10), PATH).randn((3, 2))
    assert full.shape == (10, 3, 2) and full.dtype == torch.float32
    for i in (0, 4, 9):
        assert torch.equal(full[i], NoiseSource(5, [i], PATH).randn((3, 2))[0])
    assert torch.equal(full[[7, 2]], NoiseSource(5, [7, 2], PATH).randn((3, 2)))
    # streams and seeds are independent
    assert not torch.equal(full, NoiseSource(5, range(10), INIT).randn((3, 2)))
    assert not torch.equal(full, NoiseSource(6, range(10), PATH).randn((3, 2)))
    assert len({sample_seed(0, i, s) for i in range(50) for s in (INIT, PATH, DATA)}) == 150


def test_noise_draw_sequence_and_dtype():
    src = NoiseSource(1, range(3), PATH, dtype=F64)
    a, b = src.randn((4,)), src.randn((4,))
    assert a.dtype == F64 and src.draws == 2 and not torch.equal(a, b)
    again = NoiseSource(1, range(3), PATH, dtype=F64)
    assert torch.equal(again.randn((4,)), a) and torch.equal(again.randn((4,)), b)
    with pytest.raises(ValueError):
        src.randn_like(torch.zeros(2, 4))
    with pytest.raises(ValueError):
        sample_seed(-1, 0, INIT)
    with pytest.raises(ValueError):
        sample_seed(0, -1, INIT)


def test_batches_cover_the_range():
    assert [list(r) for r in batches(5, 7, 3)] == [[5, 6, 7], [8, 9, 10], [11]]


# ---------------------------------------------------------------------------------
# NFE: counted, and equal to the formula
# ---------------------------------------------------------------------------------
def count_run_calls(solver, model):
    """Model calls of each batch's trajectory, counted by the model itself from the moment
    sample() hands the batch its initial noise (set-up work such as the TDAS pilot run that
    estimates its filter, in build_filters, is a per-run cost and not part of the NFE)."""
    marks = []
    inner = solver.prior

    def prior(ctx, z):
        marks.append(model.calls)
        return inner(ctx, z)

    solver.prior = prior
    return lambda: [b - a for a, b in zip(marks, marks[1:] + [model.calls])]


@pytest.mark.parametrize("name", SOLVERS)
def test_counted_nfe_matches_formula(name):
    skip_adaptive(name)
    for steps in (s for s in (1, 2, 5) if s >= solver_info(name).min_steps):
        solver = get_solver(name, **batch_free_options(name))
        model = model_for(name, counting=True)
        per_batch = count_run_calls(solver, model)
        r = solverzoo.sample(model, solver, steps=steps, num_samples=4, seed=0, batch_size=2)
        assert per_batch() == [r.nfe, r.nfe]  # two batches, each counted by the model itself
        assert r.nfe == solver.nfe_for_steps(steps), (name, steps)
        assert r.steps == r.grid.steps == steps


@pytest.mark.parametrize("name", SOLVERS)
def test_budget_is_filled_and_respected(name):
    info = solver_info(name)
    for budget in sorted({info.min_nfe, 10, 35}):
        solver = get_solver(name, **batch_free_options(name))
        model = model_for(name, counting=True)
        per_batch = count_run_calls(solver, model)
        r = solverzoo.sample(model, solver, nfe=budget, num_samples=2, seed=0)
        assert r.nfe_requested == budget
        if is_adaptive(name):  # documented: the budget is accepted and ignored; the count is still exact
            assert per_batch() == [r.nfe] and r.nfe >= 1
            continue
        assert per_batch() == [r.nfe] and r.nfe <= budget, (name, budget, r.nfe)
        # the largest step count that fits: one more step would exceed the budget
        assert solver.nfe_for_steps(r.steps + 1) > budget, (name, budget, r.steps)


@pytest.mark.parametrize("name", SOLVERS)
def test_budget_below_min_nfe_raises_naming_the_solver(name):
    info = solver_info(name)
    model = make_model("edm", (8,))
    for budget in {info.min_nfe - 1, 0}:
        with pytest.raises(ValueError, match=name):
            solverzoo.sample(model, name, nfe=budget, num_samples=1)
    with pytest.raises(ValueError):
        solverzoo.sample(model, name, nfe=info.min_nfe + 0.5, num_samples=1)


def test_solver_info_table():
    for name in SOLVERS:
        info = solver_info(name)
        assert info.name == name and info.kind in ("ode", "sde") and info.calls_per_step >= 1
        assert info.final in FINALS and info.min_nfe >= 1
        assert get_solver(name).info.name == name
    assert solver_info("heun").min_nfe == 1 and solver_info("pc").min_nfe == 2


# ---------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------
def test_unknown_solver_lists_choices():
    with pytest.raises(ValueError) as err:
        solverzoo.sample(make_model("edm", (8,)), "huen", nfe=10)
    assert "huen" in str(err.value)
    for name in SOLVERS:
        assert name in str(err.value)


@pytest.mark.parametrize("name", SOLVERS)
def test_unknown_option_lists_valid_options(name):
    with pytest.raises(ValueError) as err:
        get_solver(name, not_an_option=1)
    msg = str(err.value)
    assert "not_an_option" in msg
    for common in ("grid", "final"):
        assert common in msg


def test_unknown_option_through_sample():
    with pytest.raises(ValueError, match="s_churn"):
        solverzoo.sample(make_model("edm", (8,)), "heun", nfe=10, s_chrun=40)


def test_unknown_grid_and_final_through_the_solver():
    model = make_model("edm", (8,))
    with pytest.raises(ValueError) as err:
        solverzoo.sample(model, "euler", steps=4, grid="karas")
    for g in list_grids():
        assert g in str(err.value)
    with pytest.raises(ValueError) as err:
        solverzoo.sample(model, "euler", steps=4, final="end")
    for f in FINALS:
        assert f in str(err.value)


def test_explicit_grid_through_the_solver():
    model = make_model("edm", (8,))
    r = solverzoo.sample(model, "euler", steps=3, grid=[80.0, 5.0, 0.5, 0.0], num_samples=2)
    assert r.grid.sigma.tolist() == [80.0, 5.0, 0.5, 0.0] and r.nfe == 3
    with pytest.raises(ValueError, match="strictly decreasing"):
        solverzoo.sample(model, "euler", steps=3, grid=[80.0, 0.5, 0.5, 0.0], num_samples=2)


def test_nfe_and_steps_are_exclusive():
    model = make_model("edm", (8,))
    with pytest.raises(ValueError, match="exactly one"):
        solverzoo.sample(model, "euler", nfe=10, steps=10)
    with pytest.raises(ValueError, match="exactly one"):
        solverzoo.sample(model, "euler")


@pytest.mark.parametrize("kw", [dict(num_samples=0), dict(batch_size=0), dict(batch_size=-2), dict(seed=-1),
                                dict(start_index=-3), dict(steps=0)])
def test_bad_sample_arguments(kw):
    args = {"steps": 3, "num_samples": 4, **kw}
    with pytest.raises(ValueError):
        solverzoo.sample(make_model("edm", (8,)), "euler", **args)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            resolve_device("cuda")


def test_result_record():
    seen = []
    r = solverzoo.sample(make_model("edm", (8,)), "heun", nfe=9, num_samples=5, batch_size=2,
                         seed=0, s_churn=1.0, on_batch=seen.append)
    assert seen == [2, 2, 1]
    assert (r.solver, r.nfe, r.nfe_requested, r.steps) == ("heun", 9, 9, 5)
    d = r.describe()
    assert d["grid"].startswith("karras") and d["final"] == "zero" and d["options"]["s_churn"] == 1.0
    assert r.samples.shape == (5, 8) and r.samples.device.type == "cpu"
