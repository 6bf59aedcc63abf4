"""Frechet distance, streaming feature statistics, exact feature moments, oracle floor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from solverzoo.metrics import (
    ExactReference,
    FeatureStats,
    clear_caches,
    exact_reference,
    feature_moments,
    frechet_distance,
    make_feature,
    metric_name,
    oracle_floor,
)
from solverzoo.metrics import fd as fd_module
from solverzoo.models import GMM2D, GMMImage

F64 = torch.float64


def random_spd(d, seed, rank=None):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, rank or d, dtype=F64, generator=g)
    return A @ A.T / (rank or d) + (0 if rank else 0.05) * torch.eye(d, dtype=F64)


def scipy_fd(mu1, c1, mu2, c2):
    mu1, c1, mu2, c2 = (np.asarray(t, dtype=np.float64) for t in (mu1, c1, mu2, c2))
    covmean = scipy.linalg.sqrtm(c1 @ c2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean).real)


# ---------------------------------------------------------------------------------
# frechet_distance / ExactReference
# ---------------------------------------------------------------------------------
def test_identical_moments_give_zero():
    c = random_spd(40, 0)
    mu = torch.randn(40, dtype=F64)
    assert abs(frechet_distance(mu, c, mu, c)) < 1e-9
    ref = ExactReference(mu, c)
    assert abs(ref.distance(mu, c)) < 1e-9


def test_diagonal_gaussians_closed_form():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(30, dtype=F64, generator=g) + 0.1, torch.rand(30, dtype=F64, generator=g) * 3
    m1, m2 = torch.randn(30, dtype=F64, generator=g), torch.randn(30, dtype=F64, generator=g)
    exact = float(((m1 - m2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    assert frechet_distance(m1, torch.diag(a), m2, torch.diag(b)) == pytest.approx(exact, rel=1e-10, abs=1e-10)
    # one-dimensional sanity: N(0, 1) vs N(1, 4): 1 + (1 - 2)^2 = 2
    assert frechet_distance([0.0], [[1.0]], [1.0], [[4.0]]) == pytest.approx(2.0, abs=1e-12)


@pytest.mark.parametrize("d,seed", [(5, 0), (20, 1), (64, 2)])
def test_matches_scipy_sqrtm(d, seed):
    c1, c2 = random_spd(d, seed), random_spd(d, seed + 100)
    m1, m2 = torch.randn(d, dtype=F64), torch.randn(d, dtype=F64)
    ours = frechet_distance(m1, c1, m2, c2)
    assert ours == pytest.approx(scipy_fd(m1, c1, m2, c2), rel=1e-7, abs=1e-8)
    assert ours == pytest.approx(frechet_distance(m2, c2, m1, c1), rel=1e-8)  # symmetric
    # one cached reference, many distances
    ref = ExactReference(m2, c2)
    for s in range(3):
        c = random_spd(d, 1000 + s)
        assert ref.distance(m1, c) == pytest.approx(scipy_fd(m1, c, m2, c2), rel=1e-7, abs=1e-8)


def test_singular_covariances_are_handled():
    c1 = random_spd(12, 3, rank=4)  # rank-deficient: tiny negative eigenvalues must be clipped
    c2 = random_spd(12, 4)
    mu = torch.zeros(12, dtype=F64)
    val = frechet_distance(mu, c1, mu, c2)
    assert math.isfinite(val) and val >= 0
    assert val == pytest.approx(scipy_fd(mu, c1, mu, c2), rel=1e-5, abs=1e-6)
    assert frechet_distance(mu, c1, mu, c1) < 1e-6
    with pytest.raises(ValueError):
        ExactReference(mu, c2).distance(torch.zeros(5), torch.eye(5))


# ---------------------------------------------------------------------------------
# streaming statistics
# ---------------------------------------------------------------------------------
def test_streaming_stats_match_numpy():
    g = torch.Generator().manual_seed(5)
    scale = torch.linspace(0.1, 2, 64, dtype=F64).reshape(8, 8)
    data = 10.0 + torch.randn(203, 3, 8, 8, generator=g, dtype=F64) * scale
    for feature in ("pixels", "pool:4", "pool:3"):
        stats = FeatureStats(feature)
        for lo, hi in [(0, 1), (1, 50), (50, 51), (51, 203)]:  # uneven batches, incl. size 1
            stats.update(data[lo:hi])
        f = make_feature(feature)(data).numpy()
        assert stats.count == 203
        assert np.allclose(stats.mean().numpy(), f.mean(0), atol=1e-12)
        assert np.allclose(stats.cov().numpy(), np.cov(f, rowvar=False), atol=1e-11)
    # float32 input accumulates in float64
    s32 = FeatureStats("pixels").update(data[:100].float())
    assert s32.cov().dtype == F64
    assert np.allclose(s32.cov().numpy(), np.cov(data[:100].float().double().reshape(100, -1).numpy(), rowvar=False),
                       atol=1e-9)


def test_feature_names_and_parsing():
    assert metric_name("pixels") == "fd_pixels"
    assert metric_name("pool:16") == "fd_pool16"
    with pytest.raises(ValueError):
        metric_name("inception")
    x = torch.randn(2, 3, 12, 12)
    assert make_feature("pool:4")(x).shape == (2, 48)
    assert torch.allclose(make_feature("pool:4")(x), torch.nn.functional.avg_pool2d(x.double(), 3).reshape(2, -1))


# ---------------------------------------------------------------------------------
# exact feature moments
# ---------------------------------------------------------------------------------
class _DenseOnly:
    """A model that only offers dense moments: exercises the generic fallback."""

    def __init__(self, model):
        self.shape, self._m = model.shape, model

    def data_mean(self):
        return self._m.data_mean()

    def data_cov(self):
        return self._m.data_cov()


@pytest.mark.parametrize("shape,k", [((3, 8, 8), 4), ((3, 9, 8), 3), ((1, 10, 12), 5)])
def test_pooled_moments_are_exact(shape, k):
    model = GMMImage(*shape, num_components=3, seed=2, dtype=F64)
    feature = f"pool:{k}"
    mean, cov = feature_moments(model, feature)
    # dense reference: P as an explicit matrix applied to the dense pixel moments
    d = int(np.prod(shape))
    P = make_feature(feature)(torch.eye(d, dtype=F64).reshape(d, *shape)).T  # (m, d)
    assert torch.allclose(mean, P @ model.data_mean(), atol=1e-12)
    assert torch.allclose(cov, P @ model.data_cov() @ P.T, atol=1e-12)
    m2, c2 = feature_moments(_DenseOnly(model), feature)
    assert torch.allclose(m2, mean, atol=1e-12) and torch.allclose(c2, cov, atol=1e-12)
    pm, pc = feature_moments(model, "pixels")
    assert torch.allclose(pc, model.data_cov())


@pytest.mark.parametrize("shape,k", [((3, 16, 16), 4), ((3, 16, 24), 8), ((1, 12, 12), 3)])
def test_stationary_pooled_covariance_shortcut(shape, k):
    model = GMMImage(*shape, num_components=2, seed=1)
    fast = fd_module._pooled_cov_stationary(model, shape, k)
    slow = fd_module._pooled_cov_general(model, shape, k)
    assert torch.allclose(fast, slow, atol=1e-13)


def test_pooled_moments_of_a_large_model_without_dense_covariance():
    model = GMMImage(3, 80, 64, num_components=4)  # d = 15360: no dense covariance
    with pytest.raises(ValueError, match="pool"):
        feature_moments(model, "pixels")
    mean, cov = feature_moments(model, "pool:8")
    assert mean.shape == (192,) and cov.shape == (192, 192)
    assert np.linalg.eigvalsh(cov.numpy()).min() > 0
    stats = FeatureStats("pool:8").update(model.sample_data(0, range(400)))
    # empirical pooled moments agree with the exact ones (loose: 400 samples)
    se = (cov.diag() / 400).sqrt()
    assert ((stats.mean() - mean) / se).abs().max() < 5
    assert (stats.cov().diag() / cov.diag()).sub(1).abs().mean() < 0.15


# ---------------------------------------------------------------------------------
# oracle floor
# ---------------------------------------------------------------------------------
def test_oracle_floor_small_cached_and_sensitive():
    clear_caches()
    model = GMMImage(3, 8, 8, num_components=4, seed=3)
    f_small = oracle_floor(model, "pixels", num_samples=600, seed=0, batch_size=300)
    f_big = oracle_floor(model, "pixels", num_samples=4800, seed=0, batch_size=1000)
    assert 0 < f_big < f_small
    assert 3 < f_small / f_big < 20  # the estimator's bias falls like 1/N
    # cached: same value, no recomputation
    n_cached = len(fd_module._FLOORS)
    assert oracle_floor(model, "pixels", num_samples=4800, seed=0) == f_big
    assert len(fd_module._FLOORS) == n_cached
    # the floor does not depend on the batch size (per-sample seeds)
    clear_caches()
    assert oracle_floor(model, "pixels", num_samples=600, seed=0, batch_size=77) == pytest.approx(f_small, rel=1e-9)
    # a wrong model (Gaussian part 50% too strong) scores far above the floor
    wrong = GMMImage(3, 8, 8, num_components=4, seed=3, pixel_std=0.25 * math.sqrt(1.5))
    stats = FeatureStats("pixels").update(wrong.sample_data(0, range(4800)))
    assert exact_reference(model, "pixels").distance_stats(stats) > 5 * f_big
    # pooled feature on the same model
    fp = oracle_floor(model, "pool:4", num_samples=1000, seed=1)
    assert 0 < fp < f_small


def test_fd_on_gmm2d():
    model = GMM2D(dtype=F64)
    mean, cov = feature_moments(model, "pixels")
    assert mean.shape == (2,) and cov.shape == (2, 2)
    floor = oracle_floor(model, "pixels", num_samples=4000, seed=0)
    assert 0 < floor < 5e-3
    with pytest.raises(ValueError):
        feature_moments(model, "pool:2")
