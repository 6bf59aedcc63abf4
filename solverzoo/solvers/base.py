"""The machinery every solver shares: metadata, the registry, NFE budgets, grids, noise
and preconditioning hooks.  A solver only writes :meth:`Solver.run`, whose lines are
its paper's update.

Frame: solvers work on ``x_hat = x / s(t)`` against ``sigma`` (Karras et al. 2022,
Sec. 4: the probability-flow ODE and the reverse SDE written in ``(x_hat, sigma)`` do
not depend on the process).  The process enters through the grid (its sigma range and
native schedule) and through solvers that discretise in the process's own time
(the score_sde family).  A run returns ``x_hat`` in data units.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

from ..grids import FINALS, Grid, from_sigmas, make_grid
from ..models.base import CountingDenoiser, Model
from ..noise import NoiseSource

__all__ = ["SolverInfo", "Solver", "Context", "SOLVERS", "register", "get_solver", "list_solvers", "solver_info"]


@dataclass(frozen=True)
class SolverInfo:
    """What a solver is, for ``solverzoo list`` and for the NFE budget.

    ``calls_per_step`` is model calls per step; ``nfe_offset`` is added once per run
    (EDM Heun skips its correction on the last step: NFE = 2 N - 1, offset -1).
    ``preconditioning``: which operators of a preconditioner the solver applies
    ("noise": M z on every Gaussian draw, TDAS; "drift": M M^T on the score, PDS).
    """

    name: str
    family: str
    kind: str  # "ode" or "sde"
    order: int
    calls_per_step: int
    paper: str
    grid: str | None = None  # None: the process's native grid
    final: str = "zero"
    nfe_offset: int = 0
    min_steps: int = 1
    preconditioning: frozenset[str] = frozenset()

    @property
    def min_nfe(self) -> int:
        return self.calls_per_step * self.min_steps + self.nfe_offset

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "kind": self.kind,
            "order": self.order,
            "calls_per_step": self.calls_per_step,
            "min_nfe": self.min_nfe,
            "grid": self.grid or "native",
            "final": self.final,
            "preconditioning": sorted(self.preconditioning),
            "paper": self.paper,
        }


class Context:
    """What a solver sees while it samples one batch."""

    def __init__(self, denoiser: CountingDenoiser, grid: Grid, noise: NoiseSource | None, preconditioner=None,
                 drift: bool = False):
        self.denoiser, self.grid, self.noise = denoiser, grid, noise
        self.process = denoiser.process
        self.preconditioner = preconditioner
        self.drift_preconditioner = preconditioner if drift else None
        # python floats: coefficients are computed once, with no device syncs in the loop
        self.sigma: list[float] = grid.sigma.tolist()
        self.s: list[float] = grid.s.tolist()

    def denoise(self, x_hat: Tensor, sigma: float) -> Tensor:
        return self.denoiser(x_hat, sigma)

    def randn_like(self, x: Tensor) -> Tensor:
        """Per-sample Gaussian noise, filtered by the preconditioner (M z) if any."""
        if self.noise is None:
            raise RuntimeError("this run has no noise source (an ODE solver asked for noise)")
        z = self.noise.randn_like(x)
        return self.preconditioner.noise(z) if self.preconditioner is not None else z

    def precondition_drift(self, v: Tensor) -> Tensor:
        """M M^T v for solvers that precondition their drift (PDS); v itself otherwise."""
        return self.drift_preconditioner.drift(v) if self.drift_preconditioner is not None else v


class Solver:
    """Base class.  Subclasses set ``info`` and write ``run(ctx, x) -> x``.

    Options common to all solvers: ``grid`` (a grid name or an explicit list of
    sigmas), ``final`` ("zero" or "sigma_min"), ``grid_options`` (e.g. rho, sigma_min).
    Solver-specific options are keyword arguments of the subclass ``__init__``.
    """

    info: ClassVar[SolverInfo]
    fixed_steps: int | None = None  # set by options that fix the step count (e.g. PDS speed_up)

    def __init__(self, grid: str | list[float] | None = None, final: str | None = None,
                 grid_options: dict[str, Any] | None = None, preconditioner=None):
        if final is not None and final not in FINALS:
            raise ValueError(f"unknown final step {final!r}; choose one of {', '.join(FINALS)}")
        self.grid_name = grid if grid is not None else self.info.grid
        self.final = final or self.info.final
        self.grid_options = dict(grid_options or {})
        if preconditioner is not None and not self.info.preconditioning:
            raise ValueError(
                f"solver {self.info.name!r} cannot use a preconditioner (it adds no noise and does not "
                f"precondition its drift); stochastic solvers accept TDAS noise filters, pds also drift filters"
            )
        if isinstance(preconditioner, str) and preconditioner != "tdas" and not os.path.exists(preconditioner):
            raise ValueError(f"preconditioner={preconditioner!r}: give 'tdas' (filters estimated for this solver), "
                             f"a filter file (.npz), or an operator")
        self.preconditioner = preconditioner

    # --- budgets ------------------------------------------------------------------------
    def steps_for_nfe(self, nfe: int) -> int:
        """The largest number of steps whose NFE fits the budget."""
        info = self.info
        if int(nfe) != nfe or nfe < info.min_nfe:
            raise ValueError(f"solver {info.name!r} needs an NFE budget of at least {info.min_nfe}, got {nfe}")
        return (int(nfe) - info.nfe_offset) // info.calls_per_step

    def nfe_for_steps(self, steps: int) -> int:
        return self.info.calls_per_step * steps + self.info.nfe_offset

    def grid_for(self, process) -> str:
        """The grid name this solver uses on ``process`` (its own default, or the process's native one)."""
        return "explicit" if isinstance(self.grid_name, (list, tuple)) else (self.grid_name or process.native_grid)

    def make_grid(self, process, steps: int, **defaults) -> Grid:
        """The run's grid; ``defaults`` are grid options a subclass sets unless the user did."""
        if isinstance(self.grid_name, (list, tuple)):
            grid = from_sigmas(process, self.grid_name)
        else:
            options = {**defaults, **self.grid_options}
            grid = make_grid(self.grid_for(process), process, steps, final=self.final, **options)
        if grid.steps < self.info.min_steps:
            raise ValueError(f"solver {self.info.name!r} needs at least {self.info.min_steps} steps, got {grid.steps}")
        return grid

    # --- hooks ----------------------------------------------------------------------------
    def check_model(self, model: Model) -> None:
        """Raise ValueError if this solver cannot sample ``model`` (cheap; no sampling)."""
        if self.preconditioner is not None:
            from .preconditioned import check_filters

            check_filters(self, self.preconditioner, model)

    def prepare(self, model: Model, device: torch.device, dtype: torch.dtype, grid: Grid | None = None) -> None:
        """Called once per run before sampling, with the run's grid (e.g. to build filters from
        the model's data, or from a pilot run at this grid)."""
        if isinstance(self.preconditioner, (str, os.PathLike)):
            from .preconditioned import noise_filters

            self.preconditioner = noise_filters(self, self.preconditioner, model, device, dtype, grid)
        if self.preconditioner is not None:
            self.preconditioner = self.preconditioner.to(device, dtype)
            if hasattr(self.preconditioner, "check_shape"):
                self.preconditioner.check_shape(tuple(model.shape))

    def prior(self, ctx: Context, z: Tensor) -> Tensor:
        """x_hat at the first node from standard normal z: sigma_0 * z (filtered for TDAS/PDS)."""
        if self.preconditioner is not None:
            z = self.preconditioner.noise(z)
        return ctx.sigma[0] * z

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def stochastic(self) -> bool:
        return self.info.kind == "sde"

    def options(self) -> dict:
        """The options this solver was built with (for results files)."""
        out = {"grid": self.grid_name if self.grid_name else "native", "final": self.final, **self.grid_options}
        for name in inspect.signature(type(self).__init__).parameters:
            if name not in ("self", "grid", "final", "grid_options", "preconditioner", "kwargs") and hasattr(self, name):
                value = getattr(self, name)
                if isinstance(value, float) and not math.isfinite(value):
                    out[name] = str(value)  # JSON has no inf
                elif isinstance(value, (int, float, str, bool, tuple)) or value is None:
                    out[name] = value
        if self.preconditioner is not None:
            out["preconditioner"] = self.preconditioner.describe()
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options()})"


SOLVERS: dict[str, type[Solver]] = {}


def register(cls: type[Solver]) -> type[Solver]:
    """Class decorator: add a solver to the registry under ``cls.info.name``."""
    name = cls.info.name
    if name in SOLVERS:
        raise ValueError(f"solver {name!r} registered twice")
    SOLVERS[name] = cls
    return cls


def list_solvers() -> list[str]:
    return sorted(SOLVERS)


def solver_info(name: str) -> SolverInfo:
    return _lookup(name).info


def _lookup(name: str) -> type[Solver]:
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; choose one of {', '.join(list_solvers())}") from None


def get_solver(name: str | Solver, **options) -> Solver:
    """Build a registered solver: ``get_solver("heun", s_churn=40)``."""
    if isinstance(name, Solver):
        if options:
            raise ValueError("options were given for an already-built solver")
        return name
    cls = _lookup(name)
    valid = option_names(cls)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for solver {name!r}; valid options: {', '.join(valid)}")
    return cls(**options)


def option_names(cls: type[Solver]) -> list[str]:
    """Keyword options a solver class accepts: its own and those it forwards to its bases."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names += [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
                  and p.name not in names]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names
