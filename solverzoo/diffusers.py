"""``SolverzooScheduler``: every zoo solver as a diffusers scheduler, inside diffusers' own loop.

    from diffusers import DDPMPipeline
    from solverzoo.diffusers import SolverzooScheduler

    pipe = DDPMPipeline.from_pretrained(folder)
    pipe.scheduler = SolverzooScheduler.from_config(pipe.scheduler.config, solver="dpmpp_2m")
    images = pipe(num_inference_steps=10).images

This module needs diffusers (``import solverzoo`` does not import it).

Schedules.  A DDPM-type config (discrete betas: ``num_train_timesteps``, ``beta_schedule``,
``trained_betas``, as every ``KarrasDiffusionSchedulers`` class but EDM's has) is the
:class:`~solverzoo.processes.DiscreteVPProcess` of its ``alphas_cumprod``, the process under which
:mod:`solverzoo.models.adapters` puts such networks: a timestep is the fractional index t(sigma), log
sigma linear between neighbouring discrete sigmas (k-diffusion's ``DiscreteEpsDDPMDenoiser``), and the
network's output (``prediction_type`` epsilon, sample or v_prediction) becomes the denoiser
D(x_hat; sigma) by :func:`~solverzoo.models.adapters.ddpm_denoised`.  The betas are computed by
diffusers' ``DDPMScheduler``.  The grid is the solver's own (its ``grid`` / ``grid_options`` options;
``set_timesteps(sigmas=...)`` gives one explicitly), so ``num_inference_steps`` is the solver's step
count.  Sampling keys of other schedulers (``timestep_spacing``, ``use_karras_sigmas``, ``clip_sample``,
thresholding, ...) do not apply and are dropped by ``from_config``.

Flow matching.  A ``FlowMatchEulerDiscreteScheduler`` config (``shift``; ``use_dynamic_shifting`` with
``base_shift``, ``max_shift``, ``base_image_seq_len``, ``max_image_seq_len`` and ``time_shift_type``, the
resolution-dependent shift whose ``mu`` the pipeline passes to ``set_timesteps`` as diffusers does) is the
rectified flow x_t = (1 - t) x_0 + t n, :class:`~solverzoo.processes.FlowProcess`, built by
:func:`~solverzoo.models.adapters.flow_process_from_scheduler` (``prediction_type`` becomes
``flow_prediction``).  The network predicts the velocity v = n - x_0 (as the FlowMatch schedulers assume)
and its output becomes D by :func:`~solverzoo.models.adapters.flow_denoised`.  Unless ``solver_options``
name a grid, the grid is ``flow_shift`` with ``diffusers=True``: the schedule of
``FlowMatchEulerDiscreteScheduler.set_timesteps`` to the bit, except its first node t = 1 (sigma = inf,
pure noise, outside the solvers' frame), which is the process's largest time shift(t_max) (a solver
that ends at sigma_min gets the same shifted grid without the diffusers rounding).  ``t_max`` (default
1 - 1e-3; 1 - 1e-12 makes the first step diffusers' to ~1e-12) is a config key.  ``timesteps`` are in
diffusers' units t * num_train_timesteps, and ``set_timesteps(sigmas=...)`` takes diffusers' unshifted
flow times (the config's shift applied, t = 1 read as t_max, 0 appended), as the Flux pipelines pass them.
Configs the scheduler cannot reproduce (``shift_terminal``, ``invert_sigmas``, ``stochastic_sampling``,
Karras / exponential / beta sigmas; other FlowMatch classes; ``use_flow_sigmas`` of the multistep
schedulers) are refused naming what is supported.

One ``step`` per model call.  ``set_timesteps`` finds the noise levels at which the solver calls its
model by two dry runs with different stand-in denoisers, samples and noise: they must agree (the
levels of a fixed-grid solver are computed from its grid alone).  ``timesteps`` lists one entry per
call, so a two-call solver lists both levels of each step, as diffusers' ``HeunDiscreteScheduler``
does, and ``len(timesteps)`` is the NFE.  The solver runs in a worker thread that stops at each model
call: ``step`` hands it the model output and returns, as ``prev_sample``, the point of its next model
call (after the last call, the solver's result).  The solver keeps its own state between calls, so
the ``sample`` given to ``step`` must be the ``prev_sample`` the previous step returned.

Units.  ``sample`` and ``prev_sample`` are in the network's own units, x = s x_hat with
s = 1 / sqrt(1 + sigma^2) = sqrt(abar) (the convention of ``DDPMScheduler``, ``DDIMScheduler`` and
``DPMSolverMultistepScheduler``), the solvers' x_hat frame (Karras et al. 2022, Sec. 4) being
x_hat = x / s.  So ``scale_model_input`` is the identity and ``init_noise_sigma = s_0 c`` where the
solver starts from x_hat = c z (c = sigma_0; 1 / s_0 for the score_sde samplers, whose VP prior is
x = z): the scheduler is exact in pipelines that scale their latents by ``init_noise_sigma`` and call
``scale_model_input``, and right in those that do neither (``DDPMPipeline`` starts from z and feeds its
sample to the network as it is: x_hat_0 = z / s_0 differs from sigma_0 z by the factor
sqrt(1 + 1 / sigma_0^2), 1 + 2e-5 at sigma_max = 157 of the usual 1000-step linear betas), where a
scheduler in EulerDiscreteScheduler's units (x_hat, ``init_noise_sigma = sigma_max``) starts ~157 times
too small and feeds the network an unscaled input.  The last ``prev_sample`` is the solver's result in
data units (s = 1 at sigma = 0).  On the flow process the same convention reads x = x_t = s x_hat with
s = 1 - t = 1 / (1 + sigma), the sample FlowMatch schedulers and the network see, and
``init_noise_sigma = s_0 sigma_0 = t_0`` (1 in diffusers, whose first node is t = 1); pipelines that start
from unscaled noise (SD3, Flux) start at x_hat_0 = z / s_0, a factor 1 / t_0 from sigma_0 z.

Noise.  A stochastic solver draws its noise with diffusers' ``randn_tensor`` from the ``generator``
given to the ``step`` call that resumes it (the global generator if None).  A list of generators, one
per sample, gives each sample its own noise path whatever the batch, as in diffusers' pipelines;
``solverzoo.noise.NoiseSource(seed, indices, PATH).generators`` gives solverzoo's per-sample streams, with
which the scheduler reproduces ``solverzoo.sample``'s noise paths.

Refused with a ValueError naming the reason: adaptive solvers (their levels follow the sample),
solvers whose levels or first model call depend on the sample (heun / euler with ``s_churn > 0`` on the
first step add noise before their first call), and filters (``pds``, ``tdas``, ``preconditioner=``: they
are estimated from the model's data).  Schedules without discrete betas other than the flow-matching
ones above (EDM, VE) are refused by ``from_config`` naming what is supported.
"""

from __future__ import annotations

import contextlib
import inspect
import queue
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import diffusers
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from .grids import Grid
from .models.adapters import PREDICTION_TYPES, ddpm_denoised, flow_denoised, flow_process_from_scheduler
from .models.base import CountingDenoiser, Model
from .processes import DiscreteVPProcess, FlowProcess, Process
from .sampling import build_solver
from .solvers.base import SOLVERS, Context, Solver, declared_options

__all__ = ["BETA_SCHEDULES", "FLOW_KEYS", "FLOW_PREDICTION", "FLOW_SCHEDULER", "SolverzooScheduler",
           "SolverzooSchedulerOutput"]

#: the ``beta_schedule`` values diffusers' DDPMScheduler computes betas for
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "laplace", "sigmoid")
#: the flow-matching scheduler whose configs are read (its keys other than FLOW_KEYS must be off)
FLOW_SCHEDULER = "FlowMatchEulerDiscreteScheduler"
#: the FlowMatchEulerDiscreteScheduler keys the scheduler reproduces
FLOW_KEYS = ("num_train_timesteps", "shift", "use_dynamic_shifting", "base_shift", "max_shift", "base_image_seq_len",
             "max_image_seq_len", "time_shift_type")
#: the prediction_type of a flow-matching scheduler: the velocity v = n - x_0 (diffusers' name for it)
FLOW_PREDICTION = "flow_prediction"
_SUPPORTED = ("DDPM-type configs with discrete betas (num_train_timesteps, beta_schedule / trained_betas, "
              "prediction_type epsilon, sample or v_prediction), such as those of "
              + ", ".join(e.name for e in KarrasDiffusionSchedulers if e.name != "EDMEulerScheduler")
              + f", and {FLOW_SCHEDULER} configs (velocity prediction; {', '.join(FLOW_KEYS)})")
_BETA_KEYS = ("beta_schedule", "trained_betas", "beta_start", "beta_end")
_F64 = torch.float64
#: the batch the dry runs sample (two rows: a call's sigma must be the same for every row)
_PROBE_SHAPE = (2, 1, 4, 4)


@dataclass
class SolverzooSchedulerOutput(BaseOutput):
    """What ``step`` returns: ``prev_sample``, the point of the solver's next model call in the
    network's units (after the last call, the sample), and ``pred_original_sample``, the denoiser's
    estimate D of x_0 from this step's model output."""

    prev_sample: Tensor
    pred_original_sample: Tensor | None = None


# ----------------------------------------------------------------------------- schedules
def _ddpm_process(num_train_timesteps: int, beta_start: float, beta_end: float, beta_schedule: str,
                  trained_betas) -> DiscreteVPProcess:
    """The discrete VP process of a DDPM-type config; betas computed by diffusers' DDPMScheduler."""
    if trained_betas is None and beta_schedule not in BETA_SCHEDULES:
        raise ValueError(f"unknown beta_schedule {beta_schedule!r}; choose one of {', '.join(BETA_SCHEDULES)} "
                         f"(or give trained_betas)")
    ddpm = diffusers.DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_start=beta_start,
                                   beta_end=beta_end, beta_schedule=beta_schedule, trained_betas=trained_betas)
    return DiscreteVPProcess(ddpm.alphas_cumprod.to(_F64))


def _flow_process(config: Mapping, mu: float | None = None, t_max: float | None = None) -> FlowProcess:
    """The flow process of a FlowMatchEulerDiscreteScheduler-type config (``mu`` for dynamic shifting: a
    stand-in, the config's ``base_shift``, until ``set_timesteps`` gives the pipeline's)."""
    if config.get("use_dynamic_shifting") and mu is None:
        mu = float(config.get("base_shift", 0.5))
    return flow_process_from_scheduler(dict(config), mu=mu if config.get("use_dynamic_shifting") else None,
                                       t_max=t_max)


def _check_source(config: Any) -> tuple[Tensor | None, bool]:
    """Refuse a config whose schedule this scheduler cannot reproduce, naming what it supports: flow
    matching other than FlowMatchEulerDiscreteScheduler's plain shifted schedule (other FlowMatch classes,
    its Karras / exponential / beta sigmas, ``shift_terminal``, ``invert_sigmas``, ``stochastic_sampling``;
    ``use_flow_sigmas`` / ``flow_prediction`` of the multistep schedulers), and every schedule without
    discrete betas (EDM, VE), known by its class (``_class_name``: built, it has no ``alphas_cumprod``) or,
    for a config without one, by keys of another scheduler and no beta keys.  Returns the named diffusers
    class's ``alphas_cumprod`` (None for other configs), which the built scheduler must reproduce, and
    whether the config is a FlowMatchEulerDiscreteScheduler one."""
    if not isinstance(config, Mapping):
        return None, False
    name = config.get("_class_name") if isinstance(config.get("_class_name"), str) else None
    own = set(inspect.signature(SolverzooScheduler.__init__).parameters)
    if name == SolverzooScheduler.__name__ or (name is None and "solver" in config
                                                and all(k.startswith("_") or k in own for k in config)):
        return None, False
    if name == FLOW_SCHEDULER or (name is None and "shift" in config and not any(k in config for k in _BETA_KEYS)):
        try:
            _flow_process(config)  # refuses the sampling options it cannot reproduce
        except ValueError as err:
            raise ValueError(f"{name or 'this flow-matching config'}: {err}; SolverzooScheduler samples "
                             f"{_SUPPORTED}") from None
        return None, True
    if ((name or "").startswith("FlowMatch") or "shift" in config or config.get("use_flow_sigmas")
            or config.get("prediction_type") == FLOW_PREDICTION):
        raise ValueError(f"{name or 'this config'} is a flow-matching schedule (x_t = (1 - t) x_0 + t n, velocity "
                         f"prediction) this scheduler does not reproduce; SolverzooScheduler samples {_SUPPORTED}")
    source = getattr(diffusers, name, None) if name else None
    if source is not None:
        try:
            built = source.from_config(config)
        except Exception as err:  # noqa: BLE001  (any constructor error: the config is unusable)
            raise ValueError(f"cannot build {name} from this config ({type(err).__name__}: {err})") from None
        if getattr(built, "alphas_cumprod", None) is None:
            raise ValueError(f"{name} has no discrete betas (alphas_cumprod); SolverzooScheduler samples "
                             f"{_SUPPORTED}")
        return torch.as_tensor(built.alphas_cumprod, dtype=_F64), False
    elif not any(key in config for key in _BETA_KEYS):
        foreign = sorted(k for k in config if not k.startswith("_") and k not in own)
        if foreign:
            raise ValueError(f"this config has no discrete betas ({', '.join(_BETA_KEYS)}) but {', '.join(foreign)}; "
                             f"SolverzooScheduler samples {_SUPPORTED}")
    return None, False


# ----------------------------------------------------------------------------- the dry run
class _StepNoise:
    """Noise for stochastic solvers: diffusers' ``randn_tensor`` from ``generator`` (set by each
    ``step`` call; a list: one generator per sample; None: torch's global generator)."""

    def __init__(self, generator: torch.Generator | list[torch.Generator] | None = None):
        self.generator = generator

    def randn_like(self, x: Tensor) -> Tensor:
        return randn_tensor(tuple(x.shape), generator=self.generator, device=x.device, dtype=x.dtype)

    @property
    def generators(self) -> list[torch.Generator]:
        """One CPU generator per sample (for solvers that seed their own Brownian paths from them)."""
        gens = self.generator if isinstance(self.generator, list) else None
        if gens is None or any(g.device.type != "cpu" for g in gens):
            raise ValueError("this solver seeds a per-sample Brownian path: pass step(..., generator=[...]) a list of "
                             "CPU torch.Generator, one per sample")
        return gens


class _Recorder(Model):
    """A stand-in model for the dry runs: a Gaussian data law's exact denoiser
    D = (v x_hat + sigma^2 mu) / (v + sigma^2), recording each call's sigma and first input."""

    def __init__(self, process: Process, mean: float, var: float):
        self.process, self.shape, self.mean, self.var = process, _PROBE_SHAPE[1:], mean, var
        self.sigmas: list[float] = []
        self.first: Tensor | None = None

    def denoise(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        if bool((sigma != sigma[0]).any()):
            raise ValueError("the solver called its model with a different sigma per sample; a diffusers timestep "
                             "is one noise level for the batch")
        if self.first is None:
            self.first = x_hat.clone()
        self.sigmas.append(float(sigma[0]))
        var = sigma.reshape(-1, *([1] * (x_hat.ndim - 1))) ** 2
        return (self.var * x_hat + var * self.mean) / (self.var + var)


@dataclass(frozen=True)
class _Plan:
    """What a dry run finds: the sigma of every model call, and the prior's scale c (x_hat_0 = c z)."""

    sigmas: tuple[float, ...]
    prior_scale: float


def _plan(solver: Solver, grid: Grid, process: Process) -> _Plan:
    """The model-call sigmas of ``solver`` on ``grid``, from two dry runs that differ in denoiser,
    initial sample and noise; ValueError where they differ, or where a first call is not at the
    initial sample."""
    name = solver.info.name
    runs, scales = [], []
    for seed, (mean, var) in enumerate(((0.0, 1.0), (0.5, 0.25))):
        gen = torch.Generator().manual_seed(seed)
        recorder = _Recorder(process, mean, var)
        ctx = Context(CountingDenoiser(recorder), grid, _StepNoise([gen] * _PROBE_SHAPE[0]) if solver.stochastic
                      else None)
        z = torch.randn(_PROBE_SHAPE, generator=gen, dtype=_F64)
        x = solver.prior(ctx, z)
        scale = float(x.flatten()[0] / z.flatten()[0])
        if not torch.allclose(x, scale * z, rtol=1e-12, atol=0):
            raise ValueError(f"solver {name!r} starts from a state that is not a multiple of the initial noise")
        with torch.no_grad():
            solver.run(ctx, x)
        if recorder.first is None:
            raise ValueError(f"solver {name!r} made no model call on this grid")
        if not torch.equal(recorder.first, x):
            raise ValueError(f"solver {name!r} moves the sample before its first model call (e.g. churn noise "
                             f"with s_churn > 0 on the first step), so diffusers' first model output would be at "
                             f"the wrong point; choose options that keep the first call at the initial sample")
        runs.append(tuple(recorder.sigmas))
        scales.append(scale)
    if runs[0] != runs[1]:
        raise ValueError(f"solver {name!r} calls its model at noise levels that depend on the sample; diffusers "
                         f"needs its timesteps before sampling")
    return _Plan(sigmas=runs[0], prior_scale=scales[0])


# ----------------------------------------------------------------------------- the worker
class _Stop(BaseException):
    """Unwinds a solver run whose sampling loop was abandoned (not an Exception: solvers do not catch it)."""


class _Relay(Model):
    """The model the solver sees in the worker thread: each call is handed to ``step``, which
    answers with the denoised output it computed from diffusers' model output."""

    def __init__(self, process: Process, shape: tuple[int, ...], run: _SolverRun):
        self.process, self.shape, self.run = process, shape, run

    def denoise(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        return self.run.wait_for_output(x_hat, sigma)


class _SolverRun:
    """One solver run in a worker thread that stops at every model call.

    After construction and after each :meth:`advance`, either ``x_hat`` / ``sigma`` hold the
    point of the pending model call, or ``result`` holds the finished sample.  The worker
    inherits the caller's grad mode, inference mode and CUDA stream."""

    def __init__(self, solver: Solver, grid: Grid, process: Process, x_hat: Tensor, noise: _StepNoise | None):
        self._replies: queue.SimpleQueue = queue.SimpleQueue()  # to the worker: denoised tensors or _Stop
        self._events: queue.SimpleQueue = queue.SimpleQueue()  # from the worker: ("call"|"done"|"error", ...)
        self.x_hat: Tensor | None = None
        self.sigma: Tensor | None = None  # shape (B,), in x_hat's dtype, as the solver's denoiser passes it
        self.result: Tensor | None = None
        ctx = Context(CountingDenoiser(_Relay(process, tuple(x_hat.shape[1:]), self)), grid, noise)
        modes = (torch.is_grad_enabled(), torch.is_inference_mode_enabled(),
                 torch.cuda.current_stream(x_hat.device) if x_hat.is_cuda else None)
        self._thread = threading.Thread(target=self._work, args=(solver, ctx, x_hat, modes), daemon=True,
                                        name=f"solverzoo-{solver.info.name}")
        self._thread.start()
        self._receive()

    def _work(self, solver: Solver, ctx: Context, x_hat: Tensor, modes) -> None:
        grad, inference, stream = modes
        try:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad), \
                    (torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()):
                result = solver.run(ctx, x_hat)
        except _Stop:
            return
        except BaseException as err:  # noqa: BLE001  (handed to the caller of step, re-raised there)
            self._events.put(("error", err, None))
            return
        self._events.put(("done", result, None))

    def wait_for_output(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        """(worker) Post a model call and wait for its denoised output."""
        self._events.put(("call", x_hat, sigma))
        reply = self._replies.get()
        if reply is _Stop:
            raise _Stop
        return reply

    def _receive(self) -> None:
        kind, value, sigma = self._events.get()
        if kind == "error":
            raise value
        if kind == "call":
            self.x_hat, self.sigma = value, sigma
        else:
            self.x_hat, self.sigma, self.result = None, None, value

    def advance(self, denoised: Tensor) -> None:
        """Answer the pending call and run the solver to its next call or to its end."""
        self._replies.put(denoised)
        self._receive()

    def stop(self) -> None:
        """Unwind an unfinished run (its loop was abandoned)."""
        if self._thread.is_alive() and self.result is None:
            self._replies.put(_Stop)
            self._thread.join()


# ----------------------------------------------------------------------------- the scheduler
class SolverzooScheduler(SchedulerMixin, ConfigMixin):
    """Any registered solverzoo solver as a diffusers scheduler (see the module docstring).

    Args:
        solver: a registered solver name (``solverzoo list``).
        solver_options: the solver's options (``{"order": 3}``, ``{"s_churn": 0.0, "grid": "karras"}``),
            checked as ``solverzoo.get_solver`` checks them.
        num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas: the discrete schedule,
            as in ``DDPMScheduler``.
        prediction_type: ``epsilon``, ``sample`` or ``v_prediction`` (discrete schedule), or
            ``flow_prediction``: the rectified flow of the flow keys below with a velocity network (set by
            ``from_config`` for FlowMatchEulerDiscreteScheduler configs).
        rescale_betas_zero_snr: must be False (zero terminal SNR puts the first level at sigma = inf).
        shift, use_dynamic_shifting, base_shift, max_shift, base_image_seq_len, max_image_seq_len,
            time_shift_type: the flow schedule, as in ``FlowMatchEulerDiscreteScheduler`` (flow_prediction only).
        t_max: the flow process's largest time, the grid's first node before the shift (None: 1 - 1e-3;
            diffusers starts at t = 1, which 1 - 1e-12 approximates to ~1e-12; flow_prediction only).
    """

    _compatibles: ClassVar[list[str]] = [e.name for e in KarrasDiffusionSchedulers
                                         if e.name != "EDMEulerScheduler"] + [FLOW_SCHEDULER]
    order = 1  # model calls per step; set per instance from the solver

    @register_to_config
    def __init__(self, solver: str = "dpmpp_2m", solver_options: dict | None = None, num_train_timesteps: int = 1000,
                 beta_start: float = 0.0001, beta_end: float = 0.02, beta_schedule: str = "linear",
                 trained_betas=None, prediction_type: str = "epsilon", rescale_betas_zero_snr: bool = False,
                 shift: float = 1.0, use_dynamic_shifting: bool = False, base_shift: float = 0.5,
                 max_shift: float = 1.15, base_image_seq_len: int = 256, max_image_seq_len: int = 4096,
                 time_shift_type: str = "exponential", t_max: float | None = None):
        if prediction_type not in (*PREDICTION_TYPES, FLOW_PREDICTION):
            raise ValueError(f"unsupported prediction_type {prediction_type!r}; choose one of "
                             f"{', '.join(PREDICTION_TYPES)} (discrete schedules) or {FLOW_PREDICTION} (flow matching)")
        if rescale_betas_zero_snr:
            raise ValueError("rescale_betas_zero_snr=True gives zero terminal SNR (sigma = inf at the last timestep), "
                             "which a solver cannot start from; use a config without it")
        if not isinstance(solver, str):
            raise TypeError(f"solver must be a registered solver name (a string), got {type(solver).__name__}")
        if solver_options is not None and not isinstance(solver_options, Mapping):
            raise TypeError(f"solver_options must be a dict of solver options, got {type(solver_options).__name__}")
        self.flow = prediction_type == FLOW_PREDICTION
        if self.flow:
            self.process: Process = _flow_process(self._flow_keys(), t_max=t_max)
        else:
            self.process = _ddpm_process(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas)
        self.solver = self._build_solver(solver, solver_options)
        probe = self._check_solver(self.solver)
        self.order = self.solver.info.calls_per_step
        self.init_noise_sigma = self._scale(probe.sigmas[0]) * probe.prior_scale  # set again by set_timesteps
        self.timesteps: Tensor | None = None
        self.sigmas: Tensor | None = None
        self.grid: Grid | None = None
        self.num_inference_steps: int | None = None
        self._plan: _Plan | None = None
        self._run_solver: Solver = self.solver
        self._noise = _StepNoise()
        self._run: _SolverRun | None = None
        self._run_finalizer: weakref.finalize | None = None
        self._prev_sample: Tensor | None = None
        self._step_index: int | None = None
        self._begin_index: int | None = None

    def _flow_keys(self) -> dict:
        """This config's FlowMatchEulerDiscreteScheduler keys."""
        return {key: self.config[key] for key in FLOW_KEYS}

    def _build_solver(self, name: str, options: Mapping | None) -> Solver:
        """The solver of ``name`` and ``options``; on the flow process without a ``grid`` option, on the
        ``flow_shift`` grid, with ``diffusers=True`` (FlowMatchEulerDiscreteScheduler's nodes) where the solver
        ends at sigma = 0 as diffusers does."""
        options = dict(options or {})
        if not self.flow or "grid" in options:
            return build_solver(name, options)
        built = build_solver(name, {**options, "grid": "flow_shift"})
        if built.final != "zero":
            return built
        grid_options = {"diffusers": True, "num_train_timesteps": self.config.num_train_timesteps,
                        **built.grid_options}
        return built.with_options(grid_options=grid_options)

    def _check_solver(self, solver: Solver) -> _Plan:
        """Refuse a solver the scheduler cannot run (checked on a short grid); its plan there."""
        name = solver.info.name
        if solver.adaptive:
            raise ValueError(f"solver {name!r} is adaptive: its model calls follow the sample, and diffusers needs "
                             f"the timesteps before sampling; choose a fixed-grid solver")
        if solver.filter_spec() is not None:
            raise ValueError(f"solver {name!r} uses filters estimated from the model's data (pds, tdas, "
                             f"preconditioner=), which a scheduler has no access to; choose a solver without them")
        solver.check_model(_Recorder(self.process, 0.0, 1.0))  # the solver's own refusals (e.g. fdm off FDM processes)
        steps = solver.fixed_steps or max(solver.info.min_steps, 3)
        return _plan(solver, solver.make_grid(self.process, steps), self.process)  # refuses x-dependent calls

    @classmethod
    def from_config(cls, config=None, return_unused_kwargs: bool = False, **kwargs):
        """diffusers' ``from_config``, refusing first a config whose schedule it cannot reproduce (no
        discrete betas and not FlowMatchEulerDiscreteScheduler's: EDM, VE; flow-matching options it does not
        reproduce), naming what is supported, and a solver option given as a keyword of its own (diffusers
        would drop it silently): solver options go in ``solver_options``.  A FlowMatchEulerDiscreteScheduler
        config gives ``prediction_type='flow_prediction'`` (module docstring)."""
        source_alphas_cumprod, flow = _check_source(config)
        if flow:
            given = kwargs.get("prediction_type", FLOW_PREDICTION)
            if given != FLOW_PREDICTION:
                raise ValueError(f"{FLOW_SCHEDULER} configs are velocity networks (prediction_type "
                                 f"{FLOW_PREDICTION!r}), got prediction_type={given!r}")
            kwargs["prediction_type"] = FLOW_PREDICTION
        own = set(inspect.signature(cls.__init__).parameters)
        stray = [key for key in kwargs if key not in own]
        if stray:
            name = kwargs.get("solver") or (config.get("solver") if isinstance(config, Mapping) else None)
            name = name or inspect.signature(cls.__init__).parameters["solver"].default
            options = declared_options(SOLVERS.lookup(name))[0] if name in SOLVERS else {}
            misplaced = [key for key in stray if key in options]
            if misplaced:
                raise ValueError(f"{', '.join(misplaced)}: options of solver {name!r} go in solver_options, e.g. "
                                 f"from_config(config, solver={name!r}, solver_options={{{misplaced[0]!r}: ...}})")
        built = super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)
        scheduler = built[0] if return_unused_kwargs else built
        if source_alphas_cumprod is not None and not torch.equal(scheduler.process.alphas_cumprod,
                                                                 source_alphas_cumprod):
            raise ValueError(f"{config['_class_name']}'s noise schedule (alphas_cumprod) differs from the one its "
                             f"beta keys give DDPMScheduler; SolverzooScheduler samples {_SUPPORTED}")
        return built

    # --- schedule -------------------------------------------------------------------------------
    def _scale(self, sigma: float | Tensor) -> float | Tensor:
        """s at noise level ``sigma`` (a float, or a tensor: then in float64): the network's units are
        x = s x_hat, s = 1 / sqrt(1 + sigma^2) = sqrt(abar) on the discrete VP process and s = 1 / (1 + sigma)
        = 1 - t on the flow process; the adapters scale the network's input by these formulas."""
        if self.flow:
            return 1 / (1 + (sigma.to(_F64) if torch.is_tensor(sigma) else sigma))
        if not torch.is_tensor(sigma):
            return 1 / (1 + sigma**2) ** 0.5
        return 1 / torch.sqrt(1 + sigma.to(_F64) ** 2)

    def _network_units(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        """x = s x_hat at noise levels ``sigma`` (shape (B,)), computed as the adapters compute the network's
        input: s x_hat on the discrete VP process, x_hat / (1 + sigma) in float64 on the flow process
        (FlowNetworkModel)."""
        shape = (-1, *([1] * (x_hat.ndim - 1)))
        if self.flow:
            return x_hat.to(_F64) / (1 + sigma.to(device=x_hat.device, dtype=_F64).reshape(shape))
        return self._scale(sigma).reshape(shape).to(x_hat.device) * x_hat

    @property
    def _time_scale(self) -> float:
        """diffusers' timestep per unit of the process's time: num_train_timesteps on the flow process
        (timestep = 1000 t), 1 on the discrete one (the time is the fractional index)."""
        return float(self.config.num_train_timesteps) if self.flow else 1.0

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    @property
    def step_index(self) -> int | None:
        """The index in ``timesteps`` of the next ``step`` call (None before the first)."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at ``timesteps[begin_index]`` (image-to-image): the solver then runs on the rest of its
        grid from the given sample, which must lie at the first level of one of its steps."""
        self._begin_index = int(begin_index)

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      sigmas: list[float] | None = None, mu: float | None = None) -> None:
        """The solver's grid of ``num_inference_steps`` steps (or the explicit ``sigmas``) and one timestep per
        model call of the solver on it.  On a discrete schedule ``sigmas`` are EDM noise levels, decreasing,
        ending at 0 or at a positive final level; on the flow process they are diffusers' unshifted flow times
        (FlowMatchEulerDiscreteScheduler's ``sigmas``: shifted here, t = 1 read as t_max, 0 appended), and
        ``mu`` is the resolution-dependent shift a ``use_dynamic_shifting`` config needs (ignored otherwise,
        as diffusers does)."""
        if self.flow:
            return self._set_flow_timesteps(num_inference_steps, device, sigmas, mu)
        if mu is not None:
            raise ValueError("mu applies to flow-matching configs with use_dynamic_shifting; this scheduler has a "
                             "discrete schedule")
        if (num_inference_steps is None) == (sigmas is None):
            raise ValueError("give num_inference_steps or sigmas (exactly one)")
        self._set_grid(int(num_inference_steps) if sigmas is None else len(sigmas) - 1, device,
                       None if sigmas is None else [float(s) for s in sigmas])

    def _set_flow_timesteps(self, num_inference_steps: int | None, device, sigmas, mu: float | None) -> None:
        """set_timesteps on the flow process (FlowMatchEulerDiscreteScheduler's arguments)."""
        if self.config.use_dynamic_shifting:
            if mu is None:
                raise ValueError("this config has use_dynamic_shifting: pass mu to set_timesteps (as diffusers' "
                                 "pipelines do)")
            self.process = _flow_process(self._flow_keys(), mu=float(mu), t_max=self.config.t_max)
        if sigmas is None:
            if num_inference_steps is None:
                raise ValueError("give num_inference_steps or sigmas")
            return self._set_grid(int(num_inference_steps), device, None)
        u = torch.tensor([float(v) for v in sigmas], dtype=_F64)
        if num_inference_steps is not None and int(num_inference_steps) != len(u):
            raise ValueError(f"num_inference_steps={num_inference_steps} but {len(u)} sigmas")
        if len(u) == 0 or not bool(((u > 0) & (u <= 1)).all()) or not bool((u[1:] < u[:-1]).all()):
            raise ValueError("flow sigmas are diffusers' unshifted flow times: decreasing, in (0, 1]")
        t = torch.where(u >= 1, self.process.time_shift(self.process.t_max), self.process.time_shift(u))
        self._set_grid(len(u), device, [*(t / (1 - t)).tolist(), 0.0])

    def _set_grid(self, num_inference_steps: int, device, sigmas: list[float] | None) -> None:
        """The solver's grid (of ``num_inference_steps`` steps, or the explicit EDM ``sigmas``) and its timesteps."""
        solver = self.solver
        if sigmas is not None:
            solver = solver.with_options(grid=sigmas)
        grid = solver.make_grid(self.process, int(num_inference_steps))
        plan = _plan(solver, grid, self.process)
        self._stop()
        device = torch.device(device) if device is not None else torch.device("cpu")
        dtype = torch.float32 if device.type == "mps" else _F64
        call_sigmas = torch.tensor(plan.sigmas, dtype=_F64)
        self.timesteps = (self._time_scale * self.process.t_of_sigma(call_sigmas)).to(device=device, dtype=dtype)
        self.sigmas = torch.cat([call_sigmas, grid.sigma[-1:]]).to(device=device, dtype=dtype)
        self.grid, self.num_inference_steps, self._plan, self._run_solver = grid, grid.steps, plan, solver
        self.init_noise_sigma = self._scale(plan.sigmas[0]) * plan.prior_scale
        self._step_index = self._begin_index = None
        self._prev_sample = None

    def _stop(self) -> None:
        """Unwind the running solver, if any (a loop abandoned before its last step)."""
        if self._run is not None:
            self._run.stop()
            self._finished()

    def _finished(self) -> None:
        self._run = None
        if self._run_finalizer is not None:
            self._run_finalizer.detach()
            self._run_finalizer = None

    # --- the loop -----------------------------------------------------------------------------
    def scale_model_input(self, sample: Tensor, timestep: float | Tensor | None = None) -> Tensor:
        """The identity: ``sample`` is already in the network's units."""
        return sample

    def index_for_timestep(self, timestep: float | Tensor) -> int:
        """The first index of ``timesteps`` holding ``timestep``."""
        t = float(timestep.flatten()[0]) if torch.is_tensor(timestep) else float(timestep)
        ts = self.timesteps.to("cpu", _F64)
        index = int((ts - t).abs().argmin())
        if abs(float(ts[index]) - t) > 1e-4 * max(1.0, abs(t)):
            raise ValueError(f"timestep {t} is not in this schedule's timesteps")
        return index

    def step(self, model_output: Tensor, timestep: float | Tensor, sample: Tensor,
             generator: torch.Generator | list[torch.Generator] | None = None,
             return_dict: bool = True) -> SolverzooSchedulerOutput | tuple[Tensor]:
        """Hand the model output at ``sample`` (the point of the solver's pending call) to the solver and
        return the point of its next call, or after the last call the sample (module docstring)."""
        if self._plan is None:
            raise ValueError("call set_timesteps before step")
        if self._step_index is None:
            self._step_index = self._begin_index if self._begin_index is not None else self.index_for_timestep(timestep)
        k, calls = self._step_index, len(self._plan.sigmas)
        if k >= calls:
            raise ValueError(f"step was called more often than the {calls} timesteps; call set_timesteps to sample "
                             f"again")
        self._noise.generator = generator
        if self._run is None:
            self._start(sample, k)
        elif sample is not self._prev_sample and not torch.equal(sample, self._prev_sample):
            raise ValueError("the sample given to step is not the prev_sample of the previous step; the solver keeps "
                             "its own state between model calls, so the sample cannot be changed in the loop")
        run = self._run
        if self.flow:
            denoised = flow_denoised(model_output, run.x_hat, run.sigma, "velocity")
        else:
            denoised = ddpm_denoised(self.config.prediction_type, run.x_hat, run.sigma, model_output)
        try:
            run.advance(denoised)
        except BaseException:  # the solver failed (or the wait was interrupted): this sampling run is over
            self._stop()
            self._plan = None
            raise
        self._step_index = k + 1
        if run.result is not None:
            if k + 1 != calls:
                raise RuntimeError(f"solver {self.solver.info.name!r} finished after {k + 1} of {calls} planned calls")
            prev = run.result
            self._finished()
        else:
            if k + 1 == calls:
                raise RuntimeError(f"solver {self.solver.info.name!r} makes more than its {calls} planned calls")
            prev = self._network_units(run.x_hat, run.sigma)
        self._prev_sample = prev.to(sample.dtype)
        out = self._prev_sample
        if not return_dict:
            return (out,)
        return SolverzooSchedulerOutput(prev_sample=out, pred_original_sample=denoised.to(sample.dtype))

    def _start(self, sample: Tensor, index: int) -> None:
        """Start the solver at ``sample``, the point of call ``index`` (0, or a step's first call)."""
        solver, grid = self._run_solver, self.grid
        if index > 0:
            solver, grid = self._rest_of_grid(index)
        work = _F64 if sample.dtype == _F64 else torch.float32
        x_hat = sample.to(work) / self._scale(self._plan.sigmas[index])
        run = _SolverRun(solver, grid, self.process, x_hat, self._noise if solver.stochastic else None)
        self._run, self._run_finalizer = run, weakref.finalize(self, run.stop)
        self._prev_sample = sample  # the point of the pending call, until a step returns the next one
        if run.x_hat is not x_hat and not torch.equal(run.x_hat, x_hat):
            raise RuntimeError(f"solver {solver.info.name!r} did not make its first call at the initial sample")

    def _rest_of_grid(self, index: int) -> tuple[Solver, Grid]:
        """The solver on the grid from the level of call ``index`` on, when that level is a grid node whose
        remaining calls are the planned ones (the start of a step)."""
        sigma = self._plan.sigmas[index]
        nodes = self.grid.sigma.tolist()
        if sigma in nodes[:-1]:
            rest = nodes[nodes.index(sigma):]
            solver = self._run_solver.with_options(grid=rest)
            grid = solver.make_grid(self.process, len(rest) - 1)
            if _plan(solver, grid, self.process).sigmas == self._plan.sigmas[index:]:
                return solver, grid
        raise ValueError(f"cannot start at timesteps[{index}]: it is not the first model call of a "
                         f"{self.solver.info.name} step; give set_begin_index a multiple of order={self.order} "
                         f"where the steps are uniform")

    # --- training and image-to-image ------------------------------------------------------------
    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """x_t = s(t) x_0 + s(t) sigma(t) n at diffusers' timesteps: sqrt(abar_t) x_0 + sqrt(1 - abar_t) n at
        (fractional) indices t, (1 - t) x_0 + t n at flow timesteps 1000 t."""
        t = torch.as_tensor(timesteps).detach().to("cpu", _F64).reshape(-1) / self._time_scale
        sigma, s = self.process.sigma(t), self.process.s(t)
        shape = (-1, *([1] * (original_samples.ndim - 1)))
        s = s.reshape(shape).to(original_samples.device)
        noise_scale = (s * sigma.reshape(shape).to(original_samples.device))
        out = s * original_samples.to(_F64) + noise_scale * noise.to(_F64)
        return out.to(original_samples.dtype)

    def scale_noise(self, sample: Tensor, timestep: Tensor, noise: Tensor) -> Tensor:
        """FlowMatchEulerDiscreteScheduler's name for :meth:`add_noise` (image-to-image flow pipelines)."""
        if not self.flow:
            raise ValueError("scale_noise is the flow-matching schedulers' add_noise; use add_noise")
        return self.add_noise(sample, noise, timestep)

    def __getstate__(self) -> dict:
        """A copy (deepcopy, pickle) holds no running solver: it samples anew after set_timesteps."""
        state = dict(self.__dict__)
        state.update(_run=None, _run_finalizer=None, _step_index=None, _prev_sample=None, _noise=_StepNoise())
        return state
