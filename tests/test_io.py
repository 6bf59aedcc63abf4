"""solverzoo.io: atomic writes (a failed write leaves the old file and no temp file), PNG and grids."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from solverzoo.io import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    image_grid,
    save_image_grid,
    save_npz,
    save_png,
)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"a": 1})

    def broken(tmp):
        tmp.write_text("{half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_strict_json_refuses_nan_before_writing(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(ValueError):
        atomic_write_json(path, {"x": float("nan")}, allow_nan=False)
    assert not path.exists()
    atomic_write_json(path, {"x": [1.5, None]})
    assert path.read_text() == '{\n "x": [\n  1.5,\n  null\n ]\n}\n'


def test_save_npz_round_trip_and_suffix(tmp_path):
    x = torch.randn(3, 2, dtype=torch.float64)
    save_npz(tmp_path / "s.npz", samples=x, meta=np.array("m"))
    with np.load(tmp_path / "s.npz") as z:
        assert np.array_equal(z["samples"], x.numpy()) and str(z["meta"]) == "m"
    with pytest.raises(ValueError, match=".npz"):
        save_npz(tmp_path / "s.bin", a=np.zeros(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]


def test_save_png_values(tmp_path):
    img = np.array([[0.0, 0.5], [1.0, 2.0]])[..., None]  # values above 1 clip to white
    save_png(tmp_path / "g.png", img)
    back = np.asarray(Image.open(tmp_path / "g.png"))
    assert back.dtype == np.uint8 and back.tolist() == [[0, 128], [255, 255]]
    rgb = np.zeros((2, 3, 3))
    rgb[0, 0] = (1, 0, 0)
    save_png(tmp_path / "c.png", rgb)
    assert np.asarray(Image.open(tmp_path / "c.png")).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="shape"):
        save_png(tmp_path / "bad.png", np.zeros((2, 2, 2)))


def test_image_grid_layout():
    a = -np.ones((1, 2, 2))  # black 2x2
    b = np.ones((1, 2, 2))  # white
    grid = image_grid([a, None, b], rows=2, cols=2, minimum=4, gap=1)
    # each cell upscaled x2 to 4x4; 2 x 2 cells with 1-pixel gaps
    assert grid.shape == (2 * 5 + 1, 2 * 5 + 1, 1)
    assert np.all(grid[1:5, 1:5] == 0.0)  # the black image, top left
    assert np.all(grid[1:5, 6:10] == 1.0)  # blank cell
    assert np.all(grid[6:10, 1:5] == 1.0)  # the white image, bottom left
    with pytest.raises(ValueError, match="do not fit"):
        image_grid([a] * 5, rows=2, cols=2)


def test_save_image_grid_square(tmp_path):
    x = torch.linspace(-1, 1, 5 * 3 * 8 * 8).reshape(5, 3, 8, 8)
    save_image_grid(tmp_path / "grid.png", x)
    img = np.asarray(Image.open(tmp_path / "grid.png"))
    # 5 samples -> 3 columns, 2 rows; 8 px upscaled x8 to 64, 2-px gaps
    assert img.shape == (2 * 66 + 2, 3 * 66 + 2, 3)
