"""The shipped datasets: deterministic, in range, cut from photographs inside installed wheels."""

import torch

from solverzoo.data import PATCH_SCALES, load_dataset, load_patches, patch_sources


def test_patch_sources_are_photographs_inside_the_wheels():
    sources = patch_sources()
    names = [name for name, _ in sources]
    assert {"china.jpg", "flower.jpg"} <= set(names)  # scikit-learn's sample images
    assert "astronaut.png" in names  # scikit-image's data folder
    for _, image in sources:
        assert image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= max(PATCH_SCALES)


def test_patches_are_deterministic_and_in_range():
    a = load_patches(64, seed=3)
    b = load_patches(64, seed=3)
    c = load_patches(64, seed=4)
    assert a.shape == (64, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(load_dataset("patches", num=8), load_patches(8))


def test_patches_have_a_falling_power_spectrum():
    """Several crop scales: power falls with frequency (natural images, roughly 1/f^2)."""
    x = load_patches(256)
    power = torch.fft.rfft2(x - x.mean(dim=(2, 3), keepdim=True)).abs().pow(2).mean(dim=(0, 1))
    low, high = power[1:3, 1:3].mean(), power[12:16, 12:16].mean()
    assert low > 30 * high
