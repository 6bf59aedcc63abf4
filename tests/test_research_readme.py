"""The README's "Use in research code" recipes run as written (blocks marked ``<!-- recipe: NAME -->``),
with tiny stand-ins only where a recipe downloads a model."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

import solverzoo
from solverzoo.plugins import ENTRY_POINT_GROUP
from solverzoo.solvers import SOLVERS

README = Path(__file__).resolve().parents[1] / "README.md"
RECIPE = re.compile(r"<!-- recipe: (?P<name>[\w-]+) -->\s*```(?P<lang>\w+)\n(?P<code>.*?)```", re.DOTALL)


def recipes() -> dict[str, tuple[str, str]]:
    return {m["name"]: (m["lang"], m["code"]) for m in RECIPE.finditer(README.read_text())}


@pytest.fixture
def registry():
    before = dict(SOLVERS._entries)
    yield
    SOLVERS._entries.clear()
    SOLVERS._entries.update(before)


def test_the_section_has_its_four_recipes():
    found = recipes()
    assert list(found) == ["own-denoiser", "k-diffusion", "diffusers", "plugin", "plugin-entry-point"]
    text = README.read_text()
    assert text.index("## Use in research code") < text.index("<!-- recipe: own-denoiser -->")


def test_own_denoiser_k_diffusion_and_plugin_recipes_run(registry):
    found = recipes()
    namespace: dict = {}
    exec(found["own-denoiser"][1], namespace)  # noqa: S102  (the README's own code)
    assert namespace["x0"].shape == (16, 2) and namespace["x0"].dtype == torch.float64
    exec(found["k-diffusion"][1], namespace)  # noqa: S102
    assert torch.isfinite(namespace["x0"]).all()
    exec(found["plugin"][1], namespace)  # noqa: S102
    exec(found["plugin"][1], namespace)  # noqa: S102  (a notebook cell run twice)
    ours = solverzoo.solve(namespace["denoiser"], namespace["x"], namespace["sigmas"], "my_euler")
    euler = solverzoo.solve(namespace["denoiser"], namespace["x"], namespace["sigmas"], "euler")
    torch.testing.assert_close(ours, euler, rtol=0, atol=1e-12)
    toml = found["plugin-entry-point"][1]
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]' in toml and 'my_euler = "' in toml and ':MyEuler"' in toml


@pytest.mark.skipif(importlib.util.find_spec("solverzoo.diffusers") is None,
                    reason="solverzoo.diffusers (SolverzooScheduler) is not in this checkout")
def test_diffusers_recipe_runs(monkeypatch):
    diffusers = pytest.importorskip("diffusers")

    def tiny_pipeline(cls, name, **kwargs):  # stand-in for the download: a small random UNet
        torch.manual_seed(0)
        unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                                     block_out_channels=(8, 16), norm_num_groups=8,
                                     down_block_types=("DownBlock2D", "DownBlock2D"),
                                     up_block_types=("UpBlock2D", "UpBlock2D"))
        return cls(unet=unet, scheduler=diffusers.DDPMScheduler(num_train_timesteps=1000))

    monkeypatch.setattr(diffusers.DDPMPipeline, "from_pretrained", classmethod(tiny_pipeline))
    namespace: dict = {}
    exec(recipes()["diffusers"][1], namespace)  # noqa: S102
    assert len(namespace["images"]) == 1 and namespace["images"][0].size == (8, 8)
