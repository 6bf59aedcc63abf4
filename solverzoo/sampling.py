"""``solverzoo.sample``: run one solver on one model with counted NFE and per-sample seeds.

The run's filters (PDS, TDAS, ``preconditioner="tdas"``) are built here, once per run, from the
solver's :meth:`~solverzoo.solvers.base.Solver.filter_spec`: the solver is handed finished
operators through its :class:`~solverzoo.solvers.base.Context` and keeps no state between runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from .grids import Grid
from .models.base import CountingDenoiser, Model
from .models.guidance import condition
from .noise import INIT, NOISE_KINDS, PATH, make_noise_source
from .preconditioners.build import FILTER_SEED
from .solvers.base import Context, Solver, get_solver

__all__ = ["SampleResult", "sample", "build_filters", "explicit_grid_steps", "resolve_device", "batches"]


@dataclass
class SampleResult:
    """Samples (on the CPU, in data units) and what it took to make them."""

    samples: Tensor
    solver: str
    nfe: int  # counted model calls per trajectory
    nfe_requested: int | None
    steps: int
    grid: Grid
    seconds: float
    options: dict = field(default_factory=dict)
    conditioning: dict | None = None  # labels and guidance weight (solverzoo.models.guidance), if any
    noise: str = "cpu"  # the noise source (solverzoo.noise.NOISE_KINDS)
    filters: object | None = None  # the operator the run used (PDS, TDAS), if any
    filters_estimate: dict | None = None  # TDAS appendix A.2: the radial filter estimated from a pilot run

    def describe(self) -> dict:
        return {
            "solver": self.solver,
            "nfe": self.nfe,
            "nfe_requested": self.nfe_requested,
            "steps": self.steps,
            "grid": self.grid.name,
            "final": self.grid.final,
            "options": self.options,
            "seconds": self.seconds,
            **({"conditioning": self.conditioning} if self.conditioning else {}),
            "noise": self.noise,
        }


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' -> cuda if available, else cpu; anything else must be a valid torch device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available; use --device cpu or auto")
    return dev


def batches(start: int, count: int, batch_size: int):
    """Consecutive index ranges [start, start + count) in chunks of batch_size."""
    for lo in range(start, start + count, batch_size):
        yield range(lo, min(lo + batch_size, start + count))


def explicit_grid_steps(solver: Solver, nfe: int | None, steps: int | None) -> int:
    """The step count of a solver built with an explicit grid (a list of sigmas): the grid's own.  An
    ``nfe`` or ``steps`` that asks for another count is an error (the grid is not resampled)."""
    grid_steps = len(solver.grid) - 1
    if steps is not None and int(steps) != grid_steps:
        raise ValueError(f"steps={steps} conflicts with the explicit grid of {len(solver.grid)} sigmas "
                         f"({grid_steps} steps); leave steps out or give {grid_steps}")
    if nfe is not None and not solver.adaptive and solver.steps_for_nfe(nfe) != grid_steps:
        raise ValueError(f"nfe={nfe} conflicts with the explicit grid of {len(solver.grid)} sigmas: {solver.info.name} "
                         f"takes {solver.nfe_for_steps(grid_steps)} model calls on its {grid_steps} steps; leave nfe "
                         f"out or give {solver.nfe_for_steps(grid_steps)}")
    return grid_steps


def build_filters(solver: Solver, model: Model, grid: Grid, device: torch.device, dtype: torch.dtype):
    """(operator, estimate) of the filters ``solver`` asks for on this run's ``grid`` (None, None
    without any).  TDAS's estimated radial filter comes from a pilot run of the solver without
    filters at the same grid (``spec.pilot_samples`` samples, their own seed)."""
    spec = solver.filter_spec()
    if spec is None:
        return None, None
    pilot = None
    if spec.needs_pilot:
        pilot = sample(model, spec.pilot, steps=grid.steps, num_samples=spec.pilot_samples, seed=FILTER_SEED,
                       batch_size=min(spec.pilot_samples, 100), device=device, dtype=dtype).samples
    return spec.build(model, device, dtype, pilot)


def sample(
    model: Model,
    solver: str | Solver,
    nfe: int | None = None,
    *,
    steps: int | None = None,
    num_samples: int = 16,
    seed: int = 0,
    batch_size: int | None = None,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype = torch.float32,
    start_index: int = 0,
    on_batch: Callable[[int], None] | None = None,
    guidance: float | None = None,
    labels=None,
    noise: str = "cpu",
    **solver_options,
) -> SampleResult:
    """Sample ``num_samples`` images with ``solver`` under an NFE budget (or a step count).

    ``guidance=w`` (and/or ``labels``: ``"0,1,2"`` cycled, ``"all"``, ``"random"``) samples a
    class-conditional model with classifier-free guidance ``D_u + w (D_c - D_u)``
    (solverzoo.models.guidance): labels follow the sample index; one guided call is one NFE.

    Sample ``i`` (``start_index <= i < start_index + num_samples``) draws its initial
    noise and its noise path from generators seeded by ``(seed, i)``: it is the same
    whatever ``batch_size``, device batching or order of runs, and the initial noise is
    shared by every solver.  The returned ``nfe`` is the counted number of model calls
    per trajectory; ``nfe_requested`` is the budget that was asked for.  ``noise``: ``"cpu"``
    (one CPU generator per sample, the default, which reproduces earlier results) or
    ``"philox"`` (counter-based, computed on ``device`` for the whole batch; see solverzoo.noise).
    """
    if noise not in NOISE_KINDS:
        raise ValueError(f"unknown noise source {noise!r}; choose one of {', '.join(NOISE_KINDS)}")
    solver = get_solver(solver, **solver_options)
    if isinstance(solver.grid, (list, tuple)):  # the grid sets the steps; a budget given must agree with it
        steps = explicit_grid_steps(solver, nfe, steps)
    elif nfe is None and steps is None and solver.fixed_steps is not None:
        steps = solver.fixed_steps
    elif (nfe is None) == (steps is None):
        raise ValueError("give exactly one of nfe (a budget of model calls) or steps")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    steps = solver.steps_for_nfe(nfe) if steps is None else int(steps)
    device = resolve_device(device)
    model = model.to(device, dtype)
    guided, conditioning = condition(model, guidance, labels, seed)
    solver.check_model(model)
    grid = solver.make_grid(model.process, steps)
    filters, estimate = build_filters(solver, model, grid, device, dtype)
    batch_size = num_samples if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    outputs, counted = [], set()
    start = time.perf_counter()
    for indices in batches(start_index, num_samples, batch_size):
        denoiser = CountingDenoiser(guided, None if conditioning is None else conditioning.labels_for(indices))
        path = make_noise_source(noise, seed, indices, PATH, device, dtype) if solver.stochastic else None
        ctx = Context(denoiser, grid, path, filters, drift="drift" in solver.info.preconditioning)
        z = make_noise_source(noise, seed, indices, INIT, device, dtype).randn(model.shape)
        with torch.no_grad():
            x = solver.run(ctx, solver.prior(ctx, z))
        outputs.append(x.detach().to("cpu"))
        counted.add(denoiser.nfe)
        if on_batch is not None:
            on_batch(len(indices))
    seconds = time.perf_counter() - start
    if len(counted) != 1:
        raise RuntimeError(f"solver {solver.info.name!r} made a different number of model calls per batch: {counted}")
    return SampleResult(
        samples=torch.cat(outputs),
        solver=solver.info.name,
        nfe=counted.pop(),
        nfe_requested=nfe,
        steps=grid.steps,
        grid=grid,
        seconds=seconds,
        conditioning=None if conditioning is None else conditioning.describe(),
        options=solver.options() if filters is None else {**solver.options(), "filters_used": filters.describe()},
        noise=noise,
        filters=filters,
        filters_estimate=estimate,
    )
