"""Test doubles for a run's noise source (``ctx.noise``): scripted, counting and impulse draws, and a
Context on an explicit grid.  Shared by the tests that read a solver's noise law exactly."""

from __future__ import annotations

import torch

from solverzoo.grids import from_sigmas
from solverzoo.models.base import CountingDenoiser
from solverzoo.solvers.base import Context


class Scripted:
    """A noise source that hands out given draws in order."""

    def __init__(self, draws):
        self.draws, self.i = list(draws), 0

    def randn_like(self, x):
        d = self.draws[self.i]
        self.i += 1
        return d


class Counter:
    """Counts the draws a run makes (and hands out zeros)."""

    def __init__(self):
        self.n = 0

    def randn_like(self, x):
        self.n += 1
        return torch.zeros_like(x)


class Impulse:
    """Draw j (1-based) is 1 on batch row j and 0 elsewhere: by linearity, row j of the output is
    the coefficient of draw j."""

    def __init__(self):
        self.j = 0

    def randn_like(self, x):
        self.j += 1
        z = torch.zeros_like(x)
        z[self.j] = 1
        return z


def ctx_for(model, sigmas, noise) -> Context:
    """The run context of ``model`` on the explicit grid ``sigmas`` with the noise source ``noise``."""
    return Context(CountingDenoiser(model), from_sigmas(model.process, sigmas), noise)
