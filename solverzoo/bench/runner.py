"""``run_bench``: plan a sweep, then run it (:func:`solverzoo.bench.planner.plan`,
:func:`solverzoo.bench.sweep.run_plan`).  The pieces live in :mod:`.schema` (config, rows, the
results layout), :mod:`.plan` (checks and built objects), :mod:`.sweep` (the cells) and
:mod:`.distributed` (torchrun shards); this module keeps the names earlier code imports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..models.base import Model
from .distributed import shard, world_info
from .planner import Plan, default_solvers, plan
from .report import load_previews
from .schema import (
    DEFAULT_NFE,
    PATH_REFERENCE_NFE,
    PATH_REFERENCE_SAMPLES,
    PATH_REFERENCE_SOLVER,
    SCHEMA,
    SCHEMA_VERSION,
    BenchConfig,
    Row,
    json_safe,
    write_json_atomic,
)
from .sweep import run_plan

__all__ = ["BenchConfig", "Row", "run_bench", "default_solvers", "DEFAULT_NFE", "write_json_atomic", "SCHEMA_VERSION",
           "SCHEMA", "load_previews", "PATH_REFERENCE_SOLVER", "PATH_REFERENCE_NFE", "PATH_REFERENCE_SAMPLES",
           "json_safe", "shard", "world_info", "Plan", "plan", "run_plan"]


def run_bench(
    config: BenchConfig,
    out: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_row: Callable[[Row], None] | None = None,
    command: str | None = None,
    resume: bool = False,
    model: Model | None = None,
    overwrite: bool = False,
) -> dict:
    """Plan the sweep (every check before any work), then run it; returns the results dict (also
    written to ``out/results.json``).  ``model``: the model ``config`` names, when the caller has
    built it.  With ``resume``, rows already in ``out/results.json`` (same config) are kept and
    only the missing cells run; ``overwrite`` replaces earlier results once the new run has a row."""
    return run_plan(plan(config, out, resume=resume, overwrite=overwrite, model=model), on_progress=on_progress,
                    on_row=on_row, command=command)
