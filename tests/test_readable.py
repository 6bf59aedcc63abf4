"""The readable form of each preset (``solverzoo.solvers.readable``) is the registered solver: the same
samples, to rounding, on an image model (float64, default options, the preset's own grid)."""

from __future__ import annotations

import pytest
import torch

import solverzoo
from solverzoo.solvers import SOLVERS
from solverzoo.solvers.readable import READABLE


@pytest.fixture(scope="module")
def model():
    return solverzoo.get_model("gmm-image", resolution=8, num_components=3, process="edm").to("cpu", torch.float64)


def readable_solver(name: str):
    """The registered preset with its ``run`` replaced by the readable function."""

    class Readable(SOLVERS[name]):
        def run(self, ctx, x):
            return READABLE[name](ctx, x)

    return Readable()


@pytest.mark.parametrize("name", sorted(READABLE))
@pytest.mark.parametrize("nfe", [6, 15])
def test_readable_form_is_the_preset(model, name, nfe):
    run = dict(nfe=nfe, num_samples=3, seed=5, dtype=torch.float64)
    ours = solverzoo.sample(model, name, **run)
    readable = solverzoo.sample(model, readable_solver(name), **run)
    assert readable.nfe == ours.nfe
    assert torch.allclose(readable.samples, ours.samples, rtol=0, atol=1e-12), (
        (readable.samples - ours.samples).abs().max().item())


def test_every_readable_form_names_a_registered_preset():
    assert set(READABLE) <= set(SOLVERS.names())
