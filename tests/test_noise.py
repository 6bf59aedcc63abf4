"""Per-sample noise sources: the CPU-generator source and the device-side Philox-4x32-10 source.

Philox is checked against Random123's published known-answer vectors; its normals for batch
invariance, moments and independence across rows, streams and draws."""

from __future__ import annotations

import math

import pytest
import torch

import solverzoo
from solverzoo.models import GaussianModel
from solverzoo.noise import (
    INIT,
    PATH,
    NoiseSource,
    PhiloxNoiseSource,
    make_noise_source,
    philox4x32,
    philox_normal,
)
from solverzoo.solvers import get_solver, list_solvers

# Random123 1.14, tests/kat_vectors, the three "philox4x32 10" lines: counter (4 words), key (2 words),
# expected output (4 words)
PHILOX_KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_philox_known_answers(counter, key, expected):
    words = philox4x32([torch.tensor([c], dtype=torch.int64) for c in counter], key)
    assert [int(w[0]) for w in words] == list(expected)


def test_philox_vectorised_equals_one_block_at_a_time():
    """A batch of counters gives, block by block, what one counter at a time gives."""
    gen = torch.Generator().manual_seed(0)
    ctr = [torch.randint(0, 2**32, (64,), generator=gen, dtype=torch.int64) for _ in range(4)]
    key = (0x12345678, 0x9ABCDEF0)
    batch = philox4x32(ctr, key)
    for j in (0, 17, 63):
        one = philox4x32([c[j:j + 1] for c in ctr], key)
        assert [int(w[0]) for w in one] == [int(w[j]) for w in batch]
    assert all(int(w.min()) >= 0 and int(w.max()) < 2**32 for w in batch)


def test_philox_source_is_batch_invariant():
    full = PhiloxNoiseSource(3, range(10), PATH)
    a = [full.randn((2, 5, 5)) for _ in range(3)]
    parts = [PhiloxNoiseSource(3, idx, PATH) for idx in (range(0, 4), range(4, 7), range(7, 10))]
    b = [torch.cat([p.randn((2, 5, 5)) for p in parts]) for _ in range(3)]
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    # a single sample alone, in another order of draws of its neighbours
    solo = PhiloxNoiseSource(3, [6], PATH)
    assert torch.equal(solo.randn((2, 5, 5))[0], a[0][6])
    assert full.draws == 3


def test_philox_float64_matches_float32_to_rounding():
    idx = torch.arange(4)
    z32 = philox_normal(1, idx, PATH, 0, 1000, torch.float32)
    z64 = philox_normal(1, idx, PATH, 0, 1000, torch.float64)
    assert z64.dtype == torch.float64
    assert torch.allclose(z32.double(), z64, atol=1e-4)


def test_philox_moments():
    """Mean, variance, skewness and kurtosis of 2^20 draws: within 5 standard errors of N(0, 1)."""
    z = PhiloxNoiseSource(0, range(256), INIT, dtype=torch.float64).randn((4096,)).reshape(-1)
    n = z.numel()
    mean, var = float(z.mean()), float(z.var())
    skew = float(((z - mean) ** 3).mean()) / var**1.5
    kurt = float(((z - mean) ** 4).mean()) / var**2
    assert abs(mean) < 5 / math.sqrt(n)
    assert abs(var - 1) < 5 * math.sqrt(2 / n)
    assert abs(skew) < 5 * math.sqrt(6 / n)
    assert abs(kurt - 3) < 5 * math.sqrt(24 / n)
    # the tails: P(|z| > 3) = 0.0027
    tail = float((z.abs() > 3).double().mean())
    assert abs(tail - 0.0026998) < 5 * math.sqrt(0.0027 / n)
    assert float(z.abs().max()) < math.sqrt(-2 * math.log(2.0**-32)) + 1e-9


def _max_abs_corr(rows: torch.Tensor) -> float:
    c = torch.corrcoef(rows)
    return float((c - torch.eye(len(c), dtype=c.dtype)).abs().max())


def test_philox_independence_across_rows_streams_draws():
    """Correlations between the draws of different samples, streams and draw numbers (and
    between neighbouring positions within a draw) are at the 1/sqrt(n) noise level."""
    n = 1 << 16
    bound = 5 / math.sqrt(n)
    src = PhiloxNoiseSource(11, range(16), PATH, dtype=torch.float64)
    d0, d1 = src.randn((n,)), src.randn((n,))
    other = PhiloxNoiseSource(11, range(16), INIT, dtype=torch.float64).randn((n,))
    reseeded = PhiloxNoiseSource(12, range(16), PATH, dtype=torch.float64).randn((n,))
    assert _max_abs_corr(d0) < bound  # across samples
    assert _max_abs_corr(torch.cat([d0[:4], d1[:4], other[:4], reseeded[:4]])) < bound
    for a, b in ((d0, d1), (d0, other), (d0, reseeded)):  # same sample, other draw / stream / seed
        assert float((a * b).mean(1).abs().max()) < bound
    lagged = (d0[:, 1:] * d0[:, :-1]).mean(1)  # neighbours within a row (Box-Muller pairs included)
    assert float(lagged.abs().max()) < bound
    # the radius words and angle words of one block are independent: pairs are not correlated in z^2
    sq = d0**2 - 1
    assert float((sq[:, 1:] * sq[:, :-1]).mean(1).abs().max()) < 5 * math.sqrt(2 / n) * math.sqrt(2)


def test_noise_sources_share_the_interface():
    for kind in ("cpu", "philox"):
        src = make_noise_source(kind, 0, [5, 2], PATH)
        z = src.randn_like(torch.zeros(2, 3, 4))
        assert z.shape == (2, 3, 4) and len(src) == 2 and src.draws == 1
        assert len(src.generators) == 2
        with pytest.raises(ValueError, match="batch of 3"):
            src.randn_like(torch.zeros(3, 3, 4))
    with pytest.raises(ValueError, match="cpu, philox"):
        make_noise_source("gpu", 0, [0], PATH)
    assert isinstance(make_noise_source("cpu", 0, [0], PATH), NoiseSource)


STOCHASTIC = [name for name in list_solvers()
              if get_solver(name).stochastic and not getattr(get_solver(name), "adaptive", False)]


def _model_for(name: str, options: dict):
    """The first Gaussian test model (elementwise denoiser: bit-identical at any batch) the solver accepts."""
    for proc, shape in (("edm", (8,)), ("edm", (1, 4, 4)), ("fdm-edm", (8,))):
        model = GaussianModel(shape, mean=0.1, var=0.5, process=proc)
        try:
            solverzoo.sample(model, name, steps=2, num_samples=1, noise="philox", **options)
        except ValueError:
            continue
        return model
    pytest.skip(f"{name} accepts none of the Gaussian test models")


@pytest.mark.parametrize("name", STOCHASTIC)
def test_sample_with_philox_noise_is_batch_invariant(name):
    """Every stochastic solver: with noise="philox" sample i is the same at any batch size and
    alone, and differs from the CPU-generator samples (another stream)."""
    try:  # pc-type correctors: per-sample step norms (the batch norm is the documented exception)
        options = {"corrector_norm": "sample"}
        get_solver(name, **options)
    except ValueError:
        options = {}
    model = _model_for(name, options)
    kw = dict(steps=3, seed=4, num_samples=6, noise="philox", **options)
    full = solverzoo.sample(model, name, **kw)
    assert full.noise == "philox" and full.describe()["noise"] == "philox"
    for bs in (1, 4):
        assert torch.equal(full.samples, solverzoo.sample(model, name, batch_size=bs, **kw).samples)
    alone = solverzoo.sample(model, name, **{**kw, "num_samples": 2}, start_index=3)
    assert torch.equal(full.samples[3:5], alone.samples)
    cpu = solverzoo.sample(model, name, **{**kw, "noise": "cpu"})
    assert cpu.noise == "cpu" and not torch.allclose(cpu.samples, full.samples)


def test_cpu_noise_is_the_default_and_unknown_sources_are_refused():
    model = GaussianModel((8,), mean=0.1, var=0.5, process="edm")
    kw = dict(steps=3, seed=4, num_samples=4)
    assert torch.equal(solverzoo.sample(model, "euler_ancestral", **kw).samples,
                       solverzoo.sample(model, "euler_ancestral", noise="cpu", batch_size=1, **kw).samples)
    with pytest.raises(ValueError, match="unknown noise source 'gpu'"):
        solverzoo.sample(model, "euler", noise="gpu", **kw)


def test_cli_noise_option_is_recorded(tmp_path):
    import json

    import numpy as np
    from click.testing import CliRunner

    from solverzoo.cli import main

    runner = CliRunner()
    out = tmp_path / "s"
    result = runner.invoke(main, ["sample", "--model", "gmm-image", "-m", "resolution=8", "--solver", "seeds1",
                                  "--nfe", "4", "--num-samples", "4", "--noise", "philox", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out / "samples.npz") as z:
        assert json.loads(str(z["meta"]))["noise"] == "philox"
    bench = tmp_path / "b"
    result = runner.invoke(main, ["bench", "--model", "gmm-image", "-m", "resolution=8", "--solvers", "seeds1",
                                  "--nfe", "4", "--num-samples", "20", "--noise", "philox", "--out", str(bench)])
    assert result.exit_code == 0, result.output
    results = json.loads((bench / "results.json").read_text())
    assert results["noise"] == "philox" and results["config"]["noise"] == "philox"
    result = runner.invoke(main, ["sample", "--solver", "euler", "--nfe", "4", "--noise", "gpu", "--out",
                                  str(tmp_path / "x")])
    assert result.exit_code == 2 and "cpu" in result.output and "philox" in result.output
    assert not (tmp_path / "x").exists()
