"""The metric's documented constants, computed independently in the test: the MMD estimator with its
kernel bandwidth (solverzoo.metrics.mmd) and the pixel-FD oracle floor from N exact samples
(solverzoo.metrics.evaluate)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import torch

from solverzoo.metrics.evaluate import make_scorer
from solverzoo.metrics.mmd import MMD_SCALE, KernelReference, mmd2_unbiased
from solverzoo.models import get_model


def mmd2_by_hand(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Gretton et al. 2012, Eq. 3 (unbiased U-statistic) with k(a, b) = exp(-|a - b|^2 / s^2), s^2 the
    mean squared distance between distinct reference samples: (MMD^2_u, s^2)."""
    n, m = len(x), len(y)
    dyy = scipy.spatial.distance.cdist(y, y, "sqeuclidean")
    s2 = dyy.sum() / (m * (m - 1))
    kxx = np.exp(-scipy.spatial.distance.cdist(x, x, "sqeuclidean") / s2)
    kyy = np.exp(-dyy / s2)
    kxy = np.exp(-scipy.spatial.distance.cdist(x, y, "sqeuclidean") / s2)
    value = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
             - 2 * kxy.mean())
    return value, s2


def test_mmd_bandwidth_is_the_mean_squared_distance_of_the_reference_and_the_estimator_is_gretton_eq3():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(60, 5))
    x = rng.normal(size=(45, 5)) * 1.3 + 0.2
    value, s2 = mmd2_by_hand(x, y)
    ref = KernelReference(torch.from_numpy(y))
    assert ref.bandwidth2 == pytest.approx(s2, rel=1e-12)
    assert ref.bandwidth2 == pytest.approx(2 * 5 * 1.0, rel=0.15)  # E|a - b|^2 = 2 d for unit Gaussians
    got = mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y))
    assert got.value == pytest.approx(MMD_SCALE * value, rel=1e-10)
    # the bandwidth matters at these scales: half of it changes the value by far more than rounding
    half = np.exp(-scipy.spatial.distance.cdist(x, y, "sqeuclidean") / (s2 / 2)).mean()
    assert abs(half - np.exp(-scipy.spatial.distance.cdist(x, y, "sqeuclidean") / s2).mean()) > 0.05


def test_mmd_of_a_sample_against_itself_is_the_u_statistic_not_zero():
    """Unbiased: the diagonal k(x_i, x_i) = 1 is left out of the within-set sums, so a set scored against
    itself gets the by-hand U-statistic, which is negative (the biased V-statistic would be exactly 0)."""
    rng = np.random.default_rng(1)
    y = rng.normal(size=(30, 3))
    value, _ = mmd2_by_hand(y, y)
    assert mmd2_unbiased(torch.from_numpy(y), torch.from_numpy(y)).value == pytest.approx(MMD_SCALE * value, rel=1e-10)
    assert value < 0


def fd_by_hand(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    """|mu_hat - mu|^2 + tr(S + C - 2 (S^1/2 C S^1/2)^1/2), S the sample covariance (ddof = 1)."""
    mu = x.mean(0)
    s = np.cov(x, rowvar=False)
    root_s = scipy.linalg.sqrtm(s).real
    cross = scipy.linalg.sqrtm(root_s @ cov @ root_s).real
    return float(((mu - mean) ** 2).sum() + np.trace(s) + np.trace(cov) - 2 * np.trace(cross))


@pytest.mark.parametrize("resolution,repeat", [(4, 0), (4, 1), (8, 0)])
def test_pixel_fd_oracle_floor_is_the_fd_of_exactly_n_exact_samples(resolution, repeat):
    """evaluate's documented floor: the pixel FD of N exact samples (data seed range [r N, (r + 1) N)).
    Scoring those very samples gives excess 0; the floor equals the by-hand FD of N samples (sample covariance
    with 1/(N - 1)) and is not the FD of 2N samples (the bias falls like 1/N).  N = 60 against d = 48
    (covariance route) and d = 192 (N <= d: the Gram-matrix route of ExactReference.distance_samples)."""
    model = get_model("gmm-image", resolution=resolution, num_components=2)
    n = 60
    scorer = make_scorer(model, None, n, seed=0, repeat=repeat)
    assert scorer.fd_metric == "fd_pixels"
    exact = model.sample_data(0, range(repeat * n, (repeat + 1) * n)).to(torch.float64)
    mean = model.data_mean().to(torch.float64).reshape(-1).numpy()
    cov = model.data_cov().to(torch.float64).numpy()
    by_hand = fd_by_hand(exact.reshape(n, -1).numpy(), mean, cov)
    assert scorer.fd_floor == pytest.approx(by_hand, rel=1e-6)
    doubled = model.sample_data(0, range(repeat * n, (repeat + 2) * n)).to(torch.float64)
    assert fd_by_hand(doubled.reshape(2 * n, -1).numpy(), mean, cov) < 0.8 * by_hand
    scored = scorer.score(exact)
    assert scored["secondaries"]["fd_pixels_excess"] == pytest.approx(0.0, abs=1e-9 * by_hand)
