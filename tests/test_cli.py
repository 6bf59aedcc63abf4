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
    assert all(r["status"] == "ok" and r["metrics"]["fd"] >= 0 and r["uncertainty"] > 0 for r in rows)
    heun = {r["nfe_requested"]: r["nfe"] for r in rows if r["solver"] == "heun"}
    assert heun == {4: 3, 8: 7}  # 2N - 1 counted calls
    assert results["schema_version"] == 3
    assert results["metric"] == "mmd_whitened" and results["oracle_floor"] == 0.0
    assert all(r["excess"] == r["value"] for r in rows)  # unbiased: floor 0, excess = value
    assert results["fd_metric"] == "fd_pixels" and results["fd_oracle_floor"] > 0
    assert all(r["metrics"]["fd_excess"] == pytest.approx(r["metrics"]["fd"] - results["fd_oracle_floor"])
               for r in rows)
    # pathwise error for the ODE solver only (heun), against the reference solve
    assert all(("path_rms" in r["metrics"]) == (r["solver"] == "heun") for r in rows)
    path = {r["nfe_requested"]: r["metrics"]["path_rms"] for r in rows if r["solver"] == "heun"}
    assert 0 < path[8] < path[4]
    csv_lines = (out / "results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(rows)
    for name in ("nfe_vs_mmd_whitened.png", "nfe_vs_fd.png", "nfe_vs_spectral_error.png", "nfe_vs_path_rms.png",
                 "samples.png"):
        assert (out / name).stat().st_size > 1000, name
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
        rows = json.loads((out / "results.json").read_text())["rows"]
        fds.append([(row["value"], row["metrics"]["fd"]) for row in rows])
    assert fds[0] == fds[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--solvers", "nosuch"], "unknown solver or family 'nosuch'"),
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
    rows = json.loads((tmp_path / "a" / "results.json").read_text())["rows"]
    v = {row["nfe_requested"]: row["value"] for row in rows}
    result = runner.invoke(main, ["report", str(tmp_path / "a"), str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert f"{v[8]:.3g} -> {v[8]:.3g} (+0)" in result.output  # same seed, same cell: no difference
    assert "only in a" in result.output
    other = tmp_path / "c"
    r = runner.invoke(main, ["bench", *TINY, "--solvers", "euler", "--nfe", "8", "--num-samples", "6",
                             "--feature", "pool:4", "--out", str(other)])
    assert r.exit_code == 0
    mismatch = runner.invoke(main, ["report", str(tmp_path / "a"), str(other)])
    assert mismatch.exit_code == 2 and "different metrics" in mismatch.output


def test_list_shows_families_and_fits_80_columns(runner):
    import os

    env = {**os.environ, "COLUMNS": "80"}
    result = runner.invoke(main, ["list"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.output  # nothing truncated
    for family in ("seeds", "edm", "score_sde", "dpm-solver", "pds", "tdas"):
        assert any(line.split()[:1] == [family] for line in lines), family
    wide = runner.invoke(main, ["list", "--wide"])
    assert wide.exit_code == 0 and "Karras" in wide.output and "precond." in wide.output


def test_bench_selectors_pds_and_seeds_run_as_written(runner, tmp_path):
    out = tmp_path / "sel"
    result = runner.invoke(main, ["bench", *TINY, "--solvers", "pds,seeds", "--nfe", "6", "--num-samples", "6",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["solver"] for r in rows] == ["pds", "etd_erk", "seeds1", "seeds2", "seeds3"]
    assert all(r["status"] == "ok" for r in rows)
    # the pds row records every option it ran with
    assert {"alpha", "filters"} <= set(rows[0]["options"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--solvers", "heun", "-o", "heun.s_churn=abc"], "heun.s_churn='abc': expected a number"),
        (["--solvers", "ddim", "-o", "ddim.eta=nan"], "ddim.eta=nan: expected a finite number"),
        (["--solvers", "ddim", "-o", "ddim.eta=NaN"], "expected a finite number"),
        (["--solvers", "heun", "--device", "tpu"], "--device 'tpu'"),
        (["--solvers", "heun", "--device", "cuda:abc"], "--device 'cuda:abc'"),
        (["--solvers", "heun", "-m", "nonsense=1"], "nonsense"),
        (["--solvers", "pds", "-o", "pds.filters=nosuch"], "filters="),
        (["--solvers", "heun", "-o", "heun.grid=[1,2,3]"], "heun"),
        (["--solvers", "dpmpp_*x"], "matches no solver"),
    ],
)
def test_typed_options_and_devices_exit_2_before_any_work(runner, tmp_path, args, message):
    out = tmp_path / "out"
    result = runner.invoke(main, ["bench", *TINY, "--nfe", "6", "--num-samples", "4", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()


def test_unreadable_image_in_a_folder_is_named(runner, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for k in range(3):
        Image.fromarray((np.random.default_rng(k).random((8, 8, 3)) * 255).astype(np.uint8)).save(folder / f"{k}.png")
    (folder / "broken.png").write_bytes(b"not an image at all")
    r = runner.invoke(main, ["filters", "estimate", "--data", str(folder), "--out", str(tmp_path / "s.npz")])
    assert r.exit_code == 2 and "broken.png" in r.output, r.output
    r = runner.invoke(main, ["fid-ref", "--data", str(folder), "--feature", "pixels", "--out", str(tmp_path / "r.npz")])
    assert r.exit_code == 2 and "broken.png" in r.output, r.output
    r = runner.invoke(main, ["bench", "--model", "digits-unet", "--reference", str(folder), "--solvers", "euler",
                             "--nfe", "4", "--num-samples", "4", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "broken.png" in r.output, r.output
    assert not (tmp_path / "b").exists()


def test_sample_grid_is_upscaled_to_64_pixels(runner, tmp_path):
    import matplotlib.image as mpimg

    out = tmp_path / "g"
    r = runner.invoke(main, ["sample", *TINY, "--solver", "heun", "--nfe", "5", "--num-samples", "4",
                             "--out", str(out)])
    assert r.exit_code == 0, r.output
    img = mpimg.imread(out / "grid.png")
    assert img.shape[0] >= 2 * 64 and img.shape[1] >= 2 * 64  # 2 x 2 grid of 8 px images, each at >= 64 px


def test_score_puts_outside_samples_on_the_bench_scale(runner, tmp_path):
    import solverzoo

    model = solverzoo.get_model("gmm-image", resolution=8, num_components=2)
    exact = model.sample_data(5, range(200)).numpy()
    np.savez(tmp_path / "exact.npz", samples=exact)
    np.save(tmp_path / "blurry.npy", 0.5 * exact)
    args = ["--model", "gmm-image", "-m", "resolution=8", "-m", "num_components=2", "--json"]
    r1 = runner.invoke(main, ["score", str(tmp_path / "exact.npz"), *args])
    r2 = runner.invoke(main, ["score", str(tmp_path / "blurry.npy"), *args])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    a, b = json.loads(r1.output), json.loads(r2.output)
    assert a["metric"] == b["metric"] == "mmd_whitened" and a["oracle_floor"] == 0.0
    assert abs(a["value"]) < 3 * a["uncertainty"] and b["value"] > a["value"] + 3 * b["uncertainty"]
    assert set(a["secondaries"]) >= {"fd_pixels", "spectral_error", "hf_ratio"}
    # the same numbers as solverzoo.evaluate
    assert solverzoo.evaluate(model, exact)["value"] == pytest.approx(a["value"])
    # bad files and shapes: exit 2 with a message
    (tmp_path / "junk.npz").write_bytes(b"junk")
    np.save(tmp_path / "wrong.npy", exact[:, :, :4])
    for name, message in (("junk.npz", "cannot read"), ("wrong.npy", "do not match"), ("none.npz", "no such file")):
        r = runner.invoke(main, ["score", str(tmp_path / name), *args])
        assert r.exit_code == 2 and message in r.output, (name, r.output)
