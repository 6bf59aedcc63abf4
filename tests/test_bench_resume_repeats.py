"""--resume with --repeats: a cell is done only when every one of its repeats is done (public CLI only)."""

import json

from click.testing import CliRunner

from solverzoo.cli import main

ARGS = ["bench", "--model", "gmm-image", "-m", "resolution=4", "-m", "num_components=2", "--solvers", "euler,heun",
        "--nfe", "4,6", "--num-samples", "8", "--repeats", "2"]


def _rows(out):
    rows = json.loads((out / "results.json").read_text())["rows"]
    return sorted((r["solver"], r["nfe_requested"], r["repeat"], r["value"]) for r in rows)


def test_resume_after_losing_the_second_repeat_of_a_cell_runs_that_repeat(tmp_path):
    """A run stopped after repeat 0 of a cell (its results.json truncated there) resumes to exactly the rows
    of an uninterrupted run: each (solver, nfe, repeat) row once, none lost, none duplicated."""
    part = tmp_path / "part"
    assert CliRunner().invoke(main, [*ARGS, "--out", str(part)]).exit_code == 0
    whole = _rows(part)
    saved = json.loads((part / "results.json").read_text())
    assert [(r["solver"], r["nfe_requested"], r["repeat"]) for r in saved["rows"][:3]] == [
        ("euler", 4, 0), ("euler", 4, 1), ("euler", 6, 0)]
    saved["rows"] = saved["rows"][:3]  # killed after repeat 0 of (euler, 6): repeat 1 of that cell is missing
    (part / "results.json").write_text(json.dumps(saved))
    resumed = CliRunner().invoke(main, [*ARGS, "--out", str(part), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert _rows(part) == whole
    assert len(whole) == 2 * 2 * 2
