"""Step schedules tuned for one model, solver and NFE budget (``solverzoo tune-grid``).

The objective is the **pathwise error** of a deterministic solver: the RMS distance, over a
fixed set of initial noises and every pixel, between the solver's samples on a grid and a
tight reference solve of the probability-flow ODE from the same initial noise (EDM Heun on a
fine Karras grid, Karras et al. 2022 Alg. 1),

    E(sigma_0 > ... > sigma_n) = sqrt( mean_{i, pixels} (x_i(grid) - x_i(ref))^2 ).

The grid is parameterised so that every parameter vector gives a valid grid (``LogSigmaSchedule``):
``sigma_0`` is kept (so the initial points of solver and reference coincide), the interior nodes
are strictly decreasing by construction (softmax increments in log sigma), and the last positive
node may rise from the model's ``sigma_min`` by up to half the log range.  The start is the best
Karras grid (Eq. 5) over ``rho`` in ``rhos`` on the same samples, and the search is derivative-free
(scipy Nelder-Mead or Powell) on that fixed sample set, so the objective is deterministic.  This is
the "optimise the schedule on a few samples" idea of Align Your Steps (Sabour et al. 2024), with the
pathwise error to a reference in place of their KL upper bound.

Grid files (``-o SOLVER.grid=@grid.json``) are JSON: ``sigmas`` (decreasing, a trailing 0 means the
last step lands on sigma = 0), and what they were tuned for (model, solver, nfe, objective, command).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .io import atomic_write_json
from .models.base import Model
from .sampling import sample
from .solvers.base import Solver, get_solver

__all__ = [
    "GRID_FILE_FORMAT", "LogSigmaSchedule", "TuneResult", "pathwise_error", "reference_samples", "tune_grid",
    "save_grid_file", "load_grid_file", "check_grid_fits", "METHODS",
]

GRID_FILE_FORMAT = "solverzoo-grid/1"
METHODS = ("nelder-mead", "powell")
REFERENCE_SOLVER = "heun"


def reference_samples(model: Model, sigma_max: float, *, num_samples: int, seed: int, steps: int = 200,
                      batch_size: int | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """The probability-flow ODE solved tightly from the same initial noise as any deterministic
    solver starting at ``sigma_max`` (sample i's noise is seeded by (seed, i)): EDM Heun,
    ``steps`` steps of the Karras rho = 7 grid down to the model's sigma_min, then sigma = 0."""
    solver = get_solver(REFERENCE_SOLVER, grid="karras", final="zero", grid_options={"sigma_max": float(sigma_max)})
    return sample(model, solver, steps=steps, num_samples=num_samples, seed=seed, batch_size=batch_size,
                  dtype=dtype).samples


def pathwise_error(samples: Tensor, reference: Tensor) -> float:
    """RMS over samples and pixels of ``samples - reference`` (paired by initial noise)."""
    if samples.shape != reference.shape:
        raise ValueError(f"samples {tuple(samples.shape)} and reference {tuple(reference.shape)} differ in shape")
    value = float((samples.double() - reference.double()).square().mean().sqrt())
    return value if math.isfinite(value) else math.inf


class LogSigmaSchedule:
    """Parameters -> a valid grid of ``nodes`` positive sigmas from ``sigma_max`` down.

    ``theta = (logits_1 .. logits_{nodes-2}, u)``: the log-sigma increments are
    ``softmax(0, logits) * (log sigma_max - log sigma_last)`` (the first logit is pinned at 0,
    softmax being shift invariant), and ``log sigma_last = log sigma_min + (log sigma_max -
    log sigma_min) u^2 / (2 (1 + u^2))`` (u = 0: the model's sigma_min; at most halfway up).
    With ``free_end=False`` the last node stays at sigma_min and u is not a parameter.
    """

    def __init__(self, nodes: int, sigma_min: float, sigma_max: float, free_end: bool = True):
        if nodes < 2:
            raise ValueError(f"a tuned grid needs at least two positive sigmas, got {nodes}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.nodes, self.free_end = int(nodes), bool(free_end)
        self.log_min, self.log_max = math.log(sigma_min), math.log(sigma_max)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    @property
    def size(self) -> int:
        return self.nodes - 2 + int(self.free_end)

    def sigmas(self, theta: Sequence[float]) -> list[float]:
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.size,):
            raise ValueError(f"expected {self.size} parameters, got shape {theta.shape}")
        logits = np.concatenate([[0.0], theta[: self.nodes - 2]])
        log_last = self.log_min
        if self.free_end:
            u2 = float(theta[-1]) ** 2
            log_last += (self.log_max - self.log_min) * 0.5 * u2 / (1.0 + u2)
        weights = np.exp(logits - logits.max())
        steps = weights / weights.sum() * (self.log_max - log_last)
        log_sigma = self.log_max - np.concatenate([[0.0], np.cumsum(steps)])
        sigma = np.exp(log_sigma)
        sigma[0], sigma[-1] = self.sigma_max, math.exp(log_last)
        return sigma.tolist()

    def theta_of(self, sigmas: Sequence[float]) -> np.ndarray:
        """Parameters of a decreasing positive grid with the same first node (the inverse map)."""
        s = np.asarray(sigmas, dtype=np.float64)
        if len(s) != self.nodes or not (s[1:] < s[:-1]).all() or s[-1] <= 0:
            raise ValueError(f"need {self.nodes} strictly decreasing positive sigmas, got {list(s)}")
        increments = -np.diff(np.log(s))
        logits = np.log(increments / increments[0])[1:]
        if not self.free_end:
            return logits
        frac = (math.log(s[-1]) - self.log_min) / (self.log_max - self.log_min)
        if not 0 <= frac < 0.5:
            raise ValueError(f"sigma_last {s[-1]} is outside the tunable range")
        return np.concatenate([logits, [math.sqrt(2 * frac / (1 - 2 * frac))]])


@dataclass
class TuneResult:
    """A tuned grid and how it was found."""

    sigmas: list[float]  # the tuned grid (a trailing 0 for final='zero')
    objective_before: float  # pathwise error of the start grid (the best Karras rho)
    objective_after: float
    start: str  # e.g. "karras(rho=5)"
    baselines: dict[str, float]  # pathwise error of each Karras rho and of the solver's default grid
    evaluations: int
    seconds: float
    reference_error: float  # RMS distance of the reference to a half-as-fine reference (its own accuracy)
    details: dict[str, Any] = field(default_factory=dict)


def _run(model: Model, solver: Solver, sigmas: list[float], *, num_samples: int, seed: int,
         batch_size: int | None, dtype: torch.dtype) -> Tensor:
    built = solver.with_options(grid=list(sigmas))
    result = sample(model, built, steps=len(sigmas) - 1, num_samples=num_samples, seed=seed,
                    batch_size=batch_size, dtype=dtype)
    return result.samples


def tune_grid(model: Model, solver: str | Solver, nfe: int, *, num_samples: int = 64, seed: int = 0,
              reference_steps: int = 200, method: str = "nelder-mead", max_evals: int = 300,
              rhos: Sequence[float] = (3.0, 5.0, 7.0, 9.0), free_end: bool = True, batch_size: int | None = None,
              dtype: torch.dtype = torch.float32,
              on_eval: Callable[[int, float], None] | None = None) -> TuneResult:
    """Minimise the pathwise error of ``solver`` at ``nfe`` over its step schedule (module doc).

    ``solver`` must be deterministic (an ODE solver): a stochastic solver's error to a reference
    depends on its noise path, not on the schedule alone.  The result's ``sigmas`` fit exactly
    this NFE budget (``solver.steps_for_nfe(nfe)`` steps).  ``dtype``: float32 by default (1.5x
    faster than float64 on the CPU; its rounding is far below the errors being compared).
    """
    from scipy.optimize import minimize

    solver = get_solver(solver)
    if solver.stochastic:
        raise ValueError(f"tune-grid minimises the pathwise error to a reference ODE solve, which needs a "
                         f"deterministic solver; {solver.info.name!r} is stochastic (kind 'sde')")
    if solver.adaptive:
        raise ValueError(f"solver {solver.info.name!r} chooses its own steps; there is no grid to tune")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples}")
    if int(max_evals) != max_evals or max_evals < 1:
        raise ValueError(f"max_evals must be a positive integer, got {max_evals}")
    if int(reference_steps) != reference_steps or reference_steps < 4:
        raise ValueError(f"reference_steps must be an integer >= 4, got {reference_steps}")
    steps = solver.steps_for_nfe(nfe)
    default = solver.make_grid(model.process, steps)
    final = default.final
    positive = [s for s in default.sigmas() if s > 0]
    sigma_max = positive[0]
    sigma_min = float(model.process.sigma_min)
    tail = [0.0] if final == "zero" else []
    schedule = LogSigmaSchedule(len(positive), sigma_min, sigma_max, free_end=free_end)
    start_time = time.perf_counter()

    fine = reference_samples(model, sigma_max, num_samples=num_samples, seed=seed, steps=reference_steps,
                             batch_size=batch_size, dtype=dtype)
    coarse = reference_samples(model, sigma_max, num_samples=num_samples, seed=seed, steps=reference_steps // 2,
                               batch_size=batch_size, dtype=dtype)
    reference_error = pathwise_error(coarse, fine)

    evaluations = 0
    best: dict[str, Any] = {"value": math.inf, "sigmas": None}

    def error_of(sigmas: list[float]) -> float:
        nonlocal evaluations
        evaluations += 1
        try:
            value = pathwise_error(_run(model, solver, sigmas + tail, num_samples=num_samples, seed=seed,
                                        batch_size=batch_size, dtype=dtype), fine)
        except ValueError:  # e.g. nodes too close to be strictly decreasing in float64
            value = math.inf
        if value < best["value"]:
            best.update(value=value, sigmas=sigmas + tail)
        if on_eval is not None:
            on_eval(evaluations, best["value"])
        return value

    baselines: dict[str, float] = {}
    starts: dict[str, list[float]] = {}
    for rho in rhos:
        ramp = np.linspace(sigma_max ** (1 / rho), sigma_min ** (1 / rho), len(positive))
        sigmas = (ramp**rho).tolist()
        sigmas[0], sigmas[-1] = sigma_max, sigma_min
        name = f"karras(rho={rho:g})"
        baselines[name], starts[name] = error_of(sigmas), sigmas
    is_new = all(not np.allclose(positive, known, rtol=1e-12, atol=0) for known in starts.values())
    if is_new and sigma_min <= positive[-1] < math.sqrt(sigma_min * sigma_max):  # inside the tunable range
        name = f"default {default.name}"
        baselines[name], starts[name] = error_of(positive), positive
    start = min(baselines, key=baselines.get)
    before = baselines[start]

    theta0 = schedule.theta_of(starts[start])
    if schedule.size > 0:
        objective = lambda theta: error_of(schedule.sigmas(theta))  # noqa: E731
        budget = max(1, int(max_evals) - evaluations)
        if method == "nelder-mead":
            simplex = np.vstack([theta0] + [theta0 + 0.5 * e for e in np.eye(schedule.size)])
            minimize(objective, theta0, method="Nelder-Mead",
                     options={"maxfev": budget, "initial_simplex": simplex, "adaptive": schedule.size > 4,
                              "xatol": 1e-4, "fatol": 1e-7})
        else:
            minimize(objective, theta0, method="Powell",
                     options={"maxfev": budget, "direc": 0.5 * np.eye(schedule.size), "xtol": 1e-3, "ftol": 1e-6})
    tuned = best["sigmas"]
    return TuneResult(
        sigmas=[float(s) for s in tuned], objective_before=before, objective_after=best["value"], start=start,
        baselines=baselines, evaluations=evaluations, seconds=time.perf_counter() - start_time,
        reference_error=reference_error,
        details={"steps": steps, "final": final, "method": method, "free_end": free_end,
                 "parameters": schedule.size, "num_samples": int(num_samples), "seed": int(seed),
                 "reference": {"solver": REFERENCE_SOLVER, "grid": "karras(rho=7)", "steps": int(reference_steps),
                               "nfe": 2 * int(reference_steps) - 1}},
    )


# ------------------------------------------------------------------------------------------ files
def save_grid_file(path: str | os.PathLike, result: TuneResult, *, model: dict, solver: str, solver_options: dict,
                   nfe: int, command: str | None = None) -> dict:
    """Write a tuned grid as JSON (the format :func:`load_grid_file` reads); returns the record."""
    record = {
        "format": GRID_FILE_FORMAT,
        "sigmas": result.sigmas,
        "model": model,
        "solver": solver,
        "solver_options": solver_options,
        "nfe": int(nfe),
        "steps": len(result.sigmas) - 1,
        "objective": {
            "name": "pathwise_rms",
            "description": "RMS over samples and pixels of the distance to a reference ODE solve from the same noise",
            "before": result.objective_before,
            "after": result.objective_after,
            "start": result.start,
            "baselines": result.baselines,
            "reference_error": result.reference_error,
        },
        "evaluations": result.evaluations,
        "seconds": result.seconds,
        **result.details,
        "command": command,
    }
    atomic_write_json(path, record)
    return record


def load_grid_file(path: str | os.PathLike) -> tuple[list[float], dict]:
    """``(sigmas, record)`` from a grid file; ValueError naming the problem for a missing file,
    invalid JSON, or sigmas that are not a decreasing list of at least two non-negative numbers."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"grid file {path!r} does not exist (write one with 'solverzoo tune-grid --out {path}')")
    try:
        with open(path) as fh:
            record = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"grid file {path!r} is not valid JSON ({err})") from None
    if isinstance(record, list):
        record = {"sigmas": record}
    if not isinstance(record, dict) or "sigmas" not in record:
        raise ValueError(f"grid file {path!r} has no 'sigmas' list (expected a JSON object with a 'sigmas' "
                         f"key, as 'solverzoo tune-grid' writes, or a bare JSON list of sigmas)")
    sigmas = record["sigmas"]
    if (not isinstance(sigmas, list) or len(sigmas) < 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sigmas)):
        raise ValueError(f"grid file {path!r}: 'sigmas' must be a list of at least two numbers, got {sigmas!r}")
    sigmas = [float(v) for v in sigmas]
    if not all(math.isfinite(v) and v >= 0 for v in sigmas) or not all(a > b for a, b in zip(sigmas, sigmas[1:])):
        raise ValueError(f"grid file {path!r}: 'sigmas' must be finite, non-negative and strictly decreasing, "
                         f"got {sigmas}")
    return sigmas, record


def check_grid_fits(solver: Solver, sigmas: Sequence[float], nfe: int, source: str = "the grid") -> None:
    """ValueError unless ``sigmas`` has exactly the step count ``solver`` takes at ``nfe``."""
    steps = len(sigmas) - 1
    want = solver.steps_for_nfe(nfe)
    if steps != want:
        raise ValueError(f"{source} has {steps} steps, but {solver.info.name!r} takes {want} steps at NFE {nfe}; "
                         f"tune a grid for this budget (solverzoo tune-grid --nfe {nfe}) or use the NFE the grid "
                         f"was made for")
