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


# ------------------------------------------------------------------ image files and arrays (one loader)
def _png(path, array, mode=None):
    from PIL import Image

    Image.fromarray(array, mode=mode).save(path)


def test_image_folder_values_and_modes(tmp_path):
    """8-bit grey, 16-bit grey, palette and RGBA files all read as [0, 1] -> [-1, 1], the same values."""
    import numpy as np
    from PIL import Image

    from solverzoo.data import load_images, read_image

    grey = np.array([[0, 51], [204, 255]], dtype=np.uint8)
    _png(tmp_path / "a.png", grey)
    _png(tmp_path / "b.png", (grey.astype(np.uint16) * 257))  # the same values in 16 bits
    x = load_images(tmp_path)
    assert x.shape == (2, 1, 2, 2) and x.dtype == torch.float32
    expected = torch.tensor([[-1.0, -0.6], [0.6, 1.0]])
    assert torch.allclose(x[0, 0], expected, atol=1e-6) and torch.allclose(x[1, 0], expected, atol=1e-6)

    colour = tmp_path / "colour"
    colour.mkdir()
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    Image.fromarray(rgb).convert("P").save(colour / "p.png")  # palette: indices must not leak through
    Image.fromarray(np.dstack([rgb, np.full((2, 2), 7, np.uint8)])).save(colour / "q.png")  # alpha dropped
    y = load_images(colour)
    assert y.shape == (2, 3, 2, 2)
    assert torch.equal(y[0], y[1]) and y[0, :, 0, 0].tolist() == [1.0, -1.0, -1.0]
    assert read_image(colour / "q.png").shape == (2, 2, 3)


def test_unreadable_files_name_the_file(tmp_path):
    import numpy as np
    import pytest

    from solverzoo.data import load_dataset, load_images

    _png(tmp_path / "a.png", np.zeros((4, 4), dtype=np.uint8))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match=r"b\.png: cannot read the image"):
        load_images(tmp_path)
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"broken\.npz: cannot read the array"):
        load_dataset(bad)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"obj\.npy: cannot read the array"):
        load_images(tmp_path / "obj.npy")
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(ValueError, match="holds no array"):
        load_images(tmp_path / "empty.npz")


def test_array_ranges_and_keys(tmp_path):
    import numpy as np

    from solverzoo.data import load_images

    u8 = np.array([0, 255], dtype=np.uint8).reshape(2, 1, 1, 1)
    np.savez(tmp_path / "a.npz", other=np.zeros((1, 1, 1, 1)), images=u8)  # 'images' is preferred
    assert load_images(tmp_path / "a.npz").flatten().tolist() == [-1.0, 1.0]
    np.save(tmp_path / "unit.npy", np.array([0.0, 0.5, 1.0]).reshape(3, 1, 1, 1))
    assert load_images(tmp_path / "unit.npy").flatten().tolist() == [-1.0, 0.0, 1.0]
    hwc = np.zeros((2, 5, 5, 3), dtype=np.float32) - 0.5  # (N, H, W, C) in [-1, 1]
    np.save(tmp_path / "hwc.npy", hwc)
    x = load_images(tmp_path / "hwc.npy", num=1)
    assert x.shape == (1, 3, 5, 5) and torch.all(x == -0.5)
