"""Rows carry a ``metrics`` mapping (results schema 3); ``report`` still reads schema 1 and 2 files, and
refuses malformed ones by name (exit 2, never a traceback)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from solverzoo.bench.report import load_results
from solverzoo.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
TINY = ["bench", "--model", "gmm-image", "-m", "resolution=8", "-m", "num_components=2"]


def _schema1() -> dict:
    """The layout before schema_version existed: fd was the primary metric, no value / excess."""
    return {"metric": "fd_pixels", "oracle_floor": 1.5, "config": {"num_samples": 10},
            "model": {"name": "gmm-image", "shape": [3, 8, 8]},
            "rows": [{"solver": "euler", "nfe_requested": 4, "nfe": 4, "steps": 4, "metric": "fd_pixels",
                      "fd": 30.0, "fd_excess": 28.5, "oracle_floor": 1.5, "seconds": 0.1, "status": "ok",
                      "message": "", "options": {}, "path_rms": 0.2},
                     {"solver": "heun", "nfe_requested": 4, "nfe": 3, "steps": 2, "metric": "fd_pixels",
                      "fd": 20.0, "fd_excess": 18.5, "oracle_floor": 1.5, "seconds": 0.1, "status": "ok",
                      "message": "", "options": {}, "path_rms": 0.1}]}


def test_new_rows_carry_a_metrics_mapping_declared_at_the_top(tmp_path):
    out = tmp_path / "new"
    r = CliRunner().invoke(main, [*TINY, "--solvers", "heun,euler_ancestral", "--nfe", "6", "--num-samples", "8",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    assert results["schema_version"] == 3
    declared = results["metrics"]
    assert {"fd", "fd_excess", "spectral_error", "hf_ratio", "path_rms", "path_median", "path_p90",
            "mode_switch"} <= set(declared)
    heun, ancestral = results["rows"]
    assert set(heun["metrics"]) <= set(declared) and "path_p90" in heun["metrics"]
    assert "path_rms" not in ancestral["metrics"]  # the pathwise error is for ODE solvers
    assert heun["metrics"]["path_median"] <= heun["metrics"]["path_p90"]
    assert 0.0 <= heun["metrics"]["mode_switch"] <= 1.0
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {"path_median", "path_p90", "mode_switch", "fd"} <= set(header)
    assert "path_p90" in r.output and "mode_switch" in r.output  # the tables show the robust summary


@pytest.mark.parametrize("schema", [1, 2])
def test_report_reads_the_older_schemas(tmp_path, schema):
    folder = tmp_path / f"s{schema}"
    folder.mkdir()
    if schema == 2:
        shutil.copy(FIXTURES / "results_schema2.json", folder / "results.json")
    else:
        (folder / "results.json").write_text(json.dumps(_schema1()))
    r = CliRunner().invoke(main, ["report", str(folder)])
    assert r.exit_code == 0, r.output
    results = load_results(folder)
    assert all(isinstance(row["metrics"], dict) for row in results["rows"])
    assert "path_rms" in results["metrics"] and (folder / "nfe_vs_path_rms.png").exists()
    assert "path_rms" in (folder / "results.csv").read_text().splitlines()[0]
    if schema == 1:
        assert [row["value"] for row in results["rows"]] == [30.0, 20.0]  # fd was the primary metric


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(schema_version=99), "schema 99"),
    (lambda d: d["rows"][0].pop("solver"), "has no 'solver'"),
    (lambda d: d["rows"].append("text"), "is not an object"),
    (lambda d: d["rows"][0].update(value="abc"), "value='abc' is not a number"),
    (lambda d: d.update(rows={"a": 1}), "no 'rows' list"),
])
def test_malformed_results_are_named(tmp_path, edit, message):
    data = json.loads((FIXTURES / "results_schema2.json").read_text())
    edit(data)
    (tmp_path / "results.json").write_text(json.dumps(data))
    r = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert r.exit_code == 2 and message in r.output and "results.json" in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_non_finite_values_written_as_strings_are_read_back(tmp_path):
    data = json.loads((FIXTURES / "results_schema2.json").read_text())
    data["rows"][0].update(value="nan", uncertainty="inf", fd="-inf")
    (tmp_path / "results.json").write_text(json.dumps(data))
    r = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert r.exit_code == 0, r.output
    row = load_results(tmp_path)["rows"][0]
    assert row["value"] != row["value"] and row["metrics"]["fd"] == float("-inf")


def test_report_refuses_to_compare_different_models(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    base = [*TINY, "--solvers", "euler", "--nfe", "4", "--num-samples", "4"]
    assert CliRunner().invoke(main, [*base, "--out", str(a)]).exit_code == 0
    assert CliRunner().invoke(main, ["bench", "--model", "gmm-2d", "--solvers", "euler", "--nfe", "4",
                                     "--num-samples", "4", "--out", str(b)]).exit_code == 0
    r = CliRunner().invoke(main, ["report", str(a), str(b)])
    assert r.exit_code == 2 and "different models" in r.output, r.output
