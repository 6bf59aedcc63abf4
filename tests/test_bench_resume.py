"""Sweeps that can be trusted: kill and resume without loss, determinism, repeats."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from solverzoo.cli import main

ARGS = ["bench", "--model", "gmm-image", "-m", "resolution=8", "-m", "num_components=2",
        "--solvers", "euler,heun,seeds1,pc", "--nfe", "6,12,24", "--num-samples", "40", "--batch-size", "10"]
TIMINGS = ("seconds",)


def _rows(path):
    rows = json.loads((path / "results.json").read_text())["rows"]
    return sorted(({k: v for k, v in r.items() if k not in TIMINGS} for r in rows),
                  key=lambda r: (r["solver"], r["nfe_requested"], r["repeat"]))


def _cli(*args, **kwargs):
    """The real command in its own process, on one thread (as the suite runs: two threads on a busy
    2-core machine can make this small sweep many times slower)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "solverzoo", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, **kwargs)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_rows(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert _cli(*ARGS, "--out", str(whole)).wait(timeout=300) == 0
    proc = _cli(*ARGS, "--out", str(part))
    deadline = time.time() + 120
    killed_with = None
    while time.time() < deadline and proc.poll() is None:
        try:
            n = len(json.loads((part / "results.json").read_text())["rows"])
        except (FileNotFoundError, json.JSONDecodeError):  # the atomic writes never leave half a file
            n = 0
        if n >= 3:
            proc.send_signal(signal.SIGKILL)
            killed_with = n
            break
        time.sleep(0.02)
    proc.wait()
    assert killed_with is not None, "the run finished before it could be killed"
    assert killed_with < 12
    assert _cli(*ARGS, "--out", str(part), "--resume").wait(timeout=300) == 0
    assert _rows(part) == _rows(whole)  # bit for bit, timings aside
    assert not [f for f in os.listdir(part) if f.endswith(".tmp")]


def test_resume_refuses_results_of_an_older_schema(tmp_path):
    out = tmp_path / "old"
    small = ["bench", "--model", "gmm-image", "-m", "resolution=8", "--solvers", "euler", "--nfe", "4",
             "--num-samples", "10", "--out", str(out)]
    assert CliRunner().invoke(main, small).exit_code == 0
    saved = json.loads((out / "results.json").read_text())
    del saved["schema_version"]
    (out / "results.json").write_text(json.dumps(saved))
    again = CliRunner().invoke(main, [*small, "--resume"])
    assert again.exit_code == 2 and "schema" in again.output


def test_resume_refuses_a_different_configuration(tmp_path):
    out = tmp_path / "r"
    small = ["bench", "--model", "gmm-image", "-m", "resolution=8", "--solvers", "euler", "--nfe", "4",
             "--num-samples", "10", "--out", str(out)]
    assert CliRunner().invoke(main, small).exit_code == 0
    before = (out / "results.json").read_text()
    changed = CliRunner().invoke(main, [*small[:-2], "--seed", "1", "--out", str(out), "--resume"])
    assert changed.exit_code == 2 and "differs in: seed" in changed.output
    assert (out / "results.json").read_text() == before


def test_same_command_twice_gives_identical_rows(tmp_path):
    for name in ("a", "b"):
        assert CliRunner().invoke(main, [*ARGS, "--nfe", "6", "--out", str(tmp_path / name)]).exit_code == 0
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")


def test_repeats_use_disjoint_seed_ranges(tmp_path):
    out = tmp_path / "rep"
    result = CliRunner().invoke(main, ["bench", "--model", "gmm-image", "-m", "resolution=8", "--solvers", "heun",
                                       "--nfe", "9", "--num-samples", "10", "--repeats", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    fds = [r["metrics"]["fd"] for r in saved["rows"]]
    assert [r["repeat"] for r in saved["rows"]] == [0, 1, 2]
    assert len(set(fds)) == 3 and len(set(saved["fd_oracle_floors"])) == 3
    assert saved["oracle_floors"] == [0.0, 0.0, 0.0]  # mmd_whitened is unbiased at every N
    assert "±" in result.output
    # repeat 1 is samples 10..19 of the same seed: the same as a single run over 20 samples' second half
    single = CliRunner().invoke(main, ["bench", "--model", "gmm-image", "-m", "resolution=8", "--solvers", "heun",
                                       "--nfe", "9", "--num-samples", "10", "--seed", "0", "--out",
                                       str(tmp_path / "one")])
    assert single.exit_code == 0
    first = json.loads((tmp_path / "one" / "results.json").read_text())["rows"][0]["metrics"]["fd"]
    assert first == fds[0]


def test_divergence_is_a_row_not_a_crash(tmp_path):
    out = tmp_path / "div"
    # a Langevin step size that overflows float32 makes every sample inf/nan: recorded, the sweep goes on
    result = CliRunner().invoke(main, ["bench", "--model", "gmm-image", "-m", "resolution=8", "--solvers",
                                       "pc,euler", "--nfe", "4", "--num-samples", "8", "-o", "pc.snr=1e30",
                                       "--out", str(out)])
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["solver"], r["status"]) for r in rows] == [("pc", "nonfinite"), ("euler", "ok")]
    assert rows[0]["message"] == "8 of 8 samples are not finite" and rows[0]["metrics"] == {}
    assert rows[0]["value"] is None and rows[1]["value"] is not None
    assert result.exit_code == 1
    assert (out / "nfe_vs_fd.png").exists() and (out / "nfe_vs_mmd_whitened.png").exists()
