"""``solverzoo.bench.plan``: every check before any work, for Python callers as for the command line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import solverzoo.sampling
from solverzoo.bench import BenchConfig, plan, run_plan
from solverzoo.cli import main

TINY = dict(model="gmm-image", model_options={"resolution": 8, "num_components": 2}, num_samples=4, batch_size=4)


@pytest.mark.parametrize("changes, message", [
    ({"nfe": [4, 4]}, "given twice"),
    ({"nfe": [0]}, "positive"),
    ({"num_samples": 1}, "--num-samples"),
    ({"seed": -3}, "--seed"),
    ({"device": "tpu"}, "--device 'tpu'"),
    ({"noise": "gpu"}, "--noise"),
    ({"model_options": {"resolution": 8.5}}, "resolution=8.5"),
    ({"model_options": {"resolution": "abc"}}, "resolution='abc'"),
    ({"model_options": {"nonsense": 1}}, "nonsense"),
    ({"solvers": ["euler"], "solver_options": {"euler": {"grid": [3.0, 1.0, 0.0]}}}, "euler.grid has 2 steps"),
    ({"solvers": ["heun"], "solver_options": {"heun": {"s_churn": "abc"}}}, "heun.s_churn"),
    ({"solvers": ["heun"], "solver_options": {"euler": {}}}, "not in this run"),
    ({"solvers": ["nosuch"]}, "nosuch"),
    ({"solvers": ["heun", "heun"]}, "twice"),
])
def test_bad_configs_are_refused_before_any_work(tmp_path, monkeypatch, changes, message):
    def no_work(*args, **kwargs):
        raise AssertionError("plan() sampled")

    monkeypatch.setattr(solverzoo.sampling, "sample", no_work)
    config = BenchConfig(**{**TINY, "solvers": ["euler"], "nfe": [4], **changes})
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        plan(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_budget_errors_come_before_any_pilot_run(tmp_path, monkeypatch):
    """--nfe 1 with tdas,pds on digits-unet: refused by the plan, before the TDAS pilot and any file."""
    def no_work(*args, **kwargs):
        raise AssertionError("a pilot run started")

    monkeypatch.setattr(solverzoo.sampling, "sample", no_work)
    with pytest.raises(ValueError, match="at least 2"):
        plan(BenchConfig(model="digits-unet", solvers=["tdas", "pds"], nfe=[1], num_samples=4), tmp_path / "o")
    r = CliRunner().invoke(main, ["bench", "--model", "digits-unet", "--solvers", "tdas,pds", "--nfe", "1",
                                  "--out", str(tmp_path / "cli")])
    assert r.exit_code == 2 and "at least 2" in r.output and not (tmp_path / "cli").exists()


def test_a_plan_holds_built_solvers_and_their_steps():
    p = plan(BenchConfig(**{**TINY, "solvers": ["heun", "euler_ancestral", "tdas"], "nfe": [6, 12]}))
    heun, ancestral, tdas = p.solvers
    assert heun.steps == {6: 3, 12: 6} and heun.ode and not ancestral.ode
    assert tdas.filters is not None and p.needs_pilot == ["tdas"]
    assert p.cells == 6 and len(p.scorers) == 1
    results = run_plan(p)
    assert [r["steps"] for r in results["rows"] if r["solver"] == "heun"] == [3, 6]


def test_resume_names_a_truncated_previews_file(tmp_path):
    out = tmp_path / "r"
    args = ["bench", "--model", "gmm-image", "-m", "resolution=8", "--solvers", "euler", "--nfe", "4",
            "--num-samples", "4", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    data = (out / "previews.npz").read_bytes()
    (out / "previews.npz").write_bytes(data[: len(data) // 2])
    before = (out / "results.json").read_bytes()
    r = CliRunner().invoke(main, [*args, "--resume"])
    assert r.exit_code == 2 and "previews.npz" in r.output, r.output
    assert (out / "results.json").read_bytes() == before


def test_philox_noise_reaches_the_path_reference():
    """The reference solve draws its initial noise from the run's noise source: heun at the reference's own
    budget reproduces it under --noise philox as under cpu."""
    from solverzoo.bench.schema import PATH_REFERENCE_NFE

    for noise in ("cpu", "philox"):
        p = plan(BenchConfig(model="gmm-2d", solvers=["heun"], nfe=[PATH_REFERENCE_NFE], num_samples=4,
                             noise=noise))
        row = run_plan(p)["rows"][0]
        assert row["metrics"]["path_rms"] < 1e-6, (noise, row["metrics"])
