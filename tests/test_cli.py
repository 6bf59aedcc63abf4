"""The command line end to end on a tiny model: outputs, errors (exit code 2), no lost files."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from solverzoo.cli import main
from solverzoo.solvers import list_solvers

TINY = ["--model", "gmm-image", "-m", "resolution=8", "-m", "num_components=2"]


@pytest.fixture()
def runner():
    return CliRunner()


def test_list_json_has_every_solver_with_its_fields(runner):
    result = runner.invoke(main, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == list_solvers()
    for r in rows:
        assert {"family", "kind", "order", "calls_per_step", "min_nfe", "paper"} <= set(r)
        assert r["kind"] in ("ode", "sde") and r["paper"]


def test_bench_writes_results_csv_and_plot(runner, tmp_path):
    out = tmp_path / "run"
    args = ["bench", *TINY, "--solvers", "heun,seeds2,pc", "--nfe", "4,8", "--num-samples", "20",
            "--batch-size", "7", "--out", str(out)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert [(r["solver"], r["nfe_requested"]) for r in rows] == [
        ("heun", 4), ("heun", 8), ("seeds2", 4), ("seeds2", 8), ("pc", 4), ("pc", 8)]
    assert all(r["status"] == "ok" and r["fd"] >= 0 for r in rows)
    heun = {r["nfe_requested"]: r["nfe"] for r in rows if r["solver"] == "heun"}
    assert heun == {4: 3, 8: 7}  # 2N - 1 counted calls
    assert results["metric"] == "fd_pixels" and results["oracle_floor"] > 0
    assert all(r["fd_excess"] == pytest.approx(r["fd"] - results["oracle_floor"]) for r in rows)
    csv_lines = (out / "results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(rows)
    assert (out / "nfe_vs_fd.png").stat().st_size > 1000
    # the same command again is refused without --overwrite, and leaves the results alone
    before = (out / "results.json").read_bytes()
    again = runner.invoke(main, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert (out / "results.json").read_bytes() == before
    # report rebuilds the table from the saved file
    rep = runner.invoke(main, ["report", str(out)])
    assert rep.exit_code == 0 and "seeds2" in rep.output


def test_bench_is_deterministic_across_batch_sizes(runner, tmp_path):
    fds = []
    for bs in ("5", "20"):
        out = tmp_path / bs
        r = runner.invoke(main, ["bench", *TINY, "--solvers", "heun,seeds1", "--nfe", "6", "--num-samples", "20",
                                 "--batch-size", bs, "--out", str(out)])
        assert r.exit_code == 0, r.output
        fds.append([row["fd"] for row in json.loads((out / "results.json").read_text())["rows"]])
    assert fds[0] == fds[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--solvers", "nosuch"], "unknown solver 'nosuch'"),
        (["--solvers", "heun", "--nfe", "0"], "NFE budgets must be positive"),
        (["--solvers", "seeds3", "--nfe", "2"], "at least 3"),
        (["--solvers", "heun", "--nfe", "ten"], "could not read NFE"),
        (["--model", "nosuch"], "unknown model"),
        (["--solvers", "heun", "-o", "heun.nosuch=1"], "valid options"),
        (["--solvers", "heun", "-o", "euler.s_churn=1"], "not in this run"),
        (["--solvers", "heun", "--device", "cuda:7"], "cuda"),
        (["--solvers", "heun", "--feature", "bogus"], "feature"),
    ],
)
def test_bench_bad_input_exits_2_before_any_work(runner, tmp_path, args, message):
    out = tmp_path / "out"
    result = runner.invoke(main, ["bench", *TINY, "--num-samples", "4", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_sample_writes_npz_and_grid(runner, tmp_path):
    out = tmp_path / "s"
    result = runner.invoke(main, ["sample", *TINY, "--solver", "seeds2", "--nfe", "6", "--num-samples", "5",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out / "samples.npz") as z:
        assert z["samples"].shape == (5, 3, 8, 8)
        meta = json.loads(str(z["meta"]))
    assert meta["nfe"] == 6 and meta["solver"] == "seeds2"
    assert (out / "grid.png").exists()


def test_report_on_a_malformed_file_names_it(runner, tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    result = runner.invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "results.json" in result.output and "not valid JSON" in result.output


def test_filters_estimate_from_model_and_use_in_pds(runner, tmp_path):
    stats = tmp_path / "stats.npz"
    r = runner.invoke(main, ["filters", "estimate", "--data", "model:gmm-image", "--num", "20", "--out", str(stats)])
    assert r.exit_code == 0, r.output
    with np.load(stats) as z:
        assert z["freq"].shape == (3, 32, 32) and z["space"].shape == (3, 32, 32)
    out = tmp_path / "b"
    r = runner.invoke(main, ["bench", "--solvers", "pds", "--nfe", "8", "--num-samples", "4", "-o",
                             f"pds.filters={stats}", "--out", str(out)])
    assert r.exit_code == 0, r.output
    # a filter file for another resolution is refused with both shapes named
    r = runner.invoke(main, ["bench", *TINY, "--solvers", "pds", "--nfe", "8", "--num-samples", "4", "-o",
                             f"pds.filters={stats}", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2
    assert "(3, 32, 32)" in r.output and "(3, 8, 8)" in r.output and "stats.npz" in r.output
    assert not (tmp_path / "c").exists()


def test_filters_estimate_missing_data_exits_2(runner, tmp_path):
    r = runner.invoke(main, ["filters", "estimate", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x.npz")])
    assert r.exit_code == 2 and "no such file" in r.output


def test_report_compares_two_result_folders(runner, tmp_path):
    for name, nfe in (("a", "4,8"), ("b", "8")):
        r = runner.invoke(main, ["bench", *TINY, "--solvers", "euler", "--nfe", nfe, "--num-samples", "6",
                                 "--out", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
    fd = {row["nfe_requested"]: row["fd"] for row in json.loads((tmp_path / "a" / "results.json").read_text())["rows"]}
    result = runner.invoke(main, ["report", str(tmp_path / "a"), str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert f"{fd[8]:.2f} -> {fd[8]:.2f} (+0.00)" in result.output  # same seed, same cell: no difference
    assert "only in a" in result.output
    other = tmp_path / "c"
    r = runner.invoke(main, ["bench", *TINY, "--solvers", "euler", "--nfe", "8", "--num-samples", "6",
                             "--feature", "pool:4", "--out", str(other)])
    assert r.exit_code == 0
    mismatch = runner.invoke(main, ["report", str(tmp_path / "a"), str(other)])
    assert mismatch.exit_code == 2 and "different metrics" in mismatch.output
