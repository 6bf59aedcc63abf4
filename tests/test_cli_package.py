"""The command line as a package: every command group registered, one entry point, ``python -m solverzoo``,
the bench model built once."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest
from click.testing import CliRunner

from solverzoo.cli import main

TINY = ["--model", "gmm-image", "-m", "resolution=8", "-m", "num_components=2"]


def test_every_command_is_registered():
    assert set(main.commands) >= {"list", "sample", "bench", "report", "score", "filters", "train",
                                  "train-classifier", "fid-ref", "tune-grid"}
    assert set(main.commands["filters"].commands) == {"estimate", "tdas-estimate"}


def test_console_script_and_python_m():
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("solverzoo") == "solverzoo.cli:main"
    r = subprocess.run([sys.executable, "-m", "solverzoo", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "tune-grid" in r.stdout and "bench" in r.stdout, r.stderr


@pytest.mark.parametrize("extra", [["--solvers", "euler"], ["--solvers", "heun", "-o", "s_churn=0"],
                                   ["-o", "grid=\"karras\""]])
def test_bench_builds_the_model_once(tmp_path, monkeypatch, extra):
    """One model per command, whatever the options (the plan builds it; nothing rebuilds it)."""
    import solverzoo.models as models

    built = []
    real = models.get_model

    def counting(*args, **kwargs):
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "get_model", counting)
    r = CliRunner().invoke(main, ["bench", *TINY, "--nfe", "4", "--num-samples", "4", *extra,
                                  "--out", str(tmp_path / "b")])
    assert r.exit_code in (0, 1), r.output
    assert (tmp_path / "b" / "results.json").exists()
    assert len(built) == 1, built


def test_shared_options_are_the_same_objects():
    """--guidance/--labels/--noise are declared once (cli.common) and reach sample and bench alike."""
    for command in ("sample", "bench"):
        names = {p.name for p in main.commands[command].params}
        assert {"guidance", "labels", "noise"} <= names, command
    sample_help = {p.name: p.help for p in main.commands["sample"].params}
    bench_help = {p.name: p.help for p in main.commands["bench"].params}
    assert all(sample_help[k] == bench_help[k] for k in ("guidance", "labels", "noise"))
