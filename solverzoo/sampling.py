"""``solverzoo.sample``: run one solver on one model with counted NFE and per-sample seeds.

The run's filters (PDS, TDAS, ``preconditioner="tdas"``) are built here, once per run, from the
solver's :meth:`~solverzoo.solvers.base.Solver.filter_spec`: the solver is handed finished
operators through its :class:`~solverzoo.solvers.base.Context` and keeps no state between runs.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .grids import Grid
from .models.base import CountingDenoiser, Model
from .models.guidance import condition
from .noise import AUTO, INIT, PATH, make_noise_source, resolve_noise
from .preconditioners.build import FILTER_SEED, FilterSpec
from .solvers.base import SOLVERS, Context, Solver, declared_options, get_solver

__all__ = ["SampleResult", "sample", "build_solver", "build_filters", "filter_arrays", "save_operator",
           "explicit_grid_steps", "resolve_device", "batches"]


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


def _check_option_value(solver: str, key: str, value, default) -> None:
    """An option value of the type its default has: true/false for a bool, an integer for an int, a
    number (not nan; whether infinity means something is the solver's own check) for a float."""
    where = f"option {solver}.{key}={value!r}"
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer (default {default})")
    elif isinstance(default, float):
        if isinstance(value, str):
            try:  # "inf" as a results file records it
                value = float(value)
            except ValueError:
                raise ValueError(f"{where}: expected a number (default {default})") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number (default {default})")
        if math.isnan(value):
            raise ValueError(f"{where}: expected a finite number, not nan (default {default})")


def build_solver(solver: str | Solver, options: dict | None = None) -> Solver:
    """The one place a solver is built from a name and an option dict: each value is checked against
    its declared option's default (:func:`solverzoo.solvers.base.declared_options`), unknown names are
    refused naming the valid ones, and the class's own checks run.  A built solver is returned as it is."""
    options = dict(options or {})
    if isinstance(solver, Solver):
        if options:
            raise ValueError("options were given for an already-built solver")
        return solver
    cls = SOLVERS.lookup(solver)
    declared = declared_options(cls)[0]
    for key, value in options.items():
        if key in declared:
            _check_option_value(solver, key, value, declared[key])
    try:
        return get_solver(solver, **options)
    except TypeError as err:
        raise ValueError(f"solver {solver!r}: bad option value ({err})") from None


def filter_arrays(operator) -> dict:
    """{"freq", "space", "basis"} of a built filter operator (a space filter, a frequency filter or both,
    composed); None for a part it does not have."""
    parts = [operator.space, operator.frequency] if hasattr(operator, "frequency") else [operator]
    found = {getattr(part, "kind", None): part for part in parts}
    freq, space = found.get("frequency"), found.get("space")
    return {"freq": None if freq is None else freq.values, "space": None if space is None else space.values,
            "basis": getattr(freq, "basis", "dft")}


def save_operator(path: str | os.PathLike, operator, **metadata) -> str:
    """Write a built filter operator as a filter file that ``filters=PATH`` reads back to the same
    operator (:func:`filter_arrays`); returns the path written."""
    from .preconditioners import save_filters

    arrays = filter_arrays(operator)
    if arrays["freq"] is None and arrays["space"] is None:
        raise ValueError(f"{path}: the filters {operator!r} have no array to save")
    return save_filters(path, freq=arrays["freq"], space=arrays["space"], kind="filter", basis=arrays["basis"],
                        **metadata)


def build_filters(solver: Solver | FilterSpec, model: Model, grid: Grid, device: torch.device, dtype: torch.dtype,
                  save: str | os.PathLike | None = None):
    """(operator, estimate) of the filters ``solver`` asks for on this run's ``grid`` (None, None
    without any): the only place PDS / TDAS filters are made (the data draw, the TDAS pilot, the
    A.2 estimate; :class:`~solverzoo.preconditioners.build.FilterSpec`, which may be given instead of
    the solver).  TDAS's estimated radial filter comes from a pilot run of the solver without
    filters at the same grid (``spec.pilot_samples`` samples, their own seed).  ``save``: also write
    the operator as a filter file (:func:`save_operator`), once it is built."""
    spec = solver if isinstance(solver, FilterSpec) else solver.filter_spec()
    if spec is None:
        return None, None
    pilot = None
    if spec.needs_pilot:
        pilot = sample(model, spec.pilot, steps=grid.steps, num_samples=spec.pilot_samples, seed=FILTER_SEED,
                       batch_size=min(spec.pilot_samples, 100), device=device, dtype=dtype).samples
    operator, estimate = spec.build(model, device, dtype, pilot)
    if save is not None:
        save_operator(save, operator, method=spec.method, solver=spec.solver, steps=grid.steps,
                      source=str(spec.data or spec.source) if isinstance(spec.source, (str, os.PathLike))
                      else "operator", **({"estimate": estimate} if estimate else {}))
    return operator, estimate


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
    noise: str = AUTO,
    built_filters: tuple | None = None,
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
    (one CPU generator per sample, which reproduces earlier results), ``"philox"`` (counter-based,
    computed on ``device`` for the whole batch; see solverzoo.noise) or ``"auto"`` (the default:
    ``"philox"`` on CUDA, ``"cpu"`` on every other device; the result's ``noise`` says which).
    ``built_filters``: the (operator, estimate) :func:`build_filters` made for this solver and grid
    (a caller that runs one grid many times builds them once); by default they are built here.
    """
    resolve_noise(noise, "cpu")  # an unknown source is named before any work
    solver = build_solver(solver, solver_options)
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
    noise = resolve_noise(noise, device)
    model = model.to(device, dtype)
    guided, conditioning = condition(model, guidance, labels, seed)
    solver.check_model(model)
    grid = solver.make_grid(model.process, steps)
    filters, estimate = build_filters(solver, model, grid, device, dtype) if built_filters is None else built_filters
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
