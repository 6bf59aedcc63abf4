"""One registry class behind solvers, grids, processes and models: one error style for unknown names and options."""

from __future__ import annotations

import pytest

from solverzoo.grids import GRIDS, make_grid
from solverzoo.models import MODELS, get_model
from solverzoo.processes import PROCESSES, get_process
from solverzoo.registry import Registry, check_options, signature_options
from solverzoo.solvers import SOLVERS, get_solver


@pytest.mark.parametrize("registry, build, typo, meant", [
    (SOLVERS, get_solver, "heum", "heun"),
    (GRIDS, lambda name: make_grid(name, get_process("edm"), 4), "karas", "karras"),
    (PROCESSES, get_process, "vpp", "vp"),
    (MODELS, get_model, "gmm-imag", "gmm-image"),
])
def test_unknown_names_one_style(registry, build, typo, meant):
    assert isinstance(registry, Registry) and meant in registry and typo not in registry
    with pytest.raises(ValueError) as err:
        build(typo)
    message = str(err.value)
    assert message.startswith(f"unknown {registry.kind} {typo!r} (did you mean {meant!r}?); choose one of: ")
    assert ", ".join(registry.names()) in message  # every valid choice, sorted


@pytest.mark.parametrize("build, kind, name", [
    (lambda: get_solver("heun", nosuch=1), "solver", "heun"),
    (lambda: make_grid("karras", get_process("edm"), 4, nosuch=1), "grid", "karras"),
    (lambda: get_process("ve", nosuch=1), "process", "ve"),
])
def test_unknown_options_one_style(build, kind, name):
    with pytest.raises(ValueError, match=rf"^unknown option\(s\) nosuch for {kind} '{name}'.*; valid options: "):
        build()


def test_grid_options_are_the_builder_keywords():
    with pytest.raises(ValueError, match="valid options: sigma_min, sigma_max, rho$"):
        make_grid("karras", get_process("edm"), 4, rh=7)


def test_register_refuses_duplicates_and_decorates():
    reg: Registry = Registry("widget")

    @reg.register("a")
    def a(x: int = 1) -> int:
        return x

    assert reg.lookup("a") is a and list(reg) == ["a"] and reg.names() == ["a"] and len(reg) == 1
    with pytest.raises(ValueError, match="widget 'a' registered twice"):
        reg.register("a", a)
    with pytest.raises(ValueError, match=r"^unknown widget 'b'; choose one of: a$"):
        reg.lookup("b")
    with pytest.raises(ValueError, match=r"unknown widget \['a'\]"):
        reg.lookup(["a"])  # unhashable: the same error, no TypeError
    assert reg.build("a", x=3) == 3
    with pytest.raises(ValueError, match=r"unknown option\(s\) y for widget 'a'; valid options: x"):
        reg.build("a", y=3)
    from solverzoo.solvers import register

    heun = SOLVERS["heun"]
    assert register(heun) is heun and SOLVERS["heun"] is heun  # the same class again: nothing happens
    impostor = type("Heun", (heun,), {})
    with pytest.raises(ValueError, match=r"solver 'heun' registered twice \(pass replace=True"):
        register(impostor)
    assert SOLVERS["heun"] is heun


def test_signature_options():
    def f(process, steps, final="zero", *, rho=7.0):
        return None

    def g(**kwargs):
        return None

    assert signature_options(f, skip=2) == ["final", "rho"]
    assert signature_options(f, skip=2, exclude=("final",)) == ["rho"]
    assert signature_options(g) is None
    check_options("thing", "t", ["rho"], ["rho"])  # valid: no error
