"""Bring your own sampler: solverzoo.register (replace, idempotent), from_k_diffusion (counted NFE,
options, noise), and entry-point plugins seen by ``solverzoo list`` and ``solverzoo bench``."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import solverzoo
from solverzoo.solvers import SOLVERS

ROOT = Path(__file__).resolve().parents[1]
D64 = torch.float64


def my_euler(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """Euler on dx/dsigma = (x - D) / sigma, written as k-diffusion writes its samplers (the step in its
    denoised form D + (sigma'/sigma)(x - D), free of cancellation at a huge first sigma)."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        x = denoised + (sigmas[i + 1] / sigmas[i]) * (x - denoised)
    return x


@pytest.fixture
def registry():
    """Leave the solver registry as it was."""
    before = dict(SOLVERS._entries)
    yield SOLVERS
    SOLVERS._entries.clear()
    SOLVERS._entries.update(before)


def test_from_k_diffusion_counts_and_equals_euler(registry):
    cls = solverzoo.register(solverzoo.from_k_diffusion(my_euler, name="my_euler"))
    assert issubclass(cls, solverzoo.Solver) and "my_euler" in solverzoo.list_solvers()
    assert cls.info.kind == "ode" and cls.info.calls_per_step == 1 and cls.info.grid == "karras"
    model = solverzoo.get_model("gmm-2d")
    ours = solverzoo.sample(model, "my_euler", nfe=10, num_samples=64, seed=3)
    ref = solverzoo.sample(model, "euler", nfe=10, num_samples=64, seed=3)
    assert ours.nfe == 10 and torch.equal(ours.samples, ref.samples)
    import solverzoo.k_diffusion as zoo_kd

    assert callable(zoo_kd.sample_my_euler)  # registered later, still a drop-in


def test_register_replace_and_same_class(registry):
    first = solverzoo.from_k_diffusion(my_euler, name="my_euler")
    solverzoo.register(first)
    solverzoo.register(first)  # the same class again: nothing happens
    second = solverzoo.from_k_diffusion(my_euler, name="my_euler")  # a notebook cell run again
    with pytest.raises(ValueError, match=r"solver 'my_euler' registered twice \(pass replace=True"):
        solverzoo.register(second)
    assert solverzoo.register(second, replace=True) is second and SOLVERS["my_euler"] is second
    with pytest.raises(TypeError, match="from_k_diffusion"):
        solverzoo.register(my_euler)


def test_options_and_noise_of_a_stochastic_function(registry):
    """A function's keyword options become the solver's; with stochastic=True its noise_sampler draws from
    the per-sample streams, so k-diffusion's Euler-ancestral equals the zoo's on the same seed."""
    k_sampling = pytest.importorskip("k_diffusion.sampling")
    cls = solverzoo.register(solverzoo.from_k_diffusion(k_sampling.sample_euler_ancestral, name="kd_euler_a",
                                                        stochastic=True))
    sig = inspect.signature(cls)
    assert list(sig.parameters)[:2] == ["eta", "s_noise"] and sig.parameters["eta"].default == 1.0
    with pytest.raises(ValueError, match=r"unknown option\(s\) churn for solver 'kd_euler_a'"):
        solverzoo.get_solver("kd_euler_a", churn=1)
    model = solverzoo.get_model("gmm-2d")
    for eta in (1.0, 0.5):
        ours = solverzoo.sample(model, "kd_euler_a", nfe=8, num_samples=32, seed=1, batch_size=7, dtype=D64, eta=eta)
        ref = solverzoo.sample(model, "euler_ancestral", nfe=8, num_samples=32, seed=1, dtype=D64, eta=eta)
        assert ours.nfe == 8 and ours.options["eta"] == eta
        torch.testing.assert_close(ours.samples, ref.samples, rtol=0, atol=1e-12)


def test_from_k_diffusion_refuses_other_signatures():
    with pytest.raises(TypeError, match="k-diffusion's signature"):
        solverzoo.from_k_diffusion(lambda x, sigmas: x, name="nope")
    with pytest.raises(ValueError, match="calls_per_step"):
        solverzoo.from_k_diffusion(my_euler, name="nope", calls_per_step=0)


# --- entry points, through the command line ------------------------------------------------------------


def make_plugin(tmp_path: Path, entries: str) -> dict:
    """A module and an installed distribution's metadata (dist-info with entry_points.txt) on a path of
    their own; returns the environment that puts them on PYTHONPATH."""
    (tmp_path / "my_plugin.py").write_text("import solverzoo\n\n\n" + inspect.getsource(my_euler) + textwrap.dedent("""

        MyEuler = solverzoo.from_k_diffusion(my_euler, name="my_euler")
        not_a_solver = my_euler
    """))
    info = tmp_path / "my_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[solverzoo.solvers]\n" + entries)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "OMP_NUM_THREADS": "1"}


def cli(env: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "solverzoo", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.mark.slow  # two command-line runs, one a bench with its pathwise reference (~14 s on one core)
def test_entry_point_plugin_is_listed_and_benches_like_euler(tmp_path):
    env = make_plugin(tmp_path, "my_euler = my_plugin:MyEuler\n")
    listed = cli(env, "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    info = {row["name"]: row for row in json.loads(listed.stdout)}["my_euler"]
    assert info["family"] == "plugin" and info["calls_per_step"] == 1 and info["kind"] == "ode"
    out = tmp_path / "bench"
    run = cli(env, "bench", "--model", "gmm-2d", "--solvers", "my_euler,euler", "--nfe", "10", "--num-samples", "64",
              "--batch-size", "64", "--out", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = {row["solver"]: row for row in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["my_euler"]["status"] == rows["euler"]["status"] == "ok"
    assert rows["my_euler"]["nfe"] == rows["euler"]["nfe"] == 10
    for key in ("value", "uncertainty", "metrics", "steps"):  # metrics: fd, path_rms... (results schema 3)
        assert rows["my_euler"][key] == rows["euler"][key], key


def test_a_broken_plugin_is_named_not_a_traceback(tmp_path):
    env = make_plugin(tmp_path, "my_euler = my_plugin:MyEuler\nmissing = no_such_module:Thing\n"
                                "function = my_plugin:not_a_solver\nclash = my_plugin:Clash\n")
    result = cli(env, "list", "--json", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "skipped plugin 'missing' (no_such_module:Thing, from my-plugin) failed to import: ModuleNotFoundError" \
        in result.stderr
    assert ("plugin 'function' (my_plugin:not_a_solver, from my-plugin) is a function, not a solver class"
            in result.stderr)
    assert "plugin 'clash'" in result.stderr  # no attribute Clash: an import failure, named
    assert "my_euler" in {row["name"] for row in json.loads(result.stdout)}
