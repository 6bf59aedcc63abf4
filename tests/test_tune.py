"""Tuned step schedules: the grid parameterisation, tune_grid lowering its objective, grid files, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import solverzoo
from solverzoo.cli import main
from solverzoo.tune import (
    LogSigmaSchedule,
    check_grid_fits,
    load_grid_file,
    pathwise_error,
    reference_samples,
    tune_grid,
)

SMALL = {"resolution": 8, "num_components": 3}


@pytest.fixture(scope="module")
def model():
    return solverzoo.get_model("gmm-image", **SMALL)


@pytest.mark.parametrize("free_end", [True, False])
def test_schedule_is_a_valid_grid_for_any_parameters_and_inverts(free_end):
    schedule = LogSigmaSchedule(7, 0.01, 50.0, free_end=free_end)
    assert schedule.size == 5 + int(free_end)
    rng = np.random.default_rng(0)
    for theta in [np.zeros(schedule.size), *rng.normal(0, 3, (50, schedule.size))]:
        s = schedule.sigmas(theta)
        assert len(s) == 7 and s[0] == 50.0
        assert all(a > b for a, b in zip(s, s[1:])) and s[-1] > 0
        if free_end:
            assert 0.01 <= s[-1] <= math.sqrt(0.01 * 50.0) * (1 + 1e-12)
        else:
            assert s[-1] == pytest.approx(0.01, rel=1e-12)
        assert schedule.sigmas(schedule.theta_of(s)) == pytest.approx(s, rel=1e-9)
    # zero logits and u = 0 are the geometric grid from sigma_max to sigma_min
    geometric = np.geomspace(50.0, 0.01, 7)
    assert schedule.sigmas(np.zeros(schedule.size)) == pytest.approx(geometric.tolist(), rel=1e-12)


def test_pathwise_error_is_the_rms_distance():
    a = torch.zeros(4, 1, 2, 2)
    b = torch.full((4, 1, 2, 2), 3.0)
    assert pathwise_error(a, b) == pytest.approx(3.0)
    b[0] = float("nan")
    assert pathwise_error(a, b) == math.inf
    with pytest.raises(ValueError, match="shape"):
        pathwise_error(a, b[:2])


def test_tune_grid_lowers_the_pathwise_error(model):
    result = tune_grid(model, "dpmpp_2m", 6, num_samples=8, seed=1, reference_steps=40, max_evals=40,
                       dtype=torch.float64)
    assert set(result.baselines) >= {f"karras(rho={r})" for r in (3, 5, 7, 9)}
    assert result.objective_before == min(result.baselines.values())
    assert result.objective_after < 0.9 * result.objective_before
    assert result.evaluations <= 41 and result.reference_error < result.objective_after
    sigmas = result.sigmas
    assert len(sigmas) == 7 and sigmas[-1] == 0.0 and sigmas[0] == model.process.sigma_max
    # the recorded objective is what the tuned grid gives when run again (a deterministic objective)
    ref = reference_samples(model, sigmas[0], num_samples=8, seed=1, steps=40)
    run = solverzoo.sample(model, "dpmpp_2m", nfe=6, num_samples=8, seed=1, dtype=torch.float64, grid=sigmas)
    assert run.nfe == 6
    assert pathwise_error(run.samples, ref) == pytest.approx(result.objective_after, rel=1e-9)


def test_tune_grid_refuses_stochastic_solvers_and_bad_options(model):
    with pytest.raises(ValueError, match="deterministic"):
        tune_grid(model, "euler_ancestral", 10)
    with pytest.raises(ValueError, match="method"):
        tune_grid(model, "dpmpp_2m", 10, method="bfgs")


def test_grid_file_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_grid_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"sigmas": [80, 1')
    with pytest.raises(ValueError, match="not valid JSON"):
        load_grid_file(bad)
    for content, match in [({"nfe": 3}, "no 'sigmas'"), ({"sigmas": [1.0]}, "at least two"),
                           ({"sigmas": [1.0, "a"]}, "numbers"), ({"sigmas": [1.0, 2.0, 0.0]}, "decreasing"),
                           ({"sigmas": [1.0, -1.0]}, "non-negative")]:
        bad.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=match):
            load_grid_file(bad)
    bad.write_text("[80, 10, 1, 0]")
    assert load_grid_file(bad)[0] == [80.0, 10.0, 1.0, 0.0]
    solver = solverzoo.get_solver("dpmpp_2m")
    check_grid_fits(solver, [80.0, 10.0, 1.0, 0.0], 3)
    with pytest.raises(ValueError, match="3 steps, but 'dpmpp_2m' takes 10 steps at NFE 10"):
        check_grid_fits(solver, [80.0, 10.0, 1.0, 0.0], 10)


def test_cli_tune_grid_writes_a_grid_that_sample_and_bench_load(tmp_path):
    runner = CliRunner()
    out = tmp_path / "grid.json"
    args = ["tune-grid", "--solver", "dpmpp_2m", "--nfe", "5", "--out", str(out), "-m", "resolution=8",
            "-m", "num_components=3", "--num-samples", "4", "--reference-steps", "20", "--max-evals", "15"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["solver"] == "dpmpp_2m" and record["nfe"] == 5 and record["steps"] == 5
    assert record["model"]["name"] == "gmm-image" and record["command"].startswith("solverzoo ")
    assert record["objective"]["after"] <= record["objective"]["before"]
    assert len(record["sigmas"]) == 6 and record["sigmas"][-1] == 0.0
    again = runner.invoke(main, args)  # no silent overwrite
    assert again.exit_code == 2 and "exists" in again.output

    samples = tmp_path / "s"
    result = runner.invoke(main, ["sample", "--solver", "dpmpp_2m", "--nfe", "5", "-m", "resolution=8",
                                  "-m", "num_components=3", "--num-samples", "2", "-o", f"dpmpp_2m.grid=@{out}",
                                  "--out", str(samples)])
    assert result.exit_code == 0, result.output
    meta = json.loads(np.load(samples / "samples.npz")["meta"].item())
    assert meta["nfe"] == 5 and meta["grid"] == "explicit"
    assert meta["options"]["grid"] == pytest.approx(record["sigmas"], rel=1e-12)


@pytest.mark.parametrize("case", ["missing", "corrupt", "length", "stochastic"])
def test_cli_grid_file_errors_exit_2_before_work(tmp_path, case):
    runner = CliRunner()
    grid = tmp_path / "grid.json"
    if case == "corrupt":
        grid.write_text("{not json")
    elif case in ("length", "stochastic"):
        grid.write_text(json.dumps({"sigmas": [50.0, 5.0, 0.5, 0.0]}))
    if case == "stochastic":
        args = ["tune-grid", "--solver", "euler_ancestral", "--nfe", "3", "--out", str(tmp_path / "t.json")]
        expect = "stochastic"
    else:
        args = ["bench", "--solvers", "dpmpp_2m", "--nfe", "3,10", "-o", f"dpmpp_2m.grid=@{grid}",
                "--out", str(tmp_path / "b"), "-m", "resolution=8"]
        expect = {"missing": "does not exist", "corrupt": "not valid JSON",
                  "length": "takes 10 steps at NFE 10"}[case]
    result = runner.invoke(main, args)
    assert result.exit_code == 2, result.output
    assert expect in result.output and "Traceback" not in result.output
    assert not (tmp_path / "b").exists() and not (tmp_path / "t.json").exists()
