"""The bench's data: what a sweep is asked for (:class:`BenchConfig`), what one cell gives
(:class:`Row`), and the results.json layout (:data:`SCHEMA`), with the strict-JSON writer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..io import atomic_write_json

__all__ = ["BenchConfig", "Row", "DEFAULT_NFE", "SCHEMA_VERSION", "SCHEMA", "json_safe", "write_json_atomic",
           "PATH_REFERENCE_SOLVER", "PATH_REFERENCE_NFE", "PATH_REFERENCE_SAMPLES", "PREVIEW_SAMPLES"]

DEFAULT_NFE = (10, 20, 50)

#: Version of the results.json layout (:data:`SCHEMA`); 1 = files without the field, 2 = metrics as row fields.
SCHEMA_VERSION = 3

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

#: results.json, schema 3: field -> meaning.  Top level, then one entry per row ("rows.*").
SCHEMA = {
    "schema_version": "3",
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
    "noise": "the per-sample noise source (cpu generators or philox; solverzoo.noise), shared by the reference solve",
    "distributed": "world size and backend under torchrun (absent otherwise)",
    "rows.solver": "solver name", "rows.nfe_requested": "NFE budget asked for",
    "rows.repeat": "seed range r: samples [r N, (r + 1) N)",
    "rows.nfe": "counted model calls per sample", "rows.steps": "solver steps",
    "rows.metric": "primary metric name", "rows.value": "primary metric value",
    "rows.uncertainty": "its standard deviation (mmd: first-order std of the U-statistic; fd: bootstrap)",
    "rows.excess": "value - oracle_floor", "rows.oracle_floor": "the primary metric's floor",
    "metrics": "every metric the rows carry besides the primary one: name -> declaration (title, lower_is_better, "
               "plot, floor, digits; solverzoo.metrics.catalog)",
    "rows.metrics": "{name: value} of those metrics (fd, fd_excess, spectral_error, hf_ratio, path_rms, path_median, "
                    "path_p90, mode_switch, label_accuracy, as they apply)",
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
    feature: str | None = None  # None: the model's own (mmd_whitened for analytic models)
    repeats: int = 1  # disjoint seed ranges: repeat r uses samples [r N, (r + 1) N)
    # learned models (no exact moments): reference data / fid-ref .npz, Inception weights file
    reference: str | None = None
    inception: str | None = None
    # classifier-free guidance (solverzoo.models.guidance): weight w and the class of each sample
    guidance: float | None = None
    labels: str | None = None  # "0,1,2" cycled over the sample index, "all", "random"; default "all" under guidance
    noise: str = "auto"  # per-sample noise: "cpu" generators, device-side "philox", or "auto" (philox on CUDA)
    # solvers chosen by a selector ('all', a family, a glob): the ones the model refuses are skipped
    # (named solvers are checked and refused)
    skip_inapplicable: bool = False


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
    metrics: dict = field(default_factory=dict)  # {name: value}, declared in results["metrics"]


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


