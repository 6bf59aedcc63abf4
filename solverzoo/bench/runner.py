"""The NFE-versus-quality sweep behind ``solverzoo bench``.

One sweep = one model, a list of solvers, a list of NFE budgets, N samples per cell.
Every cell uses samples 0..N-1 of the same seed, so every solver starts from the same
initial noise (paired comparison); the metric's reference statistics and oracle floor
(:func:`solverzoo.metrics.make_scorer`) and the pathwise reference solve are computed once
per sweep.  Each finished row is written to ``results.json`` at once (temp file + rename),
so an interrupted sweep keeps its rows.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .. import __version__
from ..io import atomic_write_json, save_npz
from ..metrics.evaluate import make_scorer
from ..models import get_model
from ..models.base import Model
from ..models.guidance import condition, label_accuracy
from ..sampling import resolve_device, sample
from ..solvers import get_solver, list_solvers
from .report import load_previews, load_results

__all__ = ["BenchConfig", "Row", "run_bench", "default_solvers", "DEFAULT_NFE", "write_json_atomic", "SCHEMA_VERSION",
           "SCHEMA", "load_previews", "PATH_REFERENCE_SOLVER", "PATH_REFERENCE_NFE", "PATH_REFERENCE_SAMPLES"]

DEFAULT_NFE = (10, 20, 50)

#: Version of the results.json layout (:data:`SCHEMA`); 1 = files without the field.
SCHEMA_VERSION = 2

#: The pathwise reference: the converged ODE map of each initial noise, by EDM's 2nd-order Heun
#: (deterministic, so its error against the exact flow shrinks as NFE^-2) on its default Karras
#: grid at 511 model calls (256 steps).  Measured on gmm-image (benchmarks/metric): heun at 511 vs
#: 1023 calls differ by far less than the smallest path_rms of the default sweep.
PATH_REFERENCE_SOLVER = "heun"
PATH_REFERENCE_NFE = 511
#: The reference is solved for the first PATH_REFERENCE_SAMPLES samples of the sweep only (cost).
PATH_REFERENCE_SAMPLES = 100
#: Samples of each cell kept for samples.png.
PREVIEW_SAMPLES = 2

#: results.json, schema 2: field -> meaning.  Top level, then one entry per row ("rows.*").
SCHEMA = {
    "schema_version": "2",
    "solverzoo": "package version that wrote the file",
    "command": "the command line",
    "created": "start time (ISO 8601)",
    "machine": "python, torch, platform, device",
    "config": "every bench option (model, model_options, solvers, solver_options, nfe, num_samples, seed, "
              "batch_size, device, feature, repeats[, reference, inception])",
    "model": "the model's description (name, shape, process, parameters, key)",
    "metric": "name of the primary metric (mmd_whitened for analytic models; fd_<feature> for learned ones)",
    "metric_note": "what the metric measures, its oracle floor and its uncertainty",
    "oracle_floor": "the primary metric's expected value for exact samples at this N (0 for mmd_whitened)",
    "oracle_floors": "the same per repeat (seed range)",
    "fd_metric": "name of the Frechet distance in the rows' fd field",
    "fd_oracle_floor": "FD of N exact (or held-out real) samples: the biased FD's floor at this N",
    "fd_oracle_floors": "the same per repeat",
    "spectral_floor": "spectral_error and hf_ratio of N exact samples (image analytic models)",
    "path_reference": "solver, nfe and num_samples of the pathwise reference solve",
    "distributed": "world size and backend under torchrun (absent otherwise)",
    "rows.solver": "solver name", "rows.nfe_requested": "NFE budget asked for",
    "rows.repeat": "seed range r: samples [r N, (r + 1) N)",
    "rows.nfe": "counted model calls per sample", "rows.steps": "solver steps",
    "rows.metric": "primary metric name", "rows.value": "primary metric value",
    "rows.uncertainty": "its standard deviation (mmd: first-order std of the U-statistic; fd: bootstrap)",
    "rows.excess": "value - oracle_floor", "rows.oracle_floor": "the primary metric's floor",
    "rows.fd": "Frechet distance (fd_metric)", "rows.fd_excess": "fd - fd_oracle_floor",
    "rows.spectral_error": "mean |log| ratio of radial power to the exact one, 16 bands",
    "rows.hf_ratio": "power above 0.25 cycles/pixel relative to the exact one (1 = exact, < 1 over-smooth)",
    "rows.path_rms": "ODE solvers: RMS per coordinate of sample - reference solve from the same noise",
    "rows.label_accuracy": "digits under --labels/--guidance: fraction of samples the shipped digits classifier "
                           "assigns to their requested label",
    "conditioning": "labels, guidance weight and NFE counting under guidance (absent without labels)",
    "rows.seconds": "wall time of the cell", "rows.status": "ok, nonfinite or error",
    "rows.message": "why a cell failed", "rows.options": "every option the solver ran with (Solver.options())",
}


@dataclass
class BenchConfig:
    model: str = "gmm-image"
    model_options: dict = field(default_factory=dict)
    solvers: list[str] | None = None  # None: every registered solver that applies to the model
    solver_options: dict[str, dict] = field(default_factory=dict)
    nfe: list[int] = field(default_factory=lambda: list(DEFAULT_NFE))
    num_samples: int = 500
    seed: int = 0
    batch_size: int = 500
    device: str = "cpu"
    feature: str = "pixels"
    repeats: int = 1  # disjoint seed ranges: repeat r uses samples [r N, (r + 1) N)
    # learned models (no exact moments): reference data / fid-ref .npz, Inception weights file
    reference: str | None = None
    inception: str | None = None
    # classifier-free guidance (solverzoo.models.guidance): weight w and the class of each sample
    guidance: float | None = None
    labels: str | None = None  # "0,1,2" cycled over the sample index, "all", "random"; default "all" under guidance
    noise: str = "cpu"  # per-sample noise source: "cpu" generators or device-side "philox" (solverzoo.noise)


@dataclass
class Row:
    """One cell of the sweep (see :data:`SCHEMA` for the meaning of every field)."""

    solver: str
    nfe_requested: int
    repeat: int
    nfe: int | None
    steps: int | None
    metric: str
    value: float | None
    uncertainty: float | None
    excess: float | None
    oracle_floor: float | None
    seconds: float
    status: str  # "ok", "nonfinite", "error"
    message: str = ""
    options: dict = field(default_factory=dict)
    fd: float | None = None  # Frechet distance (results["fd_metric"]); the primary metric for learned models
    fd_excess: float | None = None  # fd - results["fd_oracle_floor"]
    spectral_error: float | None = None  # image models: mean |log| radial power ratio (metrics.spectrum)
    hf_ratio: float | None = None  # generated / exact power above 0.25 cycles/pixel
    path_rms: float | None = None  # ODE solvers: RMS per coordinate of sample - reference solve, same noise
    label_accuracy: float | None = None  # digits with labels/guidance: shipped classifier's accuracy on the labels


def default_solvers(model: Model) -> list[str]:
    """Every registered solver that accepts the model (``check_model``: fdm needs an FDM process,
    pds / tdas need known training data or filter files for a learned model) and is declared
    ``in_default_bench``, less the reference integrators, whose cost is set by tolerances rather
    than by the NFE budget.  The others run when named (``--solvers er_sde``, ``all``, a family)."""
    names = []
    for name in list_solvers():
        solver = get_solver(name)
        if solver.info.family == "reference" or not solver.info.in_default_bench:
            continue
        try:
            solver.check_model(model)
        except ValueError:
            continue
        names.append(name)
    return names


def json_safe(value):
    """JSON has no inf/nan: non-finite floats become the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json_atomic(path: Path, payload: dict) -> None:
    """Strict JSON (non-finite floats as strings, :func:`json_safe`) written atomically (solverzoo.io)."""
    atomic_write_json(path, json_safe(payload), allow_nan=False)


def _write_previews(path: Path, previews: dict) -> None:
    """previews.npz: the first PREVIEW_SAMPLES samples of every finished cell (for samples.png)."""
    save_npz(path, **{f"{solver}@{nfe}": x for (solver, nfe), x in previews.items()})


def pathwise_reference(model, config: BenchConfig, device, num: int) -> torch.Tensor:
    """The converged ODE map of the first ``num`` initial noises of the sweep's seed:
    PATH_REFERENCE_SOLVER at PATH_REFERENCE_NFE (see :data:`PATH_REFERENCE_SOLVER`)."""
    res = sample(model, PATH_REFERENCE_SOLVER, nfe=PATH_REFERENCE_NFE, num_samples=num, seed=config.seed,
                 guidance=config.guidance, labels=config.labels,
                 batch_size=min(num, int(config.batch_size or num)), device=device)
    return res.samples.to(torch.float64).cpu()


def _label_accuracy(model, config: BenchConfig, x: torch.Tensor, start: int) -> float | None:
    """Digits sampled with labels or guidance: the shipped digits classifier's accuracy on the label
    each sample was asked for (samples start .. start + len(x) - 1)."""
    if (config.guidance is None and config.labels is None) or getattr(model, "data", None) != "digits":
        return None
    cond = condition(model, config.guidance, config.labels, config.seed)[1]
    return label_accuracy(x, cond.labels_for(range(start, start + len(x))))


def _is_ode(name: str, options: dict) -> bool:
    try:
        return not get_solver(name, **options).stochastic
    except Exception:
        return False


def run_bench(
    config: BenchConfig,
    out: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_row: Callable[[Row], None] | None = None,
    command: str | None = None,
    resume: bool = False,
    model: Model | None = None,
) -> dict:
    """Run the sweep; returns the results dict (also written to ``out/results.json``).

    ``model``: the model ``config.model`` / ``config.model_options`` name, when the caller has built it
    already (``solverzoo bench`` builds it once, to check the options before any work).

    With ``resume``, rows already in ``out/results.json`` (made with the same config)
    are kept and only the missing cells run, so an interrupted sweep ends with the same
    rows as an uninterrupted one.
    """
    device = resolve_device(config.device)
    model = get_model(config.model, **config.model_options) if model is None else model
    if config.repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {config.repeats}")
    solvers = config.solvers or default_solvers(model)
    n = config.num_samples
    scorers = [make_scorer(model, config.feature, n, config.seed, r, reference=config.reference,
                           inception=config.inception, device=device) for r in range(config.repeats)]
    floors = [s.oracle_floor for s in scorers]
    known_floors = [f for f in floors if f is not None]
    fd_floors = [s.fd_floor for s in scorers if s.fd_floor is not None]
    config_dict = asdict(config) | {"solvers": solvers}
    for key in ("reference", "inception", "guidance", "labels"):  # learned-model options: left out of analytic runs' configs
        if config_dict.get(key) is None:
            config_dict.pop(key)
    if config_dict.get("noise") == "cpu":  # the default: left out, so earlier results.json resume as before
        config_dict.pop("noise")
    path_num = min(n, PATH_REFERENCE_SAMPLES)
    results = {
        "schema_version": SCHEMA_VERSION,
        "solverzoo": __version__,
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
                    "device": str(device)},
        "config": json.loads(json.dumps(config_dict)),
        "model": model.describe(),
        "noise": config.noise,
        "metric": scorers[0].metric,
        "metric_note": scorers[0].note,
        "oracle_floor": sum(known_floors) / len(known_floors) if known_floors else None,
        "oracle_floors": floors,
        "fd_metric": scorers[0].fd_metric or scorers[0].metric,
        "fd_oracle_floors": [s.fd_floor for s in scorers] if fd_floors else floors,
        "fd_oracle_floor": sum(fd_floors) / len(fd_floors) if fd_floors else (
            sum(known_floors) / len(known_floors) if known_floors else None),
        "spectral_floor": scorers[0].spectral_floor,
        "path_reference": {"solver": PATH_REFERENCE_SOLVER, "nfe": PATH_REFERENCE_NFE, "num_samples": path_num,
                           "note": "path_rms = sqrt(mean over the first num_samples samples and coordinates of "
                                   "(x - x_ref)^2), x_ref from the same initial noise; ODE solvers only"},
        "rows": [],
    }
    if config.guidance is not None or config.labels is not None:  # the reference solve is guided the same way
        results["conditioning"] = condition(model, config.guidance, config.labels, config.seed)[1].describe()
    rank, world = world_info()
    writer = rank == 0  # under torchrun every rank samples its share; rank 0 alone writes
    if world > 1:
        results["distributed"] = {"world_size": world, "backend": _dist_backend()}
    path = out / "results.json" if out is not None else None
    previews: dict = {}
    if resume and path is not None and path.exists():
        previous = load_results(path)
        if previous.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"{path} has results schema {previous.get('schema_version', 1)}, this version writes "
                             f"{SCHEMA_VERSION}; start again with --overwrite")
        if previous.get("config") != results["config"]:
            diff = sorted(k for k in results["config"] if previous.get("config", {}).get(k) != results["config"][k])
            raise ValueError(f"{path} was made with a different configuration (differs in: {', '.join(diff)}); "
                             f"resume with the same options, or use --overwrite")
        results["rows"], results["created"] = previous["rows"], previous.get("created")
        previews = load_previews(out)
    if out is not None and writer:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, results)

    path_ref = None
    done = {(row["solver"], row["nfe_requested"], row.get("repeat", 0)) for row in results["rows"]}
    for name in solvers:
        options = dict(config.solver_options.get(name, {}))
        ode = _is_ode(name, options)
        for nfe in config.nfe:
            for r in range(config.repeats):
                if (name, nfe, r) in done:
                    if on_progress is not None:
                        on_progress(n)
                    continue
                if ode and r == 0 and path_ref is None:
                    path_ref = pathwise_reference(model, config, device, path_num)  # once per sweep
                row, x = _run_cell(model, name, nfe, r, config, device, scorers[r], on_progress,
                                   path_ref if ode and r == 0 else None)
                results["rows"].append(asdict(row))
                if x is not None and r == 0 and model.is_image:
                    previews[(name, nfe)] = x[:PREVIEW_SAMPLES].float().cpu()
                if path is not None and writer:
                    write_json_atomic(path, results)
                    if previews:
                        _write_previews(out / "previews.npz", previews)
                if on_row is not None:
                    on_row(row)
    return results


def _run_cell(model, name, nfe, repeat, config, device, scorer, on_progress, path_ref) -> tuple[Row, torch.Tensor | None]:
    options = dict(config.solver_options.get(name, {}))
    n = config.num_samples
    start = time.perf_counter()
    done = 0

    def progress(k: int) -> None:
        nonlocal done
        done += k
        if on_progress is not None:
            on_progress(k)

    cell = dict(solver=name, nfe_requested=nfe, repeat=repeat, metric=scorer.metric, oracle_floor=scorer.oracle_floor)
    empty = dict(value=None, uncertainty=None, excess=None)
    try:
        result = _sample_sharded(model, name, nfe, n, repeat * n, config, device, progress, options)
        x = result.samples
        cell.update(nfe=result.nfe, steps=result.steps, options=result.options)
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x.flatten(1))).any(1).sum())
            return Row(**cell, **empty, seconds=time.perf_counter() - start, status="nonfinite",
                       message=f"{bad} of {len(x)} samples are not finite"), None
        scores = scorer.score(x)
        sec = scores["secondaries"]
        fd = sec.get(scorer.fd_metric) if scorer.fd_metric else scores["value"]
        fd_floor = scorer.fd_floor if scorer.fd_metric else scorer.oracle_floor
        path_rms = None
        if path_ref is not None:
            diff = x[: len(path_ref)].to(torch.float64).cpu() - path_ref
            path_rms = float(diff.pow(2).mean().sqrt())
        label_acc = _label_accuracy(model, config, x, repeat * n)
        return Row(**cell, value=scores["value"], uncertainty=scores["uncertainty"], excess=scores["excess"],
                   fd=fd, fd_excess=None if fd_floor is None or fd is None else fd - fd_floor,
                   spectral_error=sec.get("spectral_error"), hf_ratio=sec.get("hf_ratio"), path_rms=path_rms,
                   label_accuracy=label_acc,
                   seconds=time.perf_counter() - start, status="ok"), x
    except Exception as err:  # a failing cell is a row, not a crash
        if on_progress is not None and done < n:
            on_progress(n - done)
        message = f"{type(err).__name__}: {err}"
        if not isinstance(err, ValueError):
            message += "\n" + traceback.format_exc(limit=3)
        cell.setdefault("options", options)
        return Row(**{**cell, "nfe": None, "steps": None}, **empty, seconds=time.perf_counter() - start,
                   status="error", message=message), None


# ----------------------------------------------------------------------------- torchrun / torch.distributed
def world_info() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _dist_backend() -> str:
    import torch.distributed as dist

    return str(dist.get_backend())


def shard(num_samples: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """Rank ``rank``'s share of a cell: (offset, count) of a contiguous block of whole batches.

    The batches are those a single process makes ([0, B), [B, 2B), ...), so every sample is
    computed in the same batch as in a one-process run, with its own per-sample seeds: the
    gathered samples, hence the statistics, are identical.  Ranks take ceil(batches / world)
    batches each, lowest ranks first; a rank gets none when there are too few batches (use
    --batch-size <= N / world size to keep every rank busy)."""
    batches = -(-num_samples // batch_size)
    per_rank = -(-batches // world)
    lo, hi = min(batches, rank * per_rank), min(batches, (rank + 1) * per_rank)
    start = lo * batch_size
    return start, max(0, min(num_samples, hi * batch_size) - start)


def _sample_sharded(model, name, nfe, n, start, config, device, progress, options):
    """``sample`` over ``n`` samples from index ``start``; under torch.distributed each rank samples
    its block of batches (:func:`shard`) and the samples are gathered in index order on every rank.
    An error on any rank is raised on every rank (so all ranks record the same row)."""
    rank, world = world_info()
    batch_size = int(config.batch_size or n)
    if world == 1:
        return sample(model, name, nfe=nfe, num_samples=n, seed=config.seed, start_index=start,
                      batch_size=batch_size, device=device, on_batch=progress, noise=config.noise,
                      guidance=config.guidance, labels=config.labels, **options)
    import torch.distributed as dist

    from ..sampling import SampleResult

    offset, count = shard(n, batch_size, rank, world)
    outcome: tuple = ("empty",)
    if count > 0:
        try:
            res = sample(model, name, nfe=nfe, num_samples=count, seed=config.seed, start_index=start + offset,
                         batch_size=batch_size, device=device, on_batch=progress, noise=config.noise,
                      guidance=config.guidance, labels=config.labels, **options)
            outcome = ("ok", res.samples, res.nfe, res.seconds, res.solver, res.steps, res.grid, res.options)
        except Exception as err:  # reported on every rank below
            outcome = ("error", type(err).__name__, str(err), isinstance(err, ValueError))
    gathered: list = [None] * world
    dist.all_gather_object(gathered, outcome)
    for item in gathered:
        if item[0] == "error":
            if item[3]:
                raise ValueError(item[2])
            raise RuntimeError(f"{item[1]}: {item[2]}")
    oks = [item for item in gathered if item[0] == "ok"]
    nfes = {item[2] for item in oks}
    if len(nfes) != 1:
        raise RuntimeError(f"ranks counted different NFE for {name!r}: {sorted(nfes)}")
    if progress is not None:
        progress(n - count)  # the other ranks' samples
    _, _, nfe_counted, _, solver_name, steps, grid, opts = oks[0]
    return SampleResult(samples=torch.cat([item[1] for item in oks]), solver=solver_name, nfe=nfe_counted,
                        nfe_requested=nfe, steps=steps, grid=grid, seconds=max(item[3] for item in oks),
                        options=opts)


# ----------------------------------------------------------------------------- PDS / TDAS on learned models
def learned_filters(model, solvers: list[str], solver_options: dict[str, dict], reference: str | None,
                    out: Path | None, write: bool = True) -> dict[str, dict]:
    """Filter files for ``pds`` / ``tdas`` on a learned model whose data is known (``--reference``
    or the model's training data), as analytic models build theirs from exact samples: the first
    STATISTIC_SAMPLES (200) images in [0, 1] give PDS's statistics (``filters estimate``) and
    TDAS's mean-image space filter; TDAS's radial frequency filter is the appendix A.2 estimate
    from a pilot run of ``pc`` (no filters) at TDAS_PILOT_NFE = 20 (the
    accelerated regime TDAS targets).  Files go to OUT/filters_<solver>.npz; a solver given
    ``filters=`` keeps it.  Returns the updated options."""
    from ..data import load_dataset
    from ..preconditioners import image_mean, pds_statistics, save_filters, tdas_estimate
    from ..preconditioners.build import FILTER_SEED, STATISTIC_SAMPLES
    from ..preconditioners.tdas import tdas_space_filter

    wanted = [s for s in solvers if s in ("pds", "tdas") and "filters" not in solver_options.get(s, {})]
    data = reference or getattr(model, "data", None)
    if not wanted or data is None or str(data).endswith(".npz") and _is_stats(data):
        return solver_options
    if out is None:
        raise ValueError("filters for a learned model are written to --out; give one")
    images = ((load_dataset(data, STATISTIC_SAMPLES).to(torch.float64) + 1) / 2).clamp(0, 1)
    if tuple(images.shape[1:]) != tuple(model.shape):
        raise ValueError(f"reference data {data!r} has images of shape {tuple(images.shape[1:])}, the model samples "
                         f"{tuple(model.shape)}")
    options = {k: dict(v) for k, v in solver_options.items()}
    out.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        path = out / f"filters_{name}.npz"
        if write:
            if name == "pds":
                stats = pds_statistics(images)
                save_filters(path, freq=stats.freq, space=stats.space, kind="statistic", source=str(data),
                             count=len(images))
            else:
                pilot = sample(model, "pc", nfe=TDAS_PILOT_NFE, num_samples=len(images), seed=FILTER_SEED,
                               batch_size=len(images)).samples
                est = tdas_estimate(((pilot + 1) / 2).clamp(0, 1).to(torch.float64), images)
                space = tdas_space_filter(image_mean(images), 5.0)
                save_filters(path, freq=getattr(est.preconditioner, "values", None), space=space, kind="filter",
                             method="tdas", source=str(data), pilot=f"pc @ {TDAS_PILOT_NFE} NFE", **est.describe())
        options.setdefault(name, {})["filters"] = str(path)
    return options


#: NFE of the pc pilot run behind TDAS's estimated radial filter on learned models.
TDAS_PILOT_NFE = 20


def _is_stats(path) -> bool:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return "mu" in z.files and "sigma" in z.files
    except Exception:
        return False
