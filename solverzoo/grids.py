"""Step grids: the noise levels a solver visits, and what its last step does.

A :class:`Grid` holds ``steps + 1`` strictly decreasing noise levels ``sigma`` (with
their times ``t`` and scales ``s`` under the model's process).  Its ``final`` field says
what the last step does:

* ``"zero"``: the last node is sigma = 0, so the last step lands on the data (for an ODE
  solver, a step to sigma = 0 is a final denoise ``x = D(x; sigma)``);
* ``"sigma_min"``: the last node is the smallest noise level and the sample is returned
  there (score_sde style; the last stochastic step returns its mean).

Builders validate what users get wrong: sigma_min <= 0 on a log-spaced grid (log 0),
a duplicated last sigma (a zero-length step, h = 0 in lambda-based solvers), fewer than
one step, or a grid that is not strictly decreasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from .processes import FlowProcess, Process, flow_time_shift
from .registry import Registry, check_options, signature_options

__all__ = ["Grid", "GRIDS", "FINALS", "make_grid", "list_grids", "from_sigmas", "flow_shift", "diffusers_flow_times"]

FINALS = ("zero", "sigma_min")


@dataclass(frozen=True)
class Grid:
    """Noise levels of a sampling run (float64, CPU) under one process."""

    sigma: Tensor
    t: Tensor
    s: Tensor
    final: str
    name: str

    @property
    def steps(self) -> int:
        return len(self.sigma) - 1

    @property
    def lambda_(self) -> Tensor:
        """Half log-SNR -log(sigma); -inf... is never produced: +inf at sigma = 0."""
        return -torch.log(self.sigma)

    def sigmas(self) -> list[float]:
        """Python floats, for coefficient arithmetic outside the sampling loop's tensors."""
        return self.sigma.tolist()

    def describe(self) -> dict:
        return {"name": self.name, "final": self.final, "steps": self.steps, "sigma": self.sigmas()}


def _finish(process: Process, sigma: Tensor, final: str, name: str) -> Grid:
    sigma = sigma.to(torch.float64)
    if final == "zero":
        sigma = torch.cat([sigma, sigma.new_zeros(1)])
    elif final != "sigma_min":
        raise ValueError(f"unknown final step {final!r}; choose one of {', '.join(FINALS)}")
    if len(sigma) < 2:
        raise ValueError("a grid needs at least one step")
    if not torch.isfinite(sigma).all():
        raise ValueError(f"grid {name!r} produced non-finite sigmas: {sigma.tolist()}")
    if not (sigma[1:] < sigma[:-1]).all():
        raise ValueError(
            f"grid {name!r} is not strictly decreasing (a duplicated sigma makes a zero-length step): "
            f"{[round(v, 6) for v in sigma.tolist()]}"
        )
    if sigma[-1] < 0:
        raise ValueError(f"grid {name!r} has a negative sigma {float(sigma[-1])}")
    t = process.t_of_sigma(sigma.clamp_min(0))
    if final == "zero":
        # sigma = 0 is outside the range of some processes' time (VE: t = -inf); s there is s(t->0).
        t[-1] = 0.0 if process.sigma(torch.tensor(0.0, dtype=torch.float64)) == 0 else float("-inf")
    s = process.s(t.clamp_min(0) if final == "zero" else t)
    return Grid(sigma=sigma, t=t, s=s, final=final, name=name)


def _range(process: Process, sigma_min: float | None, sigma_max: float | None) -> tuple[float, float]:
    lo = process.sigma_min if sigma_min is None else float(sigma_min)
    hi = process.sigma_max if sigma_max is None else float(sigma_max)
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={lo}, sigma_max={hi}")
    return lo, hi


def _nodes(steps: int, final: str) -> int:
    """Nodes before the optional appended zero: ``steps`` for final='zero', else steps+1."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    return int(steps) if final == "zero" else int(steps) + 1


def _spaced(n: int, start: float, stop: float) -> Tensor:
    """n points from start to stop (n == 1 gives [start])."""
    return torch.linspace(start, stop, n, dtype=torch.float64) if n > 1 else torch.tensor([start], dtype=torch.float64)


def _exact_ends(sigma: Tensor, hi: float, lo: float) -> Tensor:
    """Set the first and last sigma to ``hi`` and ``lo`` exactly (a transform and its inverse, e.g.
    exp(log(x)) or tan(atan(x)), can move them by an ulp)."""
    sigma[0] = hi
    if len(sigma) > 1:
        sigma[-1] = lo
    return sigma


def karras(process: Process, steps: int, final: str = "zero", sigma_min: float | None = None,
           sigma_max: float | None = None, rho: float = 7.0) -> Grid:
    """Karras et al. 2022, Eq. (5): sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho."""
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    lo, hi = _range(process, sigma_min, sigma_max)
    ramp = _spaced(_nodes(steps, final), hi ** (1 / rho), lo ** (1 / rho))
    return _finish(process, ramp**rho, final, f"karras(rho={rho:g})")


def geometric(process: Process, steps: int, final: str = "zero", sigma_min: float | None = None,
              sigma_max: float | None = None) -> Grid:
    """Geometric sigmas (score_sde VE, Song et al. 2021 Eq. 31): log sigma uniform."""
    lo, hi = _range(process, sigma_min, sigma_max)
    # math.log: torch.tensor(python float) would be float32 and move the endpoints by ~1e-7
    log_sigma = _spaced(_nodes(steps, final), math.log(hi), math.log(lo))
    return _finish(process, _exact_ends(torch.exp(log_sigma), hi, lo), final, "geometric")


def uniform_lambda(process: Process, steps: int, final: str = "zero", sigma_min: float | None = None,
                   sigma_max: float | None = None) -> Grid:
    """Uniform half log-SNR lambda = -log sigma (DPM-Solver's logSNR grid). In the
    sigma-only frame this is the geometric grid; it is listed under its own name
    because papers quote it that way."""
    grid = geometric(process, steps, final, sigma_min, sigma_max)
    return Grid(grid.sigma, grid.t, grid.s, grid.final, "uniform_lambda")


def uniform_t(process: Process, steps: int, final: str = "zero", t_min: float | None = None,
              t_max: float | None = None) -> Grid:
    """Uniform in the process's own time (score_sde: linspace(T, eps, N); Song et al. 2021).
    On VE this is the geometric grid; on VP the DDPM-style linear-beta schedule."""
    lo = process.t_min if t_min is None else float(t_min)
    hi = process.t_max if t_max is None else float(t_max)
    if not lo < hi:
        raise ValueError(f"need t_min < t_max, got t_min={lo}, t_max={hi}")
    t = _spaced(_nodes(steps, final), hi, lo)
    return _finish(process, process.sigma(t), final, "uniform_t")


def exponential(process: Process, steps: int, final: str = "zero", sigma_min: float | None = None,
                sigma_max: float | None = None) -> Grid:
    """k-diffusion's ``get_sigmas_exponential``: log sigma uniform (the geometric grid under its
    k-diffusion name)."""
    grid = geometric(process, steps, final, sigma_min, sigma_max)
    return Grid(grid.sigma, grid.t, grid.s, grid.final, "exponential")


def polyexponential(process: Process, steps: int, final: str = "zero", sigma_min: float | None = None,
                    sigma_max: float | None = None, rho: float = 1.0) -> Grid:
    """k-diffusion's ``get_sigmas_polyexponential``: log sigma polynomial in the ramp,
    log sigma_i = log smin + (1 - i/(n-1))^rho (log smax - log smin); rho = 1 is the exponential grid."""
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    lo, hi = _range(process, sigma_min, sigma_max)
    ramp = _spaced(_nodes(steps, final), 1.0, 0.0) ** rho
    sigma = _exact_ends(torch.exp(ramp * (math.log(hi) - math.log(lo)) + math.log(lo)), hi, lo)
    return _finish(process, sigma, final, f"polyexponential(rho={rho:g})")


def vp(process: Process, steps: int, final: str = "zero", beta_d: float = 19.9, beta_min: float = 0.1,
       eps_s: float = 1e-3) -> Grid:
    """k-diffusion's ``get_sigmas_vp``: t uniform from 1 to eps_s and the continuous VP schedule
    sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) (Song et al. 2021), whatever the model's
    process; on the default VP process this is its ``uniform_t`` grid."""
    if not (beta_d > 0 and beta_min >= 0 and 0 < eps_s < 1):
        raise ValueError(f"vp grid needs beta_d > 0, beta_min >= 0 and 0 < eps_s < 1; got {beta_d}, {beta_min}, {eps_s}")
    t = _spaced(_nodes(steps, final), 1.0, float(eps_s))
    return _finish(process, torch.sqrt(torch.expm1(beta_d * t**2 / 2 + beta_min * t)), final, "vp")


def quadratic(process: Process, steps: int, final: str = "zero", t_min: float | None = None,
              t_max: float | None = None) -> Grid:
    """DPM-Solver's ``time_quadratic`` (Lu et al. 2022; DDIM's quadratic skip, Song et al. 2021):
    sqrt(t) uniform from sqrt(t_max) to sqrt(t_min) in the process's own time (on EDM, t = sigma)."""
    lo = process.t_min if t_min is None else float(t_min)
    hi = process.t_max if t_max is None else float(t_max)
    if not 0 <= lo < hi:
        raise ValueError(f"need 0 <= t_min < t_max, got t_min={lo}, t_max={hi}")
    t = _spaced(_nodes(steps, final), math.sqrt(hi), math.sqrt(lo)) ** 2
    return _finish(process, process.sigma(t), final, "quadratic")


def kl_optimal(process: Process, steps: int, final: str = "zero", sigma_min: float | None = None,
               sigma_max: float | None = None) -> Grid:
    """The KL-optimal schedule of Align Your Steps (Sabour, Fidler, Kreis 2024, "Align Your Steps:
    Optimizing Sampling Schedules in Diffusion Models", ICML; arXiv:2404.14507, Sec. 3.1): for data
    N(0, I) in the EDM frame the schedule minimising the KL upper bound of the discretisation is
    uniform in arctan(sigma),

        sigma_i = tan((1 - i/(n-1)) atan(sigma_max) + i/(n-1) atan(sigma_min)),   i = 0 .. n-1,

    which is geometric well below sigma = 1 and well above it, and spaces the steps uniformly in
    the angle atan(sigma) around the data scale (ComfyUI's ``kl_optimal`` scheduler)."""
    lo, hi = _range(process, sigma_min, sigma_max)
    angle = _spaced(_nodes(steps, final), math.atan(hi), math.atan(lo))
    return _finish(process, _exact_ends(torch.tan(angle), hi, lo), final, "kl_optimal")


def diffusers_flow_times(steps: int, shift: float = 1.0, mu: float | None = None,
                         time_shift_type: str = "exponential", num_train_timesteps: int = 1000) -> Tensor:
    """The flow times (``sigmas`` without the appended 0) of diffusers'
    ``FlowMatchEulerDiscreteScheduler.set_timesteps(steps[, mu=mu])`` (no Karras / exponential / beta
    sigmas, no ``shift_terminal``), computed with the same float32 / float64 steps so that the values
    are the scheduler's to the bit, returned as float64:

    the training sigmas linspace(1, N, N)[::-1] / N (float32), shifted unless dynamic shifting is on,
    give sigma_max = 1 and sigma_min; set_timesteps spaces ``steps`` values linearly from
    N sigma_max to N sigma_min (float64), divides by N, applies the shift again (the plain shift, or
    the time shift with ``mu`` when ``mu`` is given: ``use_dynamic_shifting``) and rounds to float32.
    """
    import numpy as np

    n_train = int(num_train_timesteps)
    train = torch.from_numpy(np.linspace(1, n_train, n_train, dtype=np.float32)[::-1].copy()) / n_train
    if mu is None:
        train = shift * train / (1 + (shift - 1) * train)
    t = np.linspace(float(train[0].item()) * n_train, float(train[-1].item()) * n_train, int(steps)) / n_train
    if mu is None:
        t = shift * t / (1 + (shift - 1) * t)
    elif time_shift_type == "exponential":
        t = math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** 1.0)
    elif time_shift_type == "linear":
        t = mu / (mu + (1 / t - 1) ** 1.0)
    else:
        raise ValueError(f"unknown time_shift_type {time_shift_type!r}; choose exponential or linear")
    return torch.from_numpy(np.asarray(t)).to(torch.float32).to(torch.float64)


def flow_shift(process: Process, steps: int, final: str = "zero", shift: float | None = None,
               mu: float | None = None, time_shift_type: str | None = None, t_min: float | None = None,
               t_max: float | None = None, diffusers: bool = False, num_train_timesteps: int = 1000) -> Grid:
    """The shifted uniform grid of flow-matching models (SD3, Esser et al. 2024, Sec. 5.3.2, Eq. 23;
    diffusers' ``FlowMatchEulerDiscreteScheduler``): u uniform from t_max to t_min, flow time
    t = shift u / (1 + (shift - 1) u) (or the resolution-dependent shift with ``mu``,
    solverzoo.processes.flow_time_shift), sigma = t / (1 - t) (the rectified flow in the EDM frame).

    Defaults (``shift``, ``mu``, ``time_shift_type``, ``t_min``, ``t_max``) come from the process when it
    is a :class:`~solverzoo.processes.FlowProcess` (its native grid); on another process the same flow
    times are used as a sigma grid (shift 1, the process's sigma range through t = sigma / (1 + sigma)).
    ``shift = 1`` is uniform in t.

    ``diffusers=True`` reproduces ``FlowMatchEulerDiscreteScheduler.set_timesteps(steps)`` to the bit
    (:func:`diffusers_flow_times`, with its float32 rounding and its twice-shifted smallest time) for
    final='zero' (diffusers appends t = 0); its first time t = 1 (sigma = inf, pure noise, outside the
    EDM frame) becomes the process's largest time shift(t_max).
    """
    flow = isinstance(process, FlowProcess)
    shift = float(shift if shift is not None else (process.shift if flow else 1.0))
    mu = mu if mu is not None else (process.mu if flow else None)
    time_shift_type = time_shift_type or (process.time_shift_type if flow else "exponential")
    if not shift > 0:
        raise ValueError(f"flow_shift needs shift > 0, got {shift}")
    lo = float(t_min) if t_min is not None else (process.t_min if flow else process.sigma_min / (1 + process.sigma_min))
    hi = float(t_max) if t_max is not None else (process.t_max if flow else process.sigma_max / (1 + process.sigma_max))
    if not 0 < lo < hi < 1:
        raise ValueError(f"flow_shift needs 0 < t_min < t_max < 1, got t_min={lo}, t_max={hi}")
    n = _nodes(steps, final)
    top = flow_time_shift(hi, shift, mu, time_shift_type)
    if diffusers:
        if final != "zero":
            raise ValueError("flow_shift with diffusers=True reproduces diffusers' schedule, which ends at t = 0: "
                             "use final='zero'")
        t = diffusers_flow_times(n, shift, mu, time_shift_type, num_train_timesteps)
        t = torch.where(t >= 1, top, t)
    else:
        t = flow_time_shift(_spaced(n, hi, lo), shift, mu, time_shift_type)
    sigma = t / (1 - t)
    label = f"flow_shift(shift={shift:g})" if mu is None else f"flow_shift(mu={mu:g}, {time_shift_type})"
    return _finish(process, sigma, final, label + (", diffusers" if diffusers else ""))


def from_sigmas(process: Process, sigmas: Sequence[float], final: str | None = None) -> Grid:
    """An explicit list of sigmas.  A trailing 0 means final='zero'."""
    sigma = torch.tensor([float(v) for v in sigmas], dtype=torch.float64)
    if len(sigma) == 0:
        raise ValueError("an explicit grid needs at least two sigmas")
    ends_at_zero = bool(sigma[-1] == 0)
    if final is None:
        final = "zero" if ends_at_zero else "sigma_min"
    if ends_at_zero:
        if final != "zero":
            raise ValueError("the explicit sigmas end in 0, which is final='zero'")
        sigma = sigma[:-1]
    return _finish(process, sigma, final, "explicit")


#: grid builders ``builder(process, steps, final, **options) -> Grid`` by name
GRIDS: Registry[Callable[..., Grid]] = Registry("grid")
for _builder in (karras, geometric, uniform_lambda, uniform_t, exponential, polyexponential, vp, quadratic, kl_optimal,
                 flow_shift):
    GRIDS.register(_builder.__name__, _builder)
del _builder


def list_grids() -> list[str]:
    return GRIDS.names()


def make_grid(name: str, process: Process, steps: int, final: str = "zero", **options) -> Grid:
    """Build a grid by name; ``options`` go to the builder (``rho``, ``sigma_min``...)."""
    builder = GRIDS.lookup(name)
    check_options("grid", name, options, signature_options(builder, skip=2, exclude=("final",)))
    return builder(process, steps, final=final, **options)
