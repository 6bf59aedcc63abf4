"""The solver core's declarations: options walked once with their types, the budget and order computed from
the options (``solver.info``), ``stochastic`` derived from the declared noise switches."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import solverzoo
from solverzoo.solvers import SOLVERS, SolverInfo, get_solver
from solverzoo.solvers.base import declared_options, noise_switches, option_specs
from solverzoo.solvers.dpm_solver import DPMPP2M

#: a value that turns each declared noise switch on
NOISE_ON = {"eta": 0.5, "s_churn": 5.0, "restarts": 1, "noise_scale": "sde"}


@pytest.mark.parametrize("name", SOLVERS.names())
def test_option_specs_agree_with_their_defaults(name):
    specs, pinned = option_specs(SOLVERS[name])
    assert {k: s.default for k, s in specs.items()} == declared_options(SOLVERS[name])[0]
    assert not set(specs) & set(pinned)
    for spec in specs.values():
        if spec.default is None:
            assert spec.optional, (name, spec)
        elif spec.default is not inspect.Parameter.empty:
            assert isinstance(spec.default, spec.types), (name, spec, spec.types)


def test_option_specs_read_the_annotations():
    specs, _ = option_specs(SOLVERS["pc"])
    assert specs["speed_up"].types == (float,) and specs["speed_up"].optional
    assert specs["n_corrector"].types == (int,) and not specs["n_corrector"].optional
    assert specs["grid"].types == (str, list) and specs["grid"].optional
    specs, _ = option_specs(SOLVERS["ddim"])
    assert specs["eta"].default == 0.0 and specs["eta"].owner == "EulerAncestral"  # the class's ``defaults``


@pytest.mark.parametrize("name", SOLVERS.names())
def test_info_is_declared_data_and_the_instance_view_is_computed(name):
    cls = SOLVERS[name]
    solver = get_solver(name)
    assert isinstance(cls.info, SolverInfo) and "info" not in vars(solver)
    # the declared budget is the default options'; the listed order is the one reached with lower_order_final off
    assert dataclasses.replace(solver.info, order=cls.info.order) == cls.info
    no_lof = {"lower_order_final": False} if "lower_order_final" in declared_options(cls)[0] else {}
    assert get_solver(name, **no_lof).info.order == cls.info.order


@pytest.mark.parametrize("name,options,changed", [
    ("pc", {"n_corrector": 3}, {"calls_per_step": 4}),
    ("etd_erk", {"order": 2}, {"order": 2, "calls_per_step": 2}),
    ("sde_reference", {"method": "srk"}, {"calls_per_step": 2}),
    ("restart", {"restarts": 2, "restart_steps": 3}, {"extra_calls": 12}),
    ("dpmpp_3m", {"warmup": "rk", "lower_order_final": False}, {"order": 3, "extra_calls": 1, "min_steps": 2}),
])
def test_options_change_the_computed_budget(name, options, changed):
    solver = get_solver(name, **options)
    assert {k: getattr(solver.info, k) for k in changed} == changed
    assert {k: getattr(SOLVERS[name].info, k) for k in changed} != changed
    assert solver.nfe_for_steps(5) == solver.info.nfe_for_steps(5, solver.final_step)


def test_a_subclass_may_set_its_options_after_the_base_init():
    class Damped(DPMPP2M):
        def __init__(self, damping: float = 0.5, **base):
            super().__init__(**base)
            self.damping = damping

        def info_changes(self) -> dict:
            return {**super().info_changes(), "extra_calls": int(self.damping > 1)}

    assert Damped(damping=2.0).info.extra_calls == 1 and Damped().info.order == 2


@pytest.mark.parametrize("name", SOLVERS.names())
def test_stochastic_follows_the_declared_noise_switches(name):
    cls = SOLVERS[name]
    switches = noise_switches(cls)
    options = declared_options(cls)[0]
    assert set(NOISE_ON) & set(options) <= set(switches), f"{name}: an option that adds noise is not in noise_off"
    if not switches:
        assert get_solver(name).stochastic == (cls.info.kind == "sde")
        return
    off = {k: v for k, v in switches.items() if k in options}
    assert not get_solver(name, **off).stochastic
    model = solverzoo.get_model("gmm-2d", process="fdm-edm" if name == "fdm" else "edm")
    for option in off:
        on = get_solver(name, **{**off, option: NOISE_ON[option]})
        assert on.stochastic, (name, option)
        solverzoo.sample(model, on, nfe=8, num_samples=2)  # draws its noise from the run's source
