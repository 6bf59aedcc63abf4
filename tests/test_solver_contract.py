"""The contract every registered solver keeps, run on each automatically (the registry is the
list: a new ``@register`` class is picked up with nothing to edit here).

* the counted NFE is the budget its ``SolverInfo`` declares, on grids ending at zero and at
  sigma_min, and ``steps_for_nfe`` inverts it;
* ``options()`` names every declared option (the one walker over the class hierarchy) and no
  pinned one; it survives JSON and builds the same solver, which reproduces the samples.

Batch independence (sample i identical at every batch size) and the shared initial noise are
checked for every registered solver in tests/test_sampling.py.
"""

from __future__ import annotations

import functools
import json

import pytest
import torch

import solverzoo
from solverzoo.grids import FINALS
from solverzoo.models.gaussian import GaussianModel
from solverzoo.solvers import SOLVERS as REGISTRY
from solverzoo.solvers import get_solver, list_solvers
from solverzoo.solvers.base import declared_options

F64 = torch.float64
SOLVERS = list_solvers()
# a vector Gaussian, an image-shaped one (filters act on (C, H, W)), one under the FDM process (fdm)
CANDIDATES = [("edm", (8,)), ("edm", (1, 4, 4)), ("fdm-edm", (8,))]


def batch_free(name: str) -> dict:
    """pc-family solvers take their corrector norms per sample (the default is score_sde's batch mean)."""
    return {"corrector_norm": "sample"} if "corrector_norm" in declared_options(REGISTRY[name])[0] else {}


@functools.cache
def model_for(name: str):
    """The first candidate model the solver accepts (``check_model``: cheap, no sampling)."""
    reasons = []
    for process, shape in CANDIDATES:
        model = GaussianModel(shape, mean=0.1, var=0.5, process=process)
        try:
            get_solver(name).check_model(model)
        except ValueError as err:
            reasons.append(str(err))
            continue
        return model
    raise AssertionError(f"{name} accepts none of the contract models: {reasons}")


@pytest.mark.parametrize("name", SOLVERS)
def test_counted_nfe_is_the_declared_budget(name):
    model = model_for(name)
    for final in FINALS:
        solver = get_solver(name, final=final, **batch_free(name))
        info = solver.info
        for steps in (info.min_steps, info.min_steps + 1, info.min_steps + 3):
            r = solverzoo.sample(model, solver, steps=steps, num_samples=2, seed=1, dtype=F64)
            if info.adaptive:  # declared: a controller sets the cost, counted all the same
                assert r.nfe >= 1 and solver.steps_for_nfe(r.nfe) == solver.fixed_steps
                break
            assert r.nfe == solver.nfe_for_steps(steps) == info.nfe_for_steps(steps, final), (name, final, steps)
            assert solver.steps_for_nfe(r.nfe) == steps
            assert solver.nfe_for_steps(steps + 1) > r.nfe
        if not info.adaptive:
            with pytest.raises(ValueError, match=name):
                solver.steps_for_nfe(solver.nfe_for_steps(info.min_steps) - 1)


@pytest.mark.parametrize("name", SOLVERS)
def test_options_name_every_declared_option_and_no_pinned_one(name):
    cls = REGISTRY[name]
    declared, pinned = declared_options(cls)
    recorded = get_solver(name).options()
    assert list(recorded) == list(declared)
    assert {"grid", "final", "grid_options", "preconditioner"} <= set(recorded)
    for option, value in pinned.items():
        with pytest.raises(ValueError, match=f"unknown option.*{option}"):
            get_solver(name, **{option: value})


def test_options_of_pc_variants_include_the_inherited_ones():
    """pds and tdas inherit pc's options: they are options of theirs, and recorded."""
    for name in ("pds", "tdas"):
        recorded = get_solver(name, snr=0.2, n_corrector=2, corrector_norm="sample").options()
        assert (recorded["snr"], recorded["n_corrector"], recorded["corrector_norm"]) == (0.2, 2, "sample")


@pytest.mark.parametrize("name", SOLVERS)
def test_options_round_trip_and_reproduce_the_samples(name):
    model = model_for(name)
    solver = get_solver(name, **batch_free(name))
    record = json.loads(json.dumps(solver.options()))  # as a results file holds them
    rebuilt = get_solver(name, **record)
    assert rebuilt.options() == record
    a = solverzoo.sample(model, solver, steps=3, num_samples=3, seed=4, dtype=F64)
    b = solverzoo.sample(model, name, steps=3, num_samples=3, seed=4, dtype=F64, **record)
    assert torch.equal(a.samples, b.samples) and a.nfe == b.nfe
    assert json.loads(json.dumps(a.options)) == json.loads(json.dumps(b.options))


def test_defaults_and_pins_are_data_of_the_class():
    """A leaf changes a default or pins an option without an __init__ of its own."""
    assert get_solver("dpmpp_2m_sde").eta == 1.0 and get_solver("dpmpp_2m").eta == 0.0
    assert get_solver("dpmpp_3m").solver_type == "heun" and get_solver("dpmpp_2m").solver_type == "midpoint"
    assert get_solver("dpmpp_3m_sde").order == 3 and get_solver("lms").lower_order_final is False
    with pytest.raises(ValueError, match="dpmpp_2m fixes order=2"):
        get_solver("dpmpp_2m", order=3)
    assert get_solver("heun", s_tmax="inf").s_tmax == float("inf")  # as a results file writes it
