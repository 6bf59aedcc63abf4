"""Plan, then run: :func:`plan` turns a :class:`~solverzoo.bench.schema.BenchConfig` into a :class:`Plan`
after checking everything that can be checked, before any work.

A plan holds the model (built once), every solver object (built once, from its option dict, by
:func:`solverzoo.sampling.build_solver`), the step count of every NFE budget (computed once), the
filters each solver asks for (:class:`~solverzoo.preconditioners.build.FilterSpec`, checked, not yet
built: no pilot runs here), one scorer per repeat, and what an output folder already holds.  Nothing
is written.  :func:`solverzoo.bench.sweep.run_plan` runs it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..metrics.evaluate import PRIMARY_ANALYTIC, WHITENED, Scorer, make_scorer
from ..models.base import AnalyticModel, Model
from ..models.guidance import condition
from ..noise import NOISE_CHOICES, resolve_noise
from ..preconditioners.build import FilterSpec
from ..sampling import build_solver
from ..solvers import SOLVERS, Solver, list_solvers
from .distributed import world_info
from .outdir import check_free
from .report import load_previews, load_results
from .schema import SCHEMA_VERSION, BenchConfig
from .validate import build_model, check_device, check_nfes, check_out_path, check_seed, check_solver_run

__all__ = ["Plan", "SolverPlan", "plan", "default_solvers", "RESULT_FILES"]

#: The files a finished bench leaves in its folder (besides plots named nfe_vs_*.png).
RESULT_FILES = ("results.json", "results.csv", "previews.npz", "samples.png")


@dataclass
class SolverPlan:
    """One solver of a sweep: the built solver, its step count per NFE budget, whether it is an ODE
    solver (it gets the pathwise error) and the filters it asks for (None without)."""

    name: str
    solver: Solver
    steps: dict[int, int]
    ode: bool
    filters: FilterSpec | None = None


@dataclass
class Plan:
    """A checked sweep (see :func:`plan`)."""

    config: BenchConfig
    model: Model
    device: torch.device
    solvers: list[SolverPlan]
    scorers: list[Scorer]
    record: dict  # the config as results.json records it
    conditioning: dict | None = None
    out: Path | None = None
    resume: bool = False
    overwrite: bool = False
    previous: dict | None = None  # results.json already in ``out`` (resume)
    extra: dict = field(default_factory=dict)

    @property
    def cells(self) -> int:
        return len(self.solvers) * len(self.config.nfe) * self.config.repeats

    @property
    def needs_pilot(self) -> list[str]:
        """Solvers whose filters come from a pilot run (TDAS's A.2 estimate)."""
        return [s.name for s in self.solvers if s.filters is not None and s.filters.needs_pilot]


def default_solvers(model: Model) -> list[str]:
    """Every registered solver that accepts the model (``check_model``: fdm needs an FDM process,
    pds / tdas need known training data or filter files for a learned model) and is declared
    ``in_default_bench``, less the reference integrators, whose cost is set by tolerances rather
    than by the NFE budget.  The others run when named (``--solvers er_sde``, ``all``, a family)."""
    names = []
    for name in list_solvers():
        info = SOLVERS.lookup(name).info
        if info.family == "reference" or not info.in_default_bench:
            continue
        try:
            build_solver(name).check_model(model)
        except ValueError:
            continue
        names.append(name)
    return names


def _check_number(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_feature(model: Model, config: BenchConfig) -> str:
    """The feature the sweep scores in, checked (an Inception weights file and reference data are
    looked at now, not after the sampling)."""
    from ..metrics import metric_name

    if isinstance(model, AnalyticModel):
        feature = config.feature or WHITENED
        if feature not in (WHITENED, PRIMARY_ANALYTIC):
            metric_name(feature)
        if config.reference is not None or config.inception is not None:
            raise ValueError(f"--reference / --inception apply to learned models; {config.model!r} has exact moments")
        return feature
    from ..metrics.fid import feature_metric_name, resolve_inception

    if config.feature is not None and feature_metric_name(config.feature) == "fid_inception":
        resolve_inception(config.inception)
    return config.feature or getattr(model, "default_feature", None) or "pixels"


def record_of(config: BenchConfig, solvers: list[str]) -> dict:
    """The config as results.json records it (options left at their defaults are left out, so files
    written before an option existed resume as before)."""
    record = asdict(config) | {"solvers": solvers}
    for key in ("reference", "inception", "guidance", "labels"):
        if record.get(key) is None:
            record.pop(key)
    if record.get("noise") == "cpu":
        record.pop("noise")
    if not record.get("skip_inapplicable"):
        record.pop("skip_inapplicable", None)
    return json.loads(json.dumps(record, default=str))


def _previous(out: Path, record: dict) -> dict | None:
    """results.json in ``out`` for --resume: same schema, same configuration."""
    path = out / "results.json"
    if not path.exists():
        return None
    previous = load_results(path)
    if previous.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path} has results schema {previous.get('schema_version', 1)}, this version writes "
                         f"{SCHEMA_VERSION}; start again with --overwrite")
    if previous.get("config") != record:
        old = previous.get("config") if isinstance(previous.get("config"), dict) else {}
        diff = sorted(k for k in set(record) | set(old) if old.get(k) != record.get(k))
        raise ValueError(f"{path} was made with a different configuration (differs in: {', '.join(diff)}); "
                         f"resume with the same options, or use --overwrite")
    load_previews(out)  # a truncated previews.npz is named now, not after the work
    return previous


def plan(config: BenchConfig, out: str | Path | None = None, *, resume: bool = False, overwrite: bool = False,
         model: Model | None = None, progress: Callable[[str, int, int], None] | None = None) -> Plan:
    """Check ``config`` and build what the sweep needs, before any work (see the module docstring).

    ``out``: the results folder (checked: a usable path; without ``resume`` / ``overwrite`` it must not
    hold results; with ``resume`` its results must have the same schema and configuration).
    ``model``: the model ``config.model`` names, when the caller has built it.  ``progress(stage, done,
    total)``: told how the scorers' fixed costs advance (a learned model's reference statistics and
    oracle floors, read from the disk cache after the first run).  Every problem is a ``ValueError``
    naming the option and the valid choices."""
    if not isinstance(config, BenchConfig):
        raise ValueError(f"plan() takes a BenchConfig, got {type(config).__name__}")
    if resume and overwrite:
        raise ValueError("--overwrite and --resume exclude each other")
    nfes = check_nfes(list(config.nfe) if isinstance(config.nfe, (list, tuple)) else config.nfe)
    _check_number(config.num_samples, "--num-samples", 2)
    _check_number(config.batch_size, "--batch-size", 1)
    _check_number(config.repeats, "--repeats", 1)
    check_seed(config.seed)
    if config.noise not in NOISE_CHOICES:
        raise ValueError(f"--noise {config.noise!r}: choose one of {', '.join(NOISE_CHOICES)}")
    if not isinstance(config.solver_options, dict) or not all(isinstance(v, dict)
                                                              for v in config.solver_options.values()):
        raise ValueError("solver_options must map solver names to option dicts")
    device = check_device(config.device)
    config = replace(config, noise=resolve_noise(config.noise, device))  # auto: philox on CUDA, else cpu
    if out is not None:
        out = check_out_path(out)
        if world_info()[0] == 0:
            check_free(out)
        if not resume and not overwrite and world_info()[0] == 0 and (out / "results.json").exists():
            raise ValueError(f"{out} already holds results.json; pass --overwrite or --resume, or choose another "
                             f"--out")
    if model is None:
        model = build_model(config.model, dict(config.model_options))
    conditioning = condition(model, config.guidance, config.labels, config.seed)[1]
    feature = _check_feature(model, config)
    names = list(config.solvers) if config.solvers else default_solvers(model)
    for name in names:
        SOLVERS.lookup(name)  # unknown names: the valid ones
    if len(set(names)) != len(names):
        raise ValueError(f"--solvers names a solver twice ({', '.join(names)})")
    every = config.solver_options.get("*", {})  # -o key=value for every solver of the run
    options = {name: {**every, **config.solver_options.get(name, {})} for name in names}
    options = {name: o for name, o in options.items() if o}
    stray = sorted(set(config.solver_options) - set(names) - {"*"})
    if stray:
        raise ValueError(f"options for solver(s) {', '.join(stray)}, which are not in this run ({', '.join(names)})")
    solvers, skipped = [], {}
    for name in names:
        solver = build_solver(name, options.get(name, {}))
        if config.skip_inapplicable:
            try:
                solver.check_model(model)
            except ValueError as err:
                skipped[name] = str(err)
                continue
        steps = check_solver_run(solver, model, nfes)
        solvers.append(SolverPlan(name, solver, steps, not solver.stochastic, solver.filter_spec()))
    names = [n for n in names if n not in skipped]
    if not names:
        raise ValueError(f"no selected solver applies to model {model.name!r}: "
                         + "; ".join(f"{n}: {why}" for n, why in skipped.items()))
    options = {n: o for n, o in options.items() if n not in skipped}
    config = replace(config, nfe=nfes, solvers=names, feature=feature, solver_options=options)
    record = record_of(config, names)
    previous = _previous(out, record) if resume and out is not None else None
    n = config.num_samples
    scorers = [make_scorer(model, feature, n, config.seed, r, reference=config.reference,
                           inception=config.inception, device=device, progress=progress)
               for r in range(config.repeats)]
    return Plan(config=config, model=model, device=device, solvers=solvers, scorers=scorers, record=record,
                conditioning=None if conditioning is None else conditioning.describe(), out=out, resume=resume,
                overwrite=overwrite, previous=previous, extra={"skipped": skipped} if skipped else {})


def describe(p: Plan) -> dict[str, Any]:
    """A short summary of a plan (what ``bench`` prints before it starts)."""
    return {"model": p.model.name, "solvers": [s.name for s in p.solvers], "nfe": p.config.nfe,
            "steps": {s.name: s.steps for s in p.solvers}, "cells": p.cells, "pilot runs": p.needs_pilot}
