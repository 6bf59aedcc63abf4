"""Running a :class:`~solverzoo.bench.planner.Plan`: the NFE-versus-quality sweep behind ``solverzoo bench``.

Every cell uses samples [r N, (r + 1) N) of the same seed, so every solver starts from the same
initial noise (paired comparison); the scorers and the pathwise reference solve are made once per
sweep, the filters a solver asks for once per (solver, NFE) (``solverzoo.sampling.build_filters``,
the one filter pipeline; saved under ``OUT/filters/``).  The pathwise reference of a model whose
denoiser can be identified (:func:`~solverzoo.metrics.caching.weights_key`) is kept in the disk cache,
so a second sweep of the same model, seed and noise does not solve it again.  Each finished row is written to
``results.json`` at once (temp file + rename) inside the folder the run owns
(:class:`~solverzoo.bench.outdir.RunFolder`), so an interrupted sweep keeps its rows.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import torch

from .. import __version__
from ..io import save_npz
from ..metrics import pathwise
from ..metrics.caching import load_cached, store_cached, weights_key
from ..metrics.catalog import describe_metrics
from ..metrics.pathwise import components, path_errors
from ..models.guidance import condition, label_accuracy
from ..sampling import build_filters, sample
from .distributed import dist_backend, sample_sharded, world_info
from .outdir import RunFolder
from .planner import Plan, SolverPlan
from .report import load_previews
from .schema import (
    PATH_REFERENCE_NFE,
    PATH_REFERENCE_SAMPLES,
    PATH_REFERENCE_SOLVER,
    PREVIEW_SAMPLES,
    SCHEMA_VERSION,
    Row,
    write_json_atomic,
)

__all__ = ["run_plan", "pathwise_reference", "results_header"]


def results_header(p: Plan, command: str | None) -> dict:
    """The top of results.json (see :data:`~solverzoo.bench.schema.SCHEMA`), rows empty."""
    scorers = p.scorers
    floors = [s.oracle_floor for s in scorers]
    known = [f for f in floors if f is not None]
    fd_floors = [s.fd_floor for s in scorers if s.fd_floor is not None]
    path_num = min(p.config.num_samples, PATH_REFERENCE_SAMPLES)
    results = {
        "schema_version": SCHEMA_VERSION,
        "solverzoo": __version__,
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
                    "device": str(p.device)},
        "config": p.record,
        "model": p.model.describe(),
        "noise": p.config.noise,
        "metric": scorers[0].metric,
        "metric_note": scorers[0].note,
        "oracle_floor": sum(known) / len(known) if known else None,
        "oracle_floors": floors,
        "fd_metric": scorers[0].fd_metric or scorers[0].metric,
        "fd_oracle_floors": [s.fd_floor for s in scorers] if fd_floors else floors,
        "fd_oracle_floor": sum(fd_floors) / len(fd_floors) if fd_floors else (sum(known) / len(known) if known
                                                                               else None),
        "spectral_floor": scorers[0].spectral_floor,
        "metrics": describe_metrics(declared_metrics(p)),
        "path_reference": {"solver": PATH_REFERENCE_SOLVER, "nfe": PATH_REFERENCE_NFE, "num_samples": path_num,
                           "note": "path_rms = sqrt(mean over the first num_samples samples and coordinates of "
                                   "(x - x_ref)^2), x_ref from the same initial noise and noise source; "
                                   "path_median / path_p90: of the per-sample RMS error; mode_switch: fraction "
                                   "ending in another mixture component than x_ref; ODE solvers only"},
        "rows": [],
    }
    if p.conditioning is not None:
        results["conditioning"] = p.conditioning
    rank, world = world_info()
    if world > 1:
        results["distributed"] = {"world_size": world, "backend": dist_backend()}
    return results


def declared_metrics(p: Plan) -> list[str]:
    """The metrics the rows of ``p`` carry besides the primary one: the scorer's, the pathwise ones when
    an ODE solver runs, label accuracy on labelled digits."""
    names = list(p.scorers[0].declared())
    if any(s.ode for s in p.solvers):
        names += pathwise.declared(p.model)
    c = p.config
    if (c.guidance is not None or c.labels is not None) and getattr(p.model, "data", None) == "digits":
        names.append("label_accuracy")
    return names


def pathwise_cache_key(p: Plan, num: int) -> dict | None:
    """What the pathwise reference of ``p`` depends on: the model (its description and
    :func:`~solverzoo.metrics.caching.weights_key`), the reference solver and budget, the samples,
    seed, noise source, guidance, labels, batch size, device type and torch version; None when the
    model's denoiser cannot be identified (not cached)."""
    weights = weights_key(p.model)
    if weights is None:
        return None
    c = p.config
    return {"what": "pathwise reference", "model": json.loads(json.dumps(p.model.describe(), default=str)),
            "weights": weights, "solver": PATH_REFERENCE_SOLVER, "nfe": PATH_REFERENCE_NFE, "num_samples": int(num),
            "seed": int(c.seed), "noise": c.noise, "guidance": c.guidance, "labels": c.labels,
            "batch_size": min(num, int(c.batch_size or num)), "device": p.device.type, "torch": torch.__version__}


def pathwise_reference(p: Plan, num: int, progress: Callable[[str, int, int], None] | None = None) -> torch.Tensor:
    """The converged ODE map of the first ``num`` initial noises of the sweep's seed, drawn from the
    sweep's noise source: PATH_REFERENCE_SOLVER at PATH_REFERENCE_NFE (read from the disk cache when it
    holds it; ``progress(stage, done, total)`` while it is solved)."""
    c = p.config
    stage = f"pathwise reference ({PATH_REFERENCE_SOLVER}, {PATH_REFERENCE_NFE} NFE)"
    key = pathwise_cache_key(p, num)
    cached = load_cached("paths", key, ("samples",)) if key is not None else None
    if cached is not None and tuple(cached["samples"].shape) == (num, *p.model.shape) \
            and cached["samples"].dtype == np.float64:
        if progress is not None:
            progress(stage + " (cached)", num, num)
        return torch.from_numpy(cached["samples"])
    done = 0

    def advance(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(stage, done, num)

    res = sample(p.model, PATH_REFERENCE_SOLVER, nfe=PATH_REFERENCE_NFE, num_samples=num, seed=c.seed,
                 guidance=c.guidance, labels=c.labels, noise=c.noise,
                 batch_size=min(num, int(c.batch_size or num)), device=p.device, on_batch=advance)
    x = res.samples.to(torch.float64).cpu()
    if key is not None:
        store_cached("paths", key, {"samples": x.numpy()})
    return x


def _label_accuracy(p: Plan, x: torch.Tensor, start: int) -> float | None:
    """Digits sampled with labels or guidance: the shipped digits classifier's accuracy on the label
    each sample was asked for (samples start .. start + len(x) - 1)."""
    c = p.config
    if (c.guidance is None and c.labels is None) or getattr(p.model, "data", None) != "digits":
        return None
    cond = condition(p.model, c.guidance, c.labels, c.seed)[1]
    return label_accuracy(x, cond.labels_for(range(start, start + len(x))))


def run_plan(p: Plan, on_progress: Callable[[int], None] | None = None, on_row: Callable[[Row], None] | None = None,
             command: str | None = None, finish: Callable[[dict], object] | None = None,
             on_stage: Callable[[str, int, int], None] | None = None) -> dict:
    """Run every cell of ``p`` not already in its folder's results; returns the results dict (also
    written to ``p.out/results.json`` by rank 0 when the plan has a folder).  ``finish(results)`` runs
    while the run still holds its folder (tables, plots).  ``on_stage(stage, done, total)``: how the
    sweep's fixed costs (the pathwise reference) advance."""
    results = results_header(p, command)
    rank, _ = world_info()
    folder = RunFolder(p.out, resume=p.previous is not None) if p.out is not None and rank == 0 else None
    previews: dict = {}
    if p.previous is not None:
        results["rows"], results["created"] = p.previous["rows"], p.previous.get("created")
        previews = load_previews(p.out)
    if folder is None:
        results = _sweep(p, results, previews, None, on_progress, on_row, on_stage)
        if finish is not None and rank == 0:
            finish(results)
        return results
    with folder:
        results = _sweep(p, results, previews, folder, on_progress, on_row, on_stage)
        if finish is not None:
            finish(results)
        return results


def _sweep(p: Plan, results: dict, previews: dict, folder: RunFolder | None, on_progress, on_row,
           on_stage=None) -> dict:
    config, n = p.config, p.config.num_samples
    if folder is not None:
        write_json_atomic(folder.path("results.json"), results)
    path_num = min(n, PATH_REFERENCE_SAMPLES)
    path_ref = None
    done = {(row["solver"], row["nfe_requested"], row.get("repeat", 0)) for row in results["rows"]}
    for sp in p.solvers:
        for nfe in config.nfe:
            filters: list = []  # built once per (solver, NFE), on the first cell that needs them
            for r in range(config.repeats):
                if (sp.name, nfe, r) in done:
                    if on_progress is not None:
                        on_progress(n)
                    continue
                if sp.ode and r == 0 and path_ref is None:
                    ref = pathwise_reference(p, path_num, on_stage)  # once per sweep
                    path_ref = (ref, components(p.model, ref))
                row, x = _run_cell(p, sp, nfe, r, filters, folder, on_progress, path_ref if sp.ode and r == 0 else None)
                results["rows"].append(asdict(row))
                if x is not None and r == 0 and p.model.is_image:
                    previews[(sp.name, nfe)] = x[:PREVIEW_SAMPLES].float().cpu()
                if folder is not None:
                    write_json_atomic(folder.path("results.json"), results)
                    if previews:
                        save_npz(folder.path("previews.npz"), **{f"{s}@{k}": v for (s, k), v in previews.items()})
                    folder.promote()
                if on_row is not None:
                    on_row(row)
    return results


def _filters(p: Plan, sp: SolverPlan, nfe: int, folder: RunFolder | None):
    """The (operator, estimate) of ``sp`` at budget ``nfe`` (saved as OUT/filters/<solver>@<nfe>.npz)."""
    grid = sp.solver.make_grid(p.model.process, sp.steps[nfe])
    save = None
    if folder is not None:
        save = folder.path("filters") / f"{sp.name}@{nfe}.npz"
        save.parent.mkdir(exist_ok=True)
    return build_filters(sp.solver, p.model.to(p.device), grid, p.device, torch.float32, save=save)


def _run_cell(p: Plan, sp: SolverPlan, nfe: int, repeat: int, filters: list, folder, on_progress,
              path_ref) -> tuple[Row, torch.Tensor | None]:
    config, n = p.config, p.config.num_samples
    scorer = p.scorers[repeat]
    start = time.perf_counter()
    done = 0

    def progress(k: int) -> None:
        nonlocal done
        done += k
        if on_progress is not None:
            on_progress(k)

    cell = dict(solver=sp.name, nfe_requested=nfe, repeat=repeat, metric=scorer.metric,
                oracle_floor=scorer.oracle_floor)
    empty = dict(value=None, uncertainty=None, excess=None)
    try:
        if sp.filters is not None and not filters:
            filters.append(_filters(p, sp, nfe, folder))
        result = sample_sharded(p.model, sp.solver, sp.steps[nfe], n, repeat * n, config, p.device, progress,
                                filters[0] if filters else None)
        x = result.samples
        cell.update(nfe=result.nfe, steps=result.steps, options=result.options)
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x.flatten(1))).any(1).sum())
            return Row(**cell, **empty, seconds=time.perf_counter() - start, status="nonfinite",
                       message=f"{bad} of {len(x)} samples are not finite"), None
        scores = scorer.score(x)
        metrics = dict(scores["metrics"])
        if path_ref is not None:
            metrics.update(path_errors(x, path_ref[0], p.model, path_ref[1]))
        label_acc = _label_accuracy(p, x, repeat * n)
        if label_acc is not None:
            metrics["label_accuracy"] = label_acc
        return Row(**cell, value=scores["value"], uncertainty=scores["uncertainty"], excess=scores["excess"],
                   metrics=metrics, seconds=time.perf_counter() - start, status="ok"), x
    except Exception as err:  # a failing cell is a row, not a crash
        if on_progress is not None and done < n:
            on_progress(n - done)
        message = f"{type(err).__name__}: {err}"
        if not isinstance(err, ValueError):
            message += "\n" + traceback.format_exc(limit=3)
        cell.setdefault("options", sp.solver.options())
        return Row(**{**cell, "nfe": None, "steps": None}, **empty, seconds=time.perf_counter() - start,
                   status="error", message=message), None
