"""mode_tv: total variation between the samples' mixture-component frequencies and the weights."""

from __future__ import annotations

import math

import torch

import solverzoo
from solverzoo.metrics.modes import mode_tv
from solverzoo.metrics.pathwise import components


def test_mode_tv_is_the_total_variation_of_component_frequencies():
    model = solverzoo.get_model("gmm-2d")
    x = model.sample_data(0, range(400))
    k = components(model, x)
    freq = torch.bincount(k, minlength=len(model.weights)).double() / len(k)
    assert mode_tv(model, x) == 0.5 * float((freq - model.weights.double()).abs().sum())
    only_first = x[k == 0]
    assert math.isclose(mode_tv(model, only_first), 1 - float(model.weights[0]), rel_tol=1e-12)


def test_exact_samples_score_the_multinomial_noise_and_a_coarse_sampler_more():
    model = solverzoo.get_model("gmm-image", resolution=8)
    n, k = 500, len(model.weights)
    exact = mode_tv(model, model.sample_data(0, range(n)))
    assert exact < 2 * math.sqrt(k / (2 * math.pi * n))
    coarse = solverzoo.sample(model, "euler", nfe=5, num_samples=n).samples
    assert mode_tv(model, coarse) > 2 * exact


def test_every_scorer_reports_mode_tv_on_mixtures_only():
    model = solverzoo.get_model("gmm-2d")
    assert "mode_tv" in solverzoo.evaluate(model, model.sample_data(0, range(50)))["metrics"]
    gauss = solverzoo.get_model("gaussian")
    assert "mode_tv" not in solverzoo.evaluate(gauss, gauss.sample_data(0, range(50)))["metrics"]
