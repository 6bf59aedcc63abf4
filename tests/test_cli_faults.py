"""The ordinary faults of every command: exit code 2 before any work, naming the option, file or variable,
never a traceback, nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from solverzoo.cli import main

TINY = ["--model", "gmm-image", "-m", "resolution=8", "-m", "num_components=2"]
BENCH = ["bench", *TINY, "--solvers", "euler", "--nfe", "4", "--num-samples", "4"]
SAMPLE = ["sample", *TINY, "--solver", "heun", "--nfe", "4", "--num-samples", "2"]
TUNE = ["tune-grid", *TINY, "--solver", "heun", "--nfe", "4", "--max-evals", "2"]


@pytest.mark.parametrize("args, message", [
    ([*SAMPLE, "-m", "nonsense=1"], "nonsense"),
    ([*SAMPLE, "--device", "tpu"], "--device 'tpu'"),
    ([*SAMPLE, "-o", "s_churn=abc"], "heun.s_churn='abc'"),
    ([*TUNE, "-m", "nonsense=1"], "nonsense"),
    ([*TUNE, "-o", "s_churn=abc"], "heun.s_churn='abc'"),
    (["filters", "tdas-estimate", *TINY, "-m", "nonsense=1", "--nfe", "4"], "nonsense"),
    (["train", "--channel-mult", "0", "--iterations", "1"], "--channel-mult"),
    ([*BENCH, "-m", "resolution=8.5"], "resolution=8.5: expected an integer"),
    (["bench", "-m", "resolution=abc", "--solvers", "euler", "--nfe", "4"], "resolution='abc'"),
    ([*BENCH, "--nfe", "4,4"], "budget 4 is given twice"),
    ([*BENCH, "-o", "euler.grid=[3.0,1.0,0.0]"], "euler.grid has 2 steps"),
    ([*BENCH, "-o", "euler.grid=" + "[" * 60 + "]" * 60], "-o euler.grid"),
    ([*BENCH, "-m", "seed=" + "9" * 5000], "-m seed"),
    ([*BENCH, "--seed", "1", "--labels", "abc"], "labels"),
    (["bench", "--model", "digits-unet", "--solvers", "tdas,pds", "--nfe", "1"], "at least 2"),
])
def test_bad_input_exits_2_naming_it(tmp_path, args, message):
    out = {"tune-grid": tmp_path / "g.json", "filters": tmp_path / "f.npz"}.get(args[0], tmp_path / "out")
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not out.exists()


@pytest.mark.parametrize("out, message", [("", "empty path"), ("x" * 300, "255")])
def test_unusable_out_paths(tmp_path, monkeypatch, out, message):
    monkeypatch.chdir(tmp_path)
    for args in (BENCH, SAMPLE):
        result = CliRunner().invoke(main, [*args, "--out", out])
        assert result.exit_code == 2 and message in result.output, result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("variable, value", [("WORLD_SIZE", "abc"), ("SOLVERZOO_DIST_TIMEOUT_MIN", "-1"),
                                             ("RANK", "5")])
def test_environment_variables_are_named(tmp_path, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(main, [*BENCH, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and variable in result.output, result.output


@pytest.mark.parametrize("arrays, extra, message", [
    ({"samples": np.zeros((4, 3, 8, 8), dtype=np.int8)}, [], "dtype int8"),
    ({"samples": np.zeros((4, 3, 8, 8), dtype=np.complex64)}, [], "complex64"),
    ({"a": np.zeros((4, 3, 8, 8)), "b": np.zeros((4, 3, 8, 8))}, [], "none is named 'samples'"),
    ({"samples": np.zeros((0, 3, 8, 8))}, [], "at least 2"),
    ({"samples": np.zeros((4, 3, 8, 8))}, ["--reference", "digits"], "--reference applies to learned models"),
])
def test_score_refuses_what_it_cannot_score(tmp_path, arrays, extra, message):
    path = tmp_path / "s.npz"
    np.savez(path, **arrays)
    result = CliRunner().invoke(main, ["score", str(path), *TINY, *extra])
    assert result.exit_code == 2 and message in result.output, result.output


def test_filters_estimate_writes_the_file_it_prints_and_never_replaces_it_unasked(tmp_path):
    plain = tmp_path / "fe_plain"
    r = CliRunner().invoke(main, ["filters", "estimate", "--data", "digits", "--num", "20", "--out", str(plain)])
    assert r.exit_code == 2 and ".npz" in r.output and not plain.exists() and not plain.with_suffix(".npz").exists()
    out = tmp_path / "fe.npz"
    r = CliRunner().invoke(main, ["filters", "estimate", "--data", "digits", "--num", "20", "--out", str(out)])
    assert r.exit_code == 0 and f"pds.filters={out}" in r.output.replace("\n", "") and out.is_file()
    before = out.read_bytes()
    again = CliRunner().invoke(main, ["filters", "estimate", "--data", "digits", "--num", "30", "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output and out.read_bytes() == before


def test_a_corrupt_checkpoint_is_named_without_torch_advice(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x80\x02not a checkpoint" * 10)
    result = CliRunner().invoke(main, ["bench", "--model", str(bad), "--solvers", "euler", "--nfe", "4",
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and str(bad) in result.output, result.output
    assert "weights_only=False" not in result.output


@pytest.mark.parametrize("option", ["-o", "-m"])
def test_hostile_nesting_is_refused_without_exhausting_the_stack(tmp_path, option):
    """A value nested far past the limit (500 levels) is refused naming the option, not a RecursionError."""
    value = "[" * 500 + "]" * 500
    args = ["-o", f"euler.grid={value}", "--solvers", "euler"] if option == "-o" else ["-m", f"process_options={value}"]
    result = CliRunner().invoke(main, ["bench", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "nested more than 4 levels" in result.output and "Recursion" not in result.output


def test_train_resume_on_a_damaged_or_finished_run_exits_2_naming_the_state(tmp_path):
    """--resume on a damaged training-state.pt, and on a run already at --iterations, exit 2 naming the file
    and what to do (no traceback, nothing overwritten)."""
    runner = CliRunner()
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "training-state.pt").write_bytes(b"not a state")
    result = runner.invoke(main, ["train", "--resume", "--out", str(damaged), "--iterations", "3"])
    assert result.exit_code == 2 and "training-state.pt is not a readable training state" in result.output
    assert (damaged / "training-state.pt").read_bytes() == b"not a state"
    done = tmp_path / "done"
    assert runner.invoke(main, ["train", "--out", str(done), "--iterations", "2", "--threads", "1"]).exit_code == 0
    again = runner.invoke(main, ["train", "--resume", "--out", str(done), "--iterations", "2"])
    assert again.exit_code == 2 and "nothing to do; raise --iterations" in again.output
