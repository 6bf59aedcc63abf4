"""The PDS and TDAS operators against their defining formulas, on inputs where every statistic has a
distinct known value.

PDS (Ma et al. 2022, ECCV, Eq. 9-10; fudan-zvg/PDS): freq = log(1 + mean |FFT2 x|^2), space = mean x^2,
filter = alpha / (stat / max(stat) + alpha - 1), M = F^-1 diag(f) F diag(s).
TDAS (Sec. 4.3, app. A.2): f = 1 inside radii[0], rates[j] beyond radii[j]; s = (m_hat + beta - 1) / beta
with m_hat = m^gamma / max(m^gamma); the noise M z has covariance M M^T.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import solverzoo
from solverzoo.preconditioners import Composed, FrequencyFilter, SpaceFilter
from solverzoo.preconditioners.base import dense_matrix
from solverzoo.preconditioners.build import FilterSpec, data_images
from solverzoo.preconditioners.pds import pds_filter, pds_preconditioner, pds_statistics
from solverzoo.preconditioners.tdas import (
    frequency_radius,
    tdas_frequency_filter,
    tdas_preconditioner,
    tdas_space_filter,
)

D64 = torch.float64


def cosine_images(n: int = 5) -> tuple[torch.Tensor, np.ndarray]:
    """Images 0.5 + a_i cos(2 pi u0 h / H) (channel 0) and a constant b_i (channel 1), 4 x 6 pixels:
    the power spectrum is known in closed form and differs between channels and frequencies."""
    h, w, u0 = 4, 6, 1
    a = np.linspace(0.1, 0.3, n)
    b = np.linspace(0.2, 0.9, n)
    rows = np.cos(2 * np.pi * u0 * np.arange(h) / h)[:, None] * np.ones((1, w))
    x = np.zeros((n, 2, h, w))
    x[:, 0] = 0.5 + a[:, None, None] * rows
    x[:, 1] = b[:, None, None]
    return torch.from_numpy(x), np.stack([a, b])


def test_pds_statistics_are_log1p_mean_power_and_mean_square():
    x, (a, b) = cosine_images()
    stats = pds_statistics(x)
    h, w = 4, 6
    freq = np.zeros((2, h, w))
    freq[0, 0, 0] = (0.5 * h * w) ** 2  # DC of channel 0
    freq[0, 1, 0] = freq[0, 3, 0] = np.mean((a * h * w / 2) ** 2)  # the cosine at u = +-1
    freq[1, 0, 0] = np.mean((b * h * w) ** 2)
    np.testing.assert_allclose(stats.freq.numpy(), np.log1p(freq), rtol=1e-12, atol=1e-12)
    rows = np.cos(2 * np.pi * np.arange(h) / h)[:, None] * np.ones((1, w))
    space = np.stack([np.mean((0.5 + a[:, None, None] * rows) ** 2, axis=0), np.full((h, w), np.mean(b**2))])
    np.testing.assert_allclose(stats.space.numpy(), space, rtol=1e-12)
    assert len({round(float(v), 9) for v in stats.freq.flatten()}) == 4  # four distinct known values


@pytest.mark.parametrize("alpha", [1.7, 5.0, 40.0])
def test_pds_filter_is_alpha_over_normalised_statistic_plus_alpha_minus_1(alpha):
    stat = torch.tensor([[[0.0, 0.5], [2.0, 4.0]]], dtype=D64)
    want = alpha / (stat / 4.0 + alpha - 1)
    torch.testing.assert_close(pds_filter(stat, alpha), want, rtol=1e-14, atol=0)


def pds_operator_by_hand(f: np.ndarray, s: np.ndarray, z: np.ndarray) -> np.ndarray:
    """M z = Re F^-1 (f * F (s * z)) with numpy's FFT."""
    return np.real(np.fft.ifft2(f * np.fft.fft2(s * z)))


def test_pds_operator_is_frequency_after_space_and_its_drift_is_m_m_transpose():
    x, _ = cosine_images()
    stats = pds_statistics(x)
    alpha = 3.0
    op = pds_preconditioner(stats.freq, stats.space, alpha)
    f = (alpha / (stats.freq / stats.freq.max() + alpha - 1)).numpy()
    s = (alpha / (stats.space / stats.space.max() + alpha - 1)).numpy()
    shape = (2, 4, 6)
    m, mm = dense_matrix(op, shape)
    n = int(np.prod(shape))
    cols = [pds_operator_by_hand(f, s, np.eye(n)[j].reshape(shape)).reshape(-1) for j in range(n)]
    by_hand = np.stack(cols, axis=1)
    np.testing.assert_allclose(m.numpy(), by_hand, atol=1e-12)
    np.testing.assert_allclose(mm.numpy(), by_hand @ by_hand.T, atol=1e-12)


def small_image_model():
    return solverzoo.get_model("gmm-image", resolution=8, num_components=3).to("cpu", D64)


def test_pds_filters_built_for_a_run_follow_their_own_statistic():
    """FilterSpec("pds") from the model's 200 data images: the frequency filter is pds_filter of the
    frequency statistic log(1 + mean |FFT2 x|^2), the space filter pds_filter of mean x^2 (computed here
    from the same images), whichever kinds are asked for."""
    model = small_image_model()
    data = data_images(model, "cpu", D64, "pds")
    freq = torch.log1p(torch.fft.fft2(data).abs().square().mean(0))
    space = data.square().mean(0)
    assert not torch.allclose(freq / freq.max(), space / space.max(), atol=0.1)  # distinct statistics
    alpha = 5.0
    want_f = alpha / (freq / freq.max() + alpha - 1)
    want_s = alpha / (space / space.max() + alpha - 1)
    both, _ = FilterSpec("pds", "pds", "freq+space", alpha=alpha).build(model, "cpu", D64)
    assert isinstance(both, Composed)
    torch.testing.assert_close(both.frequency.values, want_f, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(both.space.values, want_s, rtol=1e-10, atol=1e-12)
    only_f, _ = FilterSpec("pds", "pds", "freq", alpha=alpha).build(model, "cpu", D64)
    assert isinstance(only_f, FrequencyFilter)
    torch.testing.assert_close(only_f.values, want_f, rtol=1e-10, atol=1e-12)
    only_s, _ = FilterSpec("pds", "pds", "space", alpha=alpha).build(model, "cpu", D64)
    assert isinstance(only_s, SpaceFilter)
    torch.testing.assert_close(only_s.values, want_s, rtol=1e-10, atol=1e-12)


# --- TDAS -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("softness,gamma", [(5.0, 1.0), (2.5, 1.7)])
def test_tdas_space_filter_is_softened_normalised_mean_image(softness, gamma):
    m = torch.tensor([[[0.1, 0.4, 0.8], [0.2, 0.6, 0.3]]], dtype=D64)
    g = m**gamma
    want = (g / g.max() + softness - 1) / softness
    torch.testing.assert_close(tdas_space_filter(m, softness, gamma=gamma), want, rtol=1e-14, atol=0)


def test_tdas_frequency_filter_levels_follow_the_wrap_around_radius():
    h, w = 8, 6
    rho = frequency_radius(h, w)
    u = np.minimum(np.arange(h), h - np.arange(h)) / h
    v = np.minimum(np.arange(w), w - np.arange(w)) / w
    np.testing.assert_allclose(rho.numpy(), np.sqrt(u[:, None] ** 2 + v[None, :] ** 2), rtol=1e-14)
    radii, rates = (0.25, 0.375), (0.7, 0.3)  # both radii are radii of grid frequencies: a zone starts at rho = r
    f = tdas_frequency_filter((h, w), radii, rates, dtype=D64)[0].numpy()
    r = rho.numpy()
    assert (r == 0.25).any() and (r == 0.375).any()
    want = np.where(r < 0.25, 1.0, np.where(r < 0.375, 0.7, 0.3))
    np.testing.assert_array_equal(f, want)
    assert {1.0, 0.7, 0.3} == set(np.unique(f).tolist())


def tdas_mean_image() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(2, 4, 6, generator=gen, dtype=D64) * 0.8 + 0.1


def test_tdas_noise_covariance_is_diag_s_squared_for_the_space_filter():
    """The filtered noise M z with M = diag(s) has covariance diag(s^2), s = (m_hat + beta - 1) / beta."""
    m, beta = tdas_mean_image(), 2.0
    op = tdas_preconditioner((2, 4, 6), mean_image=m, softness=beta, dtype=D64)
    s = ((m / m.max() + beta - 1) / beta).reshape(-1)
    _, cov = dense_matrix(op, (2, 4, 6))
    torch.testing.assert_close(cov, torch.diag(s**2), rtol=1e-12, atol=1e-14)


def test_tdas_noise_covariance_is_m_m_transpose_with_frequency_after_space():
    m, beta = tdas_mean_image(), 3.0
    radii, rates = (0.25,), (0.4,)
    op = tdas_preconditioner((2, 4, 6), radii, rates, mean_image=m, softness=beta, dtype=D64)
    s = ((m / m.max() + beta - 1) / beta).numpy()
    f = tdas_frequency_filter((4, 6), radii, rates, dtype=D64).numpy()
    n = 48
    cols = [pds_operator_by_hand(f, s, np.eye(n)[j].reshape(2, 4, 6)).reshape(-1) for j in range(n)]
    by_hand = np.stack(cols, axis=1)
    mat, cov = dense_matrix(op, (2, 4, 6))
    np.testing.assert_allclose(mat.numpy(), by_hand, atol=1e-12)
    np.testing.assert_allclose(cov.numpy(), by_hand @ by_hand.T, atol=1e-12)


def test_tdas_filtered_noise_variance_monte_carlo():
    """Real draws M z: the per-pixel variance is s^2.  8000 draws per pixel: standard error 1.6%, tolerance
    7%; with beta = 2 the darkest pixel has s^2 near 0.3, where covariance diag(s^4) would be 70% lower."""
    m, beta = tdas_mean_image(), 2.0
    op = tdas_preconditioner((2, 4, 6), mean_image=m, softness=beta, dtype=D64)
    s2 = ((m / m.max() + beta - 1) / beta) ** 2
    assert float(s2.min()) < 0.35
    z = torch.randn(8000, 2, 4, 6, generator=torch.Generator().manual_seed(3), dtype=D64)
    var = op.noise(z).var(0)
    assert float((var / s2 - 1).abs().max()) < 0.07
    assert math.isclose(float(op.noise(z).mean()), 0.0, abs_tol=0.02)
