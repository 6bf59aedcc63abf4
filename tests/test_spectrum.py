"""The radial power-spectrum metric against the analytic model's exact spectrum."""

import torch

import solverzoo
from solverzoo.metrics.spectrum import exact_radial_power, radial_power, spectral_scores


def test_exact_spectrum_matches_many_exact_samples():
    model = solverzoo.get_model("gmm-image", resolution=16, num_components=4)
    exact = exact_radial_power(model)
    empirical = radial_power(model.sample_data(0, range(4000)))
    filled = exact > 0
    torch.testing.assert_close(empirical[filled], exact[filled], rtol=0.06, atol=0)
    assert spectral_scores(model.sample_data(1, range(4000)), exact)["spectral_error"] < 0.03


def test_white_noise_shows_as_high_frequency_excess():
    model = solverzoo.get_model("gmm-image", resolution=32)
    exact = exact_radial_power(model)
    x = model.sample_data(0, range(200))
    clean = spectral_scores(x, exact)
    noisy = spectral_scores(x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)), exact)
    assert abs(clean["hf_ratio"] - 1) < 0.05
    assert noisy["hf_ratio"] > 1.5 and noisy["spectral_error"] > 3 * clean["spectral_error"]
    # the added power at high frequency is the noise variance per bin (unitary FFT): 3 channels * 0.01
    blurred = spectral_scores(torch.nn.functional.avg_pool2d(x, 2).repeat_interleave(2, -1).repeat_interleave(2, -2),
                              exact)
    assert blurred["hf_ratio"] < 0.5
