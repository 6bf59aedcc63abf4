"""The NFE-versus-FD sweep behind ``solverzoo bench``.

One sweep = one model, a list of solvers, a list of NFE budgets, N samples per cell.
Every cell uses samples 0..N-1 of the same seed, so every solver starts from the same
initial noise (paired comparison) and the oracle floor (the same estimator on N exact
data samples) is computed once per sweep.  Each finished row is written to
``results.json`` at once (temp file + rename), so an interrupted sweep keeps its rows.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import __version__
from ..metrics import exact_reference, metric_name
from ..metrics.spectrum import exact_radial_power, spectral_scores
from ..models import get_model
from ..models.base import AnalyticModel, Model
from ..noise import DATA
from ..sampling import resolve_device, sample
from ..solvers import get_solver, list_solvers

__all__ = ["BenchConfig", "Row", "run_bench", "default_solvers", "DEFAULT_NFE", "write_json_atomic"]

DEFAULT_NFE = (10, 20, 50)


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
    noise: str = "cpu"  # per-sample noise source: "cpu" generators or device-side "philox" (solverzoo.noise)


@dataclass
class Row:
    solver: str
    nfe_requested: int
    repeat: int
    nfe: int | None
    steps: int | None
    metric: str
    fd: float | None
    fd_excess: float | None
    oracle_floor: float
    seconds: float
    status: str  # "ok", "nonfinite", "error"
    message: str = ""
    options: dict = field(default_factory=dict)
    spectral_error: float | None = None  # image models: mean |log| radial power ratio (metrics.spectrum)
    hf_ratio: float | None = None  # generated / exact power above 0.25 cycles/pixel


def default_solvers(model: Model) -> list[str]:
    """Every registered solver that accepts the model (``check_model``: fdm needs an FDM process,
    pds / tdas need filter files for a learned model), less the reference integrators, whose
    cost is set by tolerances rather than by the NFE budget (name them to run them)."""
    names = []
    for name in list_solvers():
        solver = get_solver(name)
        if solver.info.family == "reference":
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
    """Write JSON through a temp file in the same folder and rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(json_safe(payload), fh, indent=1, allow_nan=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def run_bench(
    config: BenchConfig,
    out: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_row: Callable[[Row], None] | None = None,
    command: str | None = None,
    resume: bool = False,
) -> dict:
    """Run the sweep; returns the results dict (also written to ``out/results.json``).

    With ``resume``, rows already in ``out/results.json`` (made with the same config)
    are kept and only the missing cells run, so an interrupted sweep ends with the same
    rows as an uninterrupted one.
    """
    device = resolve_device(config.device)
    model = get_model(config.model, **config.model_options)
    if config.repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {config.repeats}")
    solvers = config.solvers or default_solvers(model)
    n = config.num_samples
    floors, spectral_floors = [], []
    if isinstance(model, AnalyticModel):
        metric = metric_name(config.feature)
        reference = exact_reference(model, config.feature)
        feature = _feature_fn(config.feature)
        spectrum = exact_radial_power(model) if hasattr(model, "power_spectrum") else None
        metric_note = (f"Frechet distance in {config.feature} space against the model's exact moments "
                       f"(not Inception FID); fd_excess = fd - oracle_floor")
        for r in range(config.repeats):  # reference statistics once per sweep, per seed range
            data = model.sample_data(config.seed, range(r * n, (r + 1) * n))
            floors.append(reference.distance_samples(feature(data.to(torch.float64))))
            if spectrum is not None:
                spectral_floors.append(spectral_scores(data, spectrum))
    else:  # a learned model: statistics of real data in a feature space (metrics.fid)
        from ..metrics.fid import data_reference

        dref = data_reference(model, config.feature, n, config.repeats, config.seed, reference=config.reference,
                              inception=config.inception, device=device)
        metric, reference, feature, floors, spectrum = dref.metric, dref.reference, dref.extractor, dref.floors, None
        metric_note = dref.note
    known_floors = [f for f in floors if f is not None]
    config_dict = asdict(config) | {"solvers": solvers}
    for key in ("reference", "inception"):  # learned-model options: left out of analytic runs' configs
        if config_dict.get(key) is None:
            config_dict.pop(key)
    if config_dict.get("noise") == "cpu":  # the default: left out, so earlier results.json resume as before
        config_dict.pop("noise")
    results = {
        "solverzoo": __version__,
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
                    "device": str(device)},
        "config": json.loads(json.dumps(config_dict)),
        "model": model.describe(),
        "noise": config.noise,
        "metric": metric,
        "metric_note": metric_note,
        "oracle_floor": sum(known_floors) / len(known_floors) if known_floors else None,
        "oracle_floors": floors,
        "spectral_floor": spectral_floors[0] if spectral_floors else None,
        "rows": [],
    }
    rank, world = world_info()
    writer = rank == 0  # under torchrun every rank samples its share; rank 0 alone writes
    if world > 1:
        results["distributed"] = {"world_size": world, "backend": _dist_backend()}
    path = out / "results.json" if out is not None else None
    if resume and path is not None and path.exists():
        from .report import load_results

        previous = load_results(path)
        if previous.get("config") != results["config"]:
            diff = sorted(k for k in results["config"] if previous.get("config", {}).get(k) != results["config"][k])
            raise ValueError(f"{path} was made with a different configuration (differs in: {', '.join(diff)}); "
                             f"resume with the same options, or use --overwrite")
        results["rows"], results["created"] = previous["rows"], previous.get("created")
    if out is not None and writer:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, results)

    done = {(row["solver"], row["nfe_requested"], row.get("repeat", 0)) for row in results["rows"]}
    for name in solvers:
        for nfe in config.nfe:
            for r in range(config.repeats):
                if (name, nfe, r) in done:
                    if on_progress is not None:
                        on_progress(n)
                    continue
                row = _run_cell(model, name, nfe, r, config, device, reference, feature, floors[r], metric,
                                on_progress, spectrum)
                results["rows"].append(asdict(row))
                if path is not None and writer:
                    write_json_atomic(path, results)
                if on_row is not None:
                    on_row(row)
    return results


def _feature_fn(feature: str):
    from ..metrics import make_feature

    fn = make_feature(feature)
    return lambda x: fn(x).reshape(len(x), -1)


def _run_cell(model, name, nfe, repeat, config, device, reference, feature, floor, metric, on_progress,
              spectrum) -> Row:
    options = dict(config.solver_options.get(name, {}))
    n = config.num_samples
    start = time.perf_counter()
    done = 0

    def progress(k: int) -> None:
        nonlocal done
        done += k
        if on_progress is not None:
            on_progress(k)

    cell = dict(solver=name, nfe_requested=nfe, repeat=repeat, metric=metric, oracle_floor=floor)
    try:
        result = _sample_sharded(model, name, nfe, n, repeat * n, config, device, progress, options)
        x = result.samples
        cell.update(nfe=result.nfe, steps=result.steps, options=result.options)
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x.flatten(1))).any(1).sum())
            return Row(**cell, fd=None, fd_excess=None, seconds=time.perf_counter() - start, status="nonfinite",
                       message=f"{bad} of {len(x)} samples are not finite")
        fd = reference.distance_samples(feature(x.to(torch.float64)))
        spectral = spectral_scores(x, spectrum) if spectrum is not None else {}
        return Row(**cell, fd=fd, fd_excess=None if floor is None else fd - floor,
                   seconds=time.perf_counter() - start, status="ok",
                   **spectral)
    except Exception as err:  # a failing cell is a row, not a crash
        if on_progress is not None and done < n:
            on_progress(n - done)
        message = f"{type(err).__name__}: {err}"
        if not isinstance(err, ValueError):
            message += "\n" + traceback.format_exc(limit=3)
        return Row(**cell, nfe=None, steps=None, fd=None, fd_excess=None, seconds=time.perf_counter() - start,
                   status="error", message=message, options=options)


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
                      batch_size=batch_size, device=device, on_batch=progress, noise=config.noise, **options)
    import torch.distributed as dist

    from ..sampling import SampleResult

    offset, count = shard(n, batch_size, rank, world)
    outcome: tuple = ("empty",)
    if count > 0:
        try:
            res = sample(model, name, nfe=nfe, num_samples=count, seed=config.seed, start_index=start + offset,
                         batch_size=batch_size, device=device, on_batch=progress, noise=config.noise, **options)
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
