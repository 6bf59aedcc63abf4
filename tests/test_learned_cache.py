"""The disk cache of a learned model's fixed costs: reference statistics and oracle floors are computed
once per (data, feature, N, repeats, seed), read back exactly, and a damaged entry is recomputed."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import solverzoo.data
from solverzoo.bench import BenchConfig, plan
from solverzoo.metrics.caching import CACHE_ENV, cache_dir, cache_path, load_cached, store_cached
from solverzoo.metrics.fid import data_reference, reference_cache_key

DIGITS_MODEL = SimpleNamespace(name="stub", shape=(1, 8, 8), data="digits", default_feature="pool:4")
N = 64


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _no_data(*args, **kwargs):
    raise AssertionError("the reference data was loaded although the cache holds it")


def _entry(cache) -> list:
    return sorted((cache / "references").glob("*.npz"))


def _same(a, b) -> None:
    assert torch.equal(a.reference.mean, b.reference.mean)
    assert torch.equal(a.reference.cov, b.reference.cov)
    assert a.floors == b.floors and a.count == b.count and a.note == b.note


def _uncached(monkeypatch, **kw):
    with monkeypatch.context() as m:
        m.setenv(CACHE_ENV, "off")
        ref = data_reference(DIGITS_MODEL, None, N, **kw)
    assert ref.cache.startswith("the disk cache is off")
    return ref


def test_second_call_reads_the_cache_and_equals_the_uncached_values(cache, monkeypatch):
    stages = []
    first = data_reference(DIGITS_MODEL, None, N, repeats=2, progress=lambda *a: stages.append(a))
    assert first.cache == "stored" and len(_entry(cache)) == 1
    assert ("oracle floor splits", 32, 32) in stages and ("reference data digits", 1, 1) in stages
    monkeypatch.setattr(solverzoo.data, "load_dataset", _no_data)
    stages.clear()
    second = data_reference(DIGITS_MODEL, None, N, repeats=2, progress=lambda *a: stages.append(a))
    assert second.cache == "hit"
    assert stages == [("fd_pool4 reference (cached)", 1, 1)]
    _same(first, second)
    monkeypatch.undo()
    _same(_uncached(monkeypatch, repeats=2), second)


def test_the_key_separates_what_the_values_depend_on(cache):
    ext = data_reference(DIGITS_MODEL, None, N).extractor
    base = reference_cache_key("digits", "pool:4", ext, N, 1, 0)
    for other in (reference_cache_key("digits", "pool:4", ext, N + 1, 1, 0),
                  reference_cache_key("digits", "pool:4", ext, N, 2, 0),
                  reference_cache_key("digits", "pool:4", ext, N, 1, 1),
                  reference_cache_key("patches", "pool:4", ext, N, 1, 0),
                  reference_cache_key("digits", "pixels", ext, N, 1, 0)):
        assert cache_path("references", other) != cache_path("references", base)
    assert reference_cache_key("digits", "custom:m:f", ext, N, 1, 0) is None  # unidentifiable code: not cached


@pytest.mark.parametrize("damage", ["garbage", "truncated", "tampered", "other key"])
def test_a_damaged_entry_is_recomputed(cache, monkeypatch, damage):
    good = data_reference(DIGITS_MODEL, None, N)
    (path,) = _entry(cache)
    if damage == "garbage":
        path.write_bytes(b"not an npz at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        if damage == "tampered":
            arrays["mu"] = arrays["mu"] + 1e-9  # the stored checksum no longer matches
        else:
            arrays["_key"] = np.array("{}")
        np.savez(path, **arrays)
    again = data_reference(DIGITS_MODEL, None, N)
    assert again.cache == "stored"
    _same(good, again)
    monkeypatch.setattr(solverzoo.data, "load_dataset", _no_data)
    assert data_reference(DIGITS_MODEL, None, N).cache == "hit"  # the entry was rewritten whole


def test_cache_location_and_switch(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "solverzoo"
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_dir() is None and load_cached("references", {"a": 1}, ("x",)) is None
    assert "off" in store_cached("references", {"a": 1}, {"x": np.zeros(2)})
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv(CACHE_ENV, str(blocked))
    assert "cannot write" in store_cached("references", {"a": 1}, {"x": np.zeros(2)})


def test_the_bench_plan_reuses_the_cache(cache, monkeypatch):
    config = BenchConfig(model="digits-unet", solvers=["euler"], nfe=[4], num_samples=N, feature="pool:4")
    first = plan(config)
    monkeypatch.setattr(solverzoo.data, "load_dataset", _no_data)
    stages = []
    second = plan(config, progress=lambda *a: stages.append(a))
    assert stages == [("fd_pool4 reference (cached)", 1, 1)]
    assert first.scorers[0].oracle_floor == second.scorers[0].oracle_floor
    assert first.scorers[0].note == second.scorers[0].note


def test_weights_key_names_the_network_parameters():
    from solverzoo.metrics.caching import weights_key
    from solverzoo.models import get_model

    a, b = get_model("digits-unet"), get_model("digits-unet")
    assert weights_key(a) == weights_key(b) is not None
    with torch.no_grad():
        next(b.net.parameters()).view(-1)[0] += 1e-3
    assert weights_key(a) != weights_key(b)
    assert weights_key(SimpleNamespace(net=lambda x, s: x)) is None  # a plain function: nothing to key by


def test_the_pathwise_reference_is_solved_once(cache, monkeypatch):
    import solverzoo.bench.sweep as sweep

    p = plan(BenchConfig(model="gmm-2d", solvers=["euler"], nfe=[4], num_samples=20, batch_size=5))
    stages = []
    first = sweep.pathwise_reference(p, 10, lambda *a: stages.append(a))
    assert stages[-1] == ("pathwise reference (heun, 511 NFE)", 10, 10) and len(stages) == 2  # two batches
    (entry,) = sorted((cache / "paths").glob("*.npz"))
    with monkeypatch.context() as m:
        m.setattr(sweep, "sample", _no_data)
        stages.clear()
        second = sweep.pathwise_reference(p, 10, lambda *a: stages.append(a))
    assert stages == [("pathwise reference (heun, 511 NFE) (cached)", 10, 10)]
    assert torch.equal(first, second) and second.dtype == torch.float64
    with monkeypatch.context() as m:
        m.setenv(CACHE_ENV, "off")
        assert torch.equal(sweep.pathwise_reference(p, 10), first)  # the cached paths are the solved ones
    entry.write_bytes(entry.read_bytes()[:100])
    assert torch.equal(sweep.pathwise_reference(p, 10), first)  # a damaged entry: solved again
    other = plan(BenchConfig(model="gmm-2d", solvers=["euler"], nfe=[4], num_samples=20, batch_size=5, seed=1))
    assert not torch.equal(sweep.pathwise_reference(other, 10), first)  # another seed: another entry
    assert len(list((cache / "paths").glob("*.npz"))) == 2
