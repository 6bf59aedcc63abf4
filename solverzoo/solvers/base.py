"""The machinery every solver shares: what a solver is and its NFE budget as data (``SolverInfo``),
the options walker (declared once per class: ``__init__`` keywords, ``defaults``, ``pinned``),
the registry, grids, and the run's ``Context`` (noise and the finished filters that
``solverzoo.sampling`` builds).  A solver only writes :meth:`Solver.run`, whose lines are its
paper's update.

Frame: solvers work on ``x_hat = x / s(t)`` against ``sigma`` (Karras et al. 2022,
Sec. 4: the probability-flow ODE and the reverse SDE written in ``(x_hat, sigma)`` do
not depend on the process).  The process enters through the grid (its sigma range and
native schedule) and through solvers that discretise in the process's own time
(the score_sde family).  A run returns ``x_hat`` in data units.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ..grids import FINALS, Grid, from_sigmas, make_grid
from ..models.base import CountingDenoiser, Model
from ..noise import NoiseSource
from ..preconditioners.build import FilterSpec
from ..registry import Registry, check_options

__all__ = ["SolverInfo", "Solver", "Context", "SOLVERS", "register", "get_solver", "list_solvers", "solver_info",
           "OptionSpec", "option_specs", "declared_options", "resolve_options", "noise_switches"]


@dataclass(frozen=True)
class SolverInfo:
    """What a solver is (``solverzoo list``) and its NFE budget with the default options, as data.

    Budget: a step between two positive sigmas costs ``calls_per_step`` model calls, a step to
    sigma = 0 ``zero_step_calls`` (None: the same; 1 where that step is the denoise x = D:
    EDM Heun's NFE = 2N - 1); ``extra_calls`` are made once per run; a run has at least
    ``min_steps`` steps.  ``adaptive``: a step controller sets the cost (counted, not budgeted).
    ``preconditioning``: the operators of a preconditioner the solver applies ("noise": M z on
    every draw; "drift": M M^T on the score).  ``order``: the convergence order reached on the
    Gaussian's exact flow (tests/test_orders.py); ``order_note``: why it is below the formula's.
    Options that change a field are read by :meth:`Solver.info_changes` (``solver.info``).
    """

    name: str
    family: str
    kind: str  # "ode" or "sde"
    order: int
    calls_per_step: int
    paper: str
    grid: str | None = None  # None: the process's native grid
    final: str = "zero"
    zero_step_calls: int | None = None
    extra_calls: int = 0
    min_steps: int = 1
    adaptive: bool = False
    preconditioning: frozenset[str] = frozenset()
    order_note: str = ""  # when ``order`` (reached on the exact Gaussian flow) differs from the formula's: why
    in_default_bench: bool = True  # False: run by ``bench`` only when named (keeps the default sweep short)

    def nfe_for_steps(self, steps: int, final: str | None = None) -> int:
        """Model calls of a run of ``steps`` steps on a grid ending at ``final`` (default: this info's)."""
        if self.adaptive:
            raise ValueError(f"{self.name}'s NFE is set by its tolerances, not by a step count; run it and read "
                             f"the count")
        last = self.calls_per_step
        if (final or self.final) == "zero" and self.zero_step_calls is not None:
            last = self.zero_step_calls
        return self.calls_per_step * (steps - 1) + last + self.extra_calls

    def steps_for_nfe(self, nfe: int, final: str | None = None) -> int:
        """The largest number of steps (at least ``min_steps``) whose NFE fits the budget."""
        least = 1 if self.adaptive else self.nfe_for_steps(self.min_steps, final)
        if int(nfe) != nfe or nfe < least:
            differs = self.zero_step_calls not in (None, self.calls_per_step)
            on = f" with final={final or self.final!r}" if differs else ""
            raise ValueError(f"solver {self.name!r} needs an NFE budget of at least {least}{on}, got {nfe}")
        return self.min_steps + (int(nfe) - least) // self.calls_per_step

    @property
    def min_nfe(self) -> int:
        return 1 if self.adaptive else self.nfe_for_steps(self.min_steps)

    @property
    def nfe_offset(self) -> int:
        """NFE - calls_per_step x steps on this info's default final (EDM Heun: -1)."""
        return 0 if self.adaptive else self.nfe_for_steps(1) - self.calls_per_step

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
            "order_note": self.order_note,
            "in_default_bench": self.in_default_bench,
            "paper": self.paper,
        }


class Context:
    """What a solver sees while it samples one batch: the counted denoiser, the grid, the
    per-sample noise, and the finished filters of a preconditioner (built by ``sample``)."""

    def __init__(self, denoiser: CountingDenoiser, grid: Grid, noise: NoiseSource | None, preconditioner=None,
                 drift: bool = False):
        self.denoiser, self.grid, self.noise = denoiser, grid, noise
        self.process = denoiser.process
        self.preconditioner = preconditioner
        self.drift_preconditioner = preconditioner if drift else None
        # python floats: coefficients are computed once, with no device syncs in the loop
        self.sigma: list[float] = grid.sigma.tolist()
        self.s: list[float] = grid.s.tolist()
        #: what a solver reports about its run beyond the counted NFE (an adaptive controller's accepted
        #: and rejected steps); ``solverzoo.solve`` returns it as ``SolveInfo.record``
        self.record: dict[str, Any] = {}

    def denoise(self, x_hat: Tensor, sigma: float) -> Tensor:
        return self.denoiser(x_hat, sigma)

    def precondition_noise(self, z: Tensor) -> Tensor:
        """M z for a run with a preconditioner (TDAS, PDS); z itself otherwise."""
        return self.preconditioner.noise(z) if self.preconditioner is not None else z

    def randn_like(self, x: Tensor, sigma: float | None = None, sigma_next: float | None = None) -> Tensor:
        """Per-sample Gaussian noise, filtered by the preconditioner (M z) if any.  ``sigma > sigma_next``,
        when given, is the interval the draw stands for (the normalised Brownian increment over it, as
        k-diffusion's ``noise_sampler(sigma, sigma_next)``); the per-sample sources ignore it, a run with a
        k-diffusion noise sampler (``solverzoo.solve``) asks that sampler for it."""
        if self.noise is None:
            raise RuntimeError("this run has no noise source (an ODE solver asked for noise)")
        return self.precondition_noise(self.noise.randn_like(x))

    def precondition_drift(self, v: Tensor) -> Tensor:
        """M M^T v for solvers that precondition their drift (PDS); v itself otherwise."""
        return self.drift_preconditioner.drift(v) if self.drift_preconditioner is not None else v


# --- options: declared once, walked once ---------------------------------------------------------

_REQUIRED = inspect.Parameter.empty
_TYPE_NAMES = {"float": float, "int": int, "bool": bool, "str": str, "tuple": tuple, "list": list, "dict": dict}


@dataclass(frozen=True)
class OptionSpec:
    """One option of a solver class: its default (after the classes' ``defaults``;
    ``inspect.Parameter.empty`` if required), its annotation as written in the ``__init__`` that
    declares it ("" if none), and that class's name."""

    name: str
    default: Any
    annotation: str
    owner: str

    @property
    def types(self) -> tuple[type, ...]:
        """The types the annotation names (float, int, bool, str, tuple, list, dict; None left out),
        or the default's type when the annotation names none of them."""
        names = [part.strip().split("[")[0] for part in self.annotation.split("|")]
        found = tuple(_TYPE_NAMES[n] for n in names if n in _TYPE_NAMES)
        if found:
            return found
        return () if self.default is None or self.default is _REQUIRED else (type(self.default),)

    @property
    def optional(self) -> bool:
        """None is a valid value (annotated ``| None`` or defaulting to None)."""
        return self.default is None or "None" in self.annotation.replace(" ", "").split("|")


def option_specs(cls: type) -> tuple[dict[str, OptionSpec], dict[str, Any]]:
    """(options, pinned) of a solver class: every keyword parameter of every ``__init__`` along
    the MRO as an :class:`OptionSpec` (a class's ``defaults`` override its default), less the
    names some class pins (``pinned``: fixed values, not options).  The one options walker:
    validation, :meth:`Solver.options` and the results file read it."""
    specs: dict[str, OptionSpec] = {}
    pinned: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):  # bases first: a subclass overrides
        if "__init__" in vars(klass) and klass is not object:
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                    annotation = p.annotation if isinstance(p.annotation, str) else (
                        "" if p.annotation is _REQUIRED else inspect.formatannotation(p.annotation))
                    specs[p.name] = OptionSpec(p.name, p.default, annotation, klass.__name__)
        for name, value in vars(klass).get("defaults", {}).items():
            specs[name] = (dataclasses.replace(specs[name], default=value) if name in specs
                           else OptionSpec(name, value, "", klass.__name__))
        pinned.update(vars(klass).get("pinned", {}))
    return {k: v for k, v in specs.items() if k not in pinned}, pinned


def declared_options(cls: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options, pinned) of a solver class as {name: default} (:func:`option_specs`)."""
    specs, pinned = option_specs(cls)
    return {k: spec.default for k, spec in specs.items()}, pinned


def noise_switches(cls: type) -> dict[str, Any]:
    """{option: the value at which it adds no noise} of a solver class, merged along the MRO
    (``noise_off``); pinned options keep their entry (their fixed value then decides)."""
    switches: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        switches.update(vars(klass).get("noise_off", {}))
    return switches


def resolve_options(cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments that build ``cls``: ``given`` checked against the declared options,
    with the class's ``defaults`` and ``pinned`` values filled in."""
    options, pinned = declared_options(cls)
    name = cls.info.name if hasattr(cls, "info") else cls.__name__
    fixed = [f"{k}={pinned[k]!r}" for k in sorted(set(given) & set(pinned))]
    check_options("solver", name, given, options, note=f" ({name} fixes {', '.join(fixed)})" if fixed else "")
    defaults: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        defaults.update(vars(klass).get("defaults", {}))
    given = {k: _from_record(v, options[k]) for k, v in given.items()}
    return {**{k: v for k, v in defaults.items() if k in options}, **given, **pinned}


def _from_record(value: Any, default: Any) -> Any:
    """A value read back from a results file: "inf" for a float option, a list for a tuple one."""
    if isinstance(default, float) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def _as_record(value: Any) -> Any:
    """An option value as the results file (JSON) writes it."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_as_record(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_record(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "describe"):
        return value.describe()  # an operator passed as an option
    return repr(value)


class _SolverType(type):
    """``Cls(**options)`` builds a solver from resolved options (:func:`resolve_options`): unknown
    or pinned names are refused naming the valid ones, the class's ``defaults`` and ``pinned``
    values reach the ``__init__`` that takes them.  ``inspect.signature(Cls)`` (and ``help(Cls)``)
    show those options, keyword-only, with their defaults (:func:`declared_options`)."""

    def __call__(cls, *args, **options):
        if args:
            raise TypeError(f"{cls.__name__} takes keyword options only")
        grid = options.get("grid")
        if grid is not None and not isinstance(grid, (str, list, tuple)) and hasattr(grid, "tolist"):
            options["grid"] = [float(v) for v in grid.tolist()]  # a tensor or array of sigmas: the explicit grid
        return super().__call__(**resolve_options(cls, options))

    @property
    def __signature__(cls) -> inspect.Signature:
        options, _ = declared_options(cls)
        common = declared_options(Solver)[0] if cls is not Solver else {}
        order = [k for k in options if k not in common] + [k for k in options if k in common]  # its own first
        return inspect.Signature([inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=options[name])
                                  for name in order])


class _DeclaredInfo:
    """``Cls.info`` is the declared :class:`SolverInfo`; ``solver.info`` is the same with the fields
    this solver's options change (:meth:`Solver.info_changes`), computed on each access."""

    def __init__(self, declared: SolverInfo):
        self.declared = declared

    def __get__(self, solver: Solver | None, owner: type) -> SolverInfo:
        if solver is None:
            return self.declared
        changes = solver.info_changes()
        return dataclasses.replace(self.declared, **changes) if changes else self.declared


class Solver(metaclass=_SolverType):
    """Base class.  Subclasses set ``info`` and write ``run(ctx, x) -> x``.

    Options common to all solvers: ``grid`` (a grid name, "native", or an explicit list of
    sigmas), ``final`` ("zero" or "sigma_min"), ``grid_options`` (e.g. rho, sigma_min) and
    ``preconditioner`` (noise filters: "tdas", a filter file, or an operator).
    Solver-specific options are keyword parameters of a class's ``__init__``, stored as
    attributes of the same name.  A class changes an inherited default in ``defaults`` and
    fixes an inherited option in ``pinned`` (then it is not an option of that class).
    Options that change the budget or the order are read by :meth:`info_changes`; options that
    add noise are declared in ``noise_off`` (:attr:`stochastic`).
    """

    info: ClassVar[SolverInfo]
    defaults: ClassVar[dict[str, Any]] = {}
    pinned: ClassVar[dict[str, Any]] = {}
    noise_off: ClassVar[dict[str, Any]] = {}  # {option: its value when it adds no noise}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if isinstance(vars(cls).get("info"), SolverInfo):
            cls.info = _DeclaredInfo(vars(cls)["info"])

    def __init__(self, grid: str | list[float] | None = None, final: str | None = None,
                 grid_options: dict[str, Any] | None = None, preconditioner=None):
        info = type(self).info
        if final is not None and final not in FINALS:
            raise ValueError(f"unknown final step {final!r}; choose one of {', '.join(FINALS)}")
        self.grid = None if grid == "native" else (info.grid if grid is None else grid)
        self.final = final or info.final
        self.grid_options = dict(grid_options or {})
        if preconditioner is not None and not info.preconditioning:
            raise ValueError(
                f"solver {info.name!r} cannot use a preconditioner (it adds no noise and does not "
                f"precondition its drift); stochastic solvers accept TDAS noise filters, pds also drift filters"
            )
        if isinstance(preconditioner, str) and preconditioner != "tdas" and not os.path.exists(preconditioner):
            raise ValueError(f"preconditioner={preconditioner!r}: give 'tdas' (filters estimated for this solver), "
                             f"a filter file (.npz), or an operator")
        self.preconditioner = preconditioner

    @property
    def name(self) -> str:
        """The registered name (``info.name``)."""
        return type(self).info.name

    # --- budgets: the data in ``info`` --------------------------------------------------------
    def info_changes(self) -> dict[str, Any]:
        """The ``SolverInfo`` fields (budget, order) whose values this solver's options change;
        ``solver.info`` is the declared info with these replaced.  None by default."""
        return {}

    @property
    def final_step(self) -> str:
        """How this solver's grids end: "zero" or "sigma_min" (an explicit grid says by its last sigma)."""
        if isinstance(self.grid, (list, tuple)):
            return "zero" if self.grid[-1] == 0 else "sigma_min"
        return self.final

    @property
    def fixed_steps(self) -> int | None:
        """The step count some options fix (an adaptive solver's grid, PDS's ``speed_up``); None otherwise."""
        return None

    def steps_for_nfe(self, nfe: int) -> int:
        """The largest number of steps whose NFE fits the budget (an adaptive solver: its fixed grid)."""
        steps = self.info.steps_for_nfe(nfe, self.final_step)
        return self.fixed_steps if self.info.adaptive else steps

    def nfe_for_steps(self, steps: int) -> int:
        return self.info.nfe_for_steps(steps, self.final_step)

    @property
    def adaptive(self) -> bool:
        return self.info.adaptive

    # --- grids ------------------------------------------------------------------------------------
    def grid_for(self, process) -> str:
        """The grid name this solver uses on ``process`` (its own default, or the process's native one)."""
        return "explicit" if isinstance(self.grid, (list, tuple)) else (self.grid or process.native_grid)

    def make_grid(self, process, steps: int, **defaults) -> Grid:
        """The run's grid; ``defaults`` are grid options a subclass sets unless the user did."""
        if isinstance(self.grid, (list, tuple)):
            grid = from_sigmas(process, self.grid)
        else:
            options = {**defaults, **self.grid_options}
            grid = make_grid(self.grid_for(process), process, steps, final=self.final, **options)
        if grid.steps < self.info.min_steps:
            raise ValueError(f"solver {self.info.name!r} needs at least {self.info.min_steps} steps, got {grid.steps}")
        return grid

    # --- filters: declared here, built by ``sample`` ---------------------------------------------
    def filter_spec(self) -> FilterSpec | None:
        """What filters this run needs (built by ``solverzoo.sampling.build_filters``, which hands
        the run finished operators): from the ``preconditioner`` option, TDAS filters estimated
        for this solver from a pilot run without them."""
        if self.preconditioner is None:
            return None
        return FilterSpec(self.info.name, "tdas", self.preconditioner,
                          pilot=self.with_options(preconditioner=None))

    def check_model(self, model: Model) -> None:
        """Raise ValueError if this solver cannot sample ``model`` (cheap; no sampling)."""
        spec = self.filter_spec()
        if spec is not None:
            spec.check(model)

    def prior(self, ctx: Context, z: Tensor) -> Tensor:
        """x_hat at the first node from standard normal z: sigma_0 z (M z with a preconditioner)."""
        return ctx.sigma[0] * ctx.precondition_noise(z)

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def stochastic(self) -> bool:
        """Whether a run draws noise: some option of ``noise_off`` is away from its off value; a
        class that declares none is stochastic when its kind is "sde"."""
        switches = noise_switches(type(self))
        if not switches:
            return type(self).info.kind == "sde"
        return any(getattr(self, option) != off for option, off in switches.items())

    # --- options ------------------------------------------------------------------------------
    def option_values(self) -> dict[str, Any]:
        """Every option of this solver (:func:`declared_options`) with the value it was built with."""
        return {name: getattr(self, name) for name in declared_options(type(self))[0]}

    def with_options(self, **changes) -> Solver:
        """A new solver of this class with these options changed."""
        return type(self)(**{**self.option_values(), **changes})

    def options(self) -> dict:
        """Every option of this solver as the results file records it; ``get_solver(name, **options())``
        builds the same solver (options given as operators are recorded by their description)."""
        out = {name: _as_record(value) for name, value in self.option_values().items()}
        out["grid"] = out["grid"] or "native"
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options()})"


#: solver classes by ``info.name`` (filled by :func:`register` as the family modules are imported)
SOLVERS: Registry[type[Solver]] = Registry("solver")


def register(cls: type[Solver] | None = None, *, replace: bool = False) -> Any:
    """Add a solver class to the registry under ``cls.info.name`` (a class decorator, also as
    ``@register(replace=True)``).  Registering the same class again does nothing; another class
    under a registered name is refused unless ``replace=True`` (re-running a notebook cell that
    defines it).  A k-diffusion-style function becomes a class with ``solverzoo.from_k_diffusion``."""
    if cls is None:
        return lambda klass: register(klass, replace=replace)
    if not (isinstance(cls, type) and issubclass(cls, Solver)):
        hint = (" (a k-diffusion-style sampler function: wrap it with solverzoo.from_k_diffusion(fn, name=...))"
                if callable(cls) else "")
        raise TypeError(f"register() takes a Solver subclass, got {cls!r}{hint}")
    info = getattr(cls, "info", None)
    if not isinstance(info, SolverInfo):
        raise TypeError(f"solver class {cls.__name__} needs an `info = SolverInfo(name=..., ...)` class attribute")
    if SOLVERS.get(info.name) is cls:
        return cls
    SOLVERS.register(info.name, cls, replace=replace)
    return cls


def list_solvers() -> list[str]:
    return SOLVERS.names()


def solver_info(name: str) -> SolverInfo:
    return _lookup(name).info


def _lookup(name: str) -> type[Solver]:
    return SOLVERS.lookup(name)


def get_solver(name: str | Solver, **options) -> Solver:
    """Build a registered solver: ``get_solver("heun", s_churn=40)``."""
    if isinstance(name, Solver):
        if options:
            raise ValueError("options were given for an already-built solver")
        return name
    return _lookup(name)(**options)

