"""PDS with ``discretize="official"`` against the sampling loop of fudan-zvg/PDS, re-derived here.

The reference below is written from the official code (``sampling.py``: ``pc_sampler``,
``LangevinCorrector``, ``ReverseDiffusionPredictor``; ``sde_lib.py``: ``VESDE.discretize``,
``VPSDE.discretize``; ``run_lib.py``: N = int(N0 / speed_up), eps = 1e-5 speed_up on VE and
1e-3 speed_up on VP) in plain torch, with the masks formed as ``get_sampling_fn`` forms them and
applied with full complex FFTs, and the same Gaussian draws as solverzoo (sample i's streams).
"""

from __future__ import annotations

import math

import pytest
import torch

import solverzoo
from solverzoo.noise import INIT, PATH, NoiseSource
from solverzoo.preconditioners import save_filters

F64 = torch.float64
SNR, ALPHA = 0.16, 5.0


def statistics_file(model, path) -> tuple[torch.Tensor, torch.Tensor, str]:
    """PDS's mask_gen statistics of 200 model images in [0, 1] (log1p mean |FFT|^2, mean x^2), saved."""
    x = ((model.sample_data(123, range(200)) + 1) / 2).clamp(0, 1).to(F64)
    freq = torch.log1p(torch.fft.fft2(x).abs().square().mean(0))
    space = x.square().mean(0)
    return freq, space, save_filters(path, freq=freq, space=space, kind="statistic")


def official_masks(freq_stat, space_stat, alpha):
    """sampling.get_sampling_fn: mask /= max; mask = (mask + alpha - 1) / alpha; mask = 1 / mask."""
    freq = freq_stat / freq_stat.max()
    space = space_stat / space_stat.max()
    return 1 / ((freq + alpha - 1) / alpha), 1 / ((space + alpha - 1) / alpha)


def official_pds(model, kind, n0, speed_up, masks, seed, count):
    freq_mask, space_mask = masks
    dft2d = lambda v: torch.fft.fft(torch.fft.fft(v, dim=2), dim=3)  # noqa: E731
    idft2d = lambda v: torch.fft.ifft(torch.fft.ifft(v, dim=2), dim=3)  # noqa: E731
    precondition = lambda f: idft2d(freq_mask * dft2d(space_mask.pow(2) * idft2d(freq_mask * dft2d(f)))).real  # noqa: E731
    filtered_noise = lambda z: idft2d(dft2d(z * space_mask) * freq_mask).real  # noqa: E731

    n = int(n0 / speed_up)
    init = NoiseSource(seed, range(count), INIT, dtype=F64)
    path = NoiseSource(seed, range(count), PATH, dtype=F64)
    if kind == "ve":
        smin, smax = model.process.sigma_min, model.process.sigma_max
        eps = 1e-5 * speed_up
        discrete_sigmas = torch.exp(torch.linspace(math.log(smin), math.log(smax), n, dtype=F64))

        def score(x, t):  # VE continuous: the model at std = sigma(t)
            sigma = smin * (smax / smin) ** t
            return (model.denoise(x, torch.full((count,), sigma, dtype=F64)) - x) / sigma**2

        x = filtered_noise(init.randn(model.shape)) * smax
    else:
        b0, b1 = model.process.beta_min, model.process.beta_min + model.process.beta_d
        eps = 1e-3 * speed_up
        discrete_betas = torch.linspace(b0 / n, b1 / n, n, dtype=F64)
        alphas = 1.0 - discrete_betas

        def score(x, t):  # VP continuous: -eps / std with mean coefficient m and std sqrt(1 - m^2)
            m = math.exp(-0.25 * t**2 * (b1 - b0) - 0.5 * t * b0)
            std = math.sqrt(1 - m**2)
            x0 = model.denoise(x / m, torch.full((count,), std / m, dtype=F64))
            return -(x - m * x0) / std**2

        x = filtered_noise(init.randn(model.shape))
    times = torch.linspace(1.0, eps, n, dtype=F64).tolist()
    # the official times are float32 (torch.linspace's default dtype): the table index comes from them
    index = (torch.linspace(1.0, eps, n) * (n - 1)).long().tolist()
    for t, j in zip(times, index):
        # LangevinCorrector (n_steps = 1)
        alpha = 1.0 if kind == "ve" else float(alphas[j])
        grad = precondition(score(x, t))
        noise = filtered_noise(path.randn(model.shape))
        grad_norm = grad.reshape(count, -1).norm(dim=-1).mean()
        noise_norm = noise.reshape(count, -1).norm(dim=-1).mean()
        step = (SNR * noise_norm / grad_norm) ** 2 * 2 * alpha
        x = x + step * grad + torch.sqrt(step * 2) * noise
        # ReverseDiffusionPredictor: rev_f = f - G^2 score, M M^T on all of rev_f
        if kind == "ve":
            sigma = discrete_sigmas[j]
            adjacent = 0.0 if j == 0 else discrete_sigmas[j - 1]
            f, g = torch.zeros_like(x), torch.sqrt(sigma**2 - adjacent**2)
        else:
            beta = discrete_betas[j]
            f, g = torch.sqrt(1 - beta) * x - x, torch.sqrt(beta)
        rev_f = precondition(f - g**2 * score(x, t))
        z = filtered_noise(path.randn(model.shape))
        x_mean = x - rev_f
        x = x_mean + g * z
    return x_mean, n, times[-1]


CASES = [("ve", 2000, 200), ("ve", 2000, 30), ("vp", 1000, 30), ("vp", 1000, 7)]


@pytest.mark.parametrize("kind,n0,speed_up", CASES)
def test_pds_official_matches_the_official_loop(tmp_path, kind, n0, speed_up):
    model = solverzoo.get_model("gmm-image", process=kind, resolution=8, num_components=3)
    freq, space, path = statistics_file(model, tmp_path / "stats.npz")
    expected, steps, t_end = official_pds(model, kind, n0, speed_up, official_masks(freq, space, ALPHA), 5, 4)
    run = solverzoo.sample(model, "pds", num_samples=4, seed=5, dtype=F64, filters=path, alpha=ALPHA, snr=SNR,
                           speed_up=speed_up, base_steps=n0, discretize="official")
    assert run.steps == steps and run.nfe == 2 * steps
    assert run.grid.t[steps - 1].item() == pytest.approx(t_end, rel=1e-12)  # eps * speed_up
    scale = expected.abs().max()
    assert torch.allclose(run.samples, expected, rtol=0, atol=1e-9 * scale), float((run.samples - expected).abs().max())


@pytest.mark.parametrize("kind", ["ve", "vp"])
def test_official_discretisation_is_not_the_default(tmp_path, kind):
    """The switch changes the samples (G^2 from the table, eps * k), and the default does not match
    the official loop: the parity above is a property of the switch."""
    model = solverzoo.get_model("gmm-image", process=kind, resolution=8, num_components=3)
    freq, space, path = statistics_file(model, tmp_path / "stats.npz")
    n0 = 2000 if kind == "ve" else 1000
    speed_up = 200 if kind == "ve" else 30
    expected, _, _ = official_pds(model, kind, n0, speed_up, official_masks(freq, space, ALPHA), 5, 4)
    run = solverzoo.sample(model, "pds", num_samples=4, seed=5, dtype=F64, filters=path, alpha=ALPHA, snr=SNR,
                           speed_up=speed_up, base_steps=n0)
    relative = float((run.samples - expected).norm() / expected.norm())
    assert relative > 1e-4


def test_official_pc_with_identity_filters_is_pds_official_with_alpha_inf():
    model = solverzoo.get_model("gmm-image", process="vp", resolution=8, num_components=3)
    pc = solverzoo.sample(model, "pc", num_samples=3, seed=2, dtype=F64, speed_up=30, base_steps=1000,
                          discretize="official")
    pds = solverzoo.sample(model, "pds", num_samples=3, seed=2, dtype=F64, speed_up=30, base_steps=1000,
                           discretize="official", alpha=float("inf"))
    assert torch.equal(pc.samples, pds.samples)


def test_official_discretisation_needs_a_ve_or_vp_process():
    model = solverzoo.get_model("gmm-image", process="edm", resolution=8, num_components=3)
    with pytest.raises(ValueError, match="discretize='official'"):
        solverzoo.sample(model, "pc", nfe=10, num_samples=2, discretize="official")
    with pytest.raises(ValueError, match="discretize"):
        solverzoo.get_solver("pds", discretize="discrete")
    vp = solverzoo.get_model("gmm-image", process="vp", resolution=8, num_components=3)
    with pytest.raises(ValueError, match="beta_max / N < 1"):  # the official table: beta_j up to 20 / 10
        solverzoo.sample(vp, "pds", num_samples=2, speed_up=100, base_steps=1000, discretize="official")
    with pytest.raises(ValueError, match="final='zero'"):
        solverzoo.get_solver("pc", discretize="official", final="sigma_min")
