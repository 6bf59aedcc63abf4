"""The default noise source follows the device: ``auto`` is Philox on CUDA (the draws never leave the
device) and CPU generators on the CPU (recorded results reproduce).  The device checks skip on a
machine without CUDA."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import solverzoo
import solverzoo.noise as noise_module
from solverzoo.bench import BenchConfig, plan
from solverzoo.cli import main
from solverzoo.models.gaussian import GaussianModel
from solverzoo.noise import NOISE_CHOICES, default_noise, resolve_noise

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="device check: needs a CUDA device (none here)")
MODEL = GaussianModel((8,), mean=0.1, var=0.5, process="edm")
KW = dict(steps=3, seed=4, num_samples=4)


def test_auto_resolves_by_device():
    assert NOISE_CHOICES == ("auto", "cpu", "philox")
    assert default_noise("cpu") == "cpu" and default_noise("cuda:1") == "philox" and default_noise("mps") == "cpu"
    assert resolve_noise("auto", "cuda") == "philox" and resolve_noise(None, "cpu") == "cpu"
    assert resolve_noise("cpu", "cuda") == "cpu" and resolve_noise("philox", "cpu") == "philox"  # told otherwise
    with pytest.raises(ValueError, match="choose one of auto, cpu, philox"):
        resolve_noise("gpu", "cpu")


def test_the_cpu_default_is_still_the_cpu_generators():
    default = solverzoo.sample(MODEL, "euler_ancestral", **KW)
    assert default.noise == "cpu"
    assert torch.equal(default.samples, solverzoo.sample(MODEL, "euler_ancestral", noise="cpu", **KW).samples)
    assert not torch.equal(default.samples, solverzoo.sample(MODEL, "euler_ancestral", noise="philox", **KW).samples)


def test_the_bench_records_the_resolved_source_and_old_cpu_configs_are_unchanged():
    cpu = plan(BenchConfig(model="gmm-2d", solvers=["euler"], nfe=[4], num_samples=20))
    assert cpu.config.noise == "cpu" and "noise" not in cpu.record  # results written before "auto" resume
    told = plan(BenchConfig(model="gmm-2d", solvers=["euler"], nfe=[4], num_samples=20, noise="philox"))
    assert told.config.noise == "philox" and told.record["noise"] == "philox"


def test_cli_accepts_auto_and_names_the_choices(tmp_path):
    runner = CliRunner()
    out = tmp_path / "b"
    result = runner.invoke(main, ["bench", "--model", "gmm-2d", "--solvers", "euler_ancestral", "--nfe", "4",
                                  "--num-samples", "20", "--noise", "auto", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "results.json").read_text())["noise"] == "cpu"
    bad = runner.invoke(main, ["bench", "--model", "gmm-2d", "--noise", "gpu", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and all(k in bad.output for k in ("auto", "cpu", "philox"))


@CUDA
def test_on_cuda_the_default_noise_never_leaves_the_device(monkeypatch):
    noise_module._wrapping_multiply(torch.device("cuda"))  # the one-time arithmetic check, before watching
    made: list[torch.device] = []
    drawn: list[torch.device] = []
    real_generator, real_randn = torch.Generator, noise_module.PhiloxNoiseSource.randn

    def watch_generator(device="cpu"):
        made.append(torch.device(device))
        return real_generator(device=device)

    def watch_randn(self, shape):
        z = real_randn(self, shape)
        drawn.append(z.device)
        return z

    def no_host_source(*args, **kwargs):
        raise AssertionError("a CPU noise source was built on CUDA by default")

    monkeypatch.setattr(torch, "Generator", watch_generator)
    monkeypatch.setattr(noise_module.PhiloxNoiseSource, "randn", watch_randn)
    monkeypatch.setattr(noise_module.NoiseSource, "__init__", no_host_source)
    res = solverzoo.sample(MODEL, "euler_ancestral", device="cuda", **KW)
    assert res.noise == "philox"
    assert drawn and all(d.type == "cuda" for d in drawn)  # initial noise and every path draw
    assert not made, f"generators were created: {made}"
    p = plan(BenchConfig(model="gmm-2d", solvers=["euler_ancestral"], nfe=[4], num_samples=20, device="cuda"))
    assert p.config.noise == "philox" and p.record["noise"] == "philox"
