"""``solverzoo.solve``: any zoo solver on your own denoiser, initial state and sigmas.

    x0 = solverzoo.solve(D, x, sigmas, "heun")        # D(x, sigma, **extra_args) -> denoised

The denoiser follows k-diffusion's convention: ``D(x, sigma)`` with ``x`` unscaled (``x = x0 + sigma n``,
Karras et al. 2022, Eq. 2-3) and ``sigma`` of shape ``(B,)``; ``x`` is the state at ``sigmas[0]`` and the
``sigmas`` are the grid (a trailing 0 makes the last step land on the data).  The run is
:meth:`Solver.run <solverzoo.solvers.base.Solver.run>` on a :class:`~solverzoo.solvers.base.Context`
whose denoiser counts model calls, as in :func:`solverzoo.sample`; :class:`SolveContext` adds the
per-step callback and the k-diffusion ``noise_sampler``.

Steps.  Which model call opens which step is read from the solver's budget (``SolverInfo``: calls per
step, the step to zero, the extra calls of restarts and of a Runge-Kutta warm-up), so every solver
reports its steps without a hook of its own; an adaptive solver opens step ``i`` at its first call at
``sigmas[i]``.  The callback runs right after the first model call of each step, with k-diffusion's keys:
``x`` (that call's input), ``i``, ``sigma`` (``sigmas[i]``), ``sigma_hat`` (the call's sigma: above
``sigma`` after EDM's churn) and ``denoised`` (its output), as k-diffusion's samplers call theirs.
"""

from __future__ import annotations

import bisect
import copy
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .grids import Grid
from .models.base import CountingDenoiser, Model
from .noise import PATH, NoiseSource
from .processes import Process
from .solvers.base import SOLVERS, Context, Solver, declared_options

__all__ = ["SolveContext", "SolveInfo", "calls_by_step", "get_sigmas", "solve", "wrap_denoiser"]

#: solve()'s own keyword arguments (told apart from solver options in error messages)
SOLVE_KEYWORDS = ("solver", "extra_args", "callback", "noise", "grad", "return_info")

NoiseSampler = Callable[[Tensor, Tensor], Tensor]


@dataclass
class SolveInfo:
    """What a :func:`solve` run took: the counted model calls per trajectory, the steps, the grid,
    every option of the solver as the results file records it, and what the solver reported about its
    run (``Context.record``: ``dpm_solver_adaptive``'s attempted, accepted and rejected steps)."""

    solver: str
    nfe: int
    steps: int
    sigmas: list[float]
    options: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)  # the solver's own report (an adaptive controller's steps)


def get_sigmas(grid: str, steps: int, process: str | Process = "edm", final: str = "zero", **options: Any) -> Tensor:
    """The sigmas of a registered grid (``solverzoo.list_grids()``) as a float64 tensor, for :func:`solve`:
    ``get_sigmas("karras", 10, sigma_min=0.002, sigma_max=80)`` is k-diffusion's ``get_sigmas_karras(10, 0.002,
    80)`` with its trailing 0 (``final="sigma_min"``: none).  ``process`` gives the default sigma range."""
    from .grids import make_grid
    from .processes import get_process

    return make_grid(grid, get_process(process) if isinstance(process, str) else process, steps, final=final,
                     **options).sigma


def wrap_denoiser(denoiser: Any, shape: Sequence[int] | None = None, process: str | Process = "edm", *,
                  name: str | None = None, process_options: dict | None = None,
                  extra_args: dict | None = None) -> Model:
    """A solverzoo :class:`~solverzoo.models.base.Model` from a denoiser ``D(x, sigma, **extra_args)``
    (k-diffusion / EDM convention: unscaled ``x``, ``sigma`` of shape ``(B,)``, returns the denoised
    batch): a plain function runs in the dtype of the run, a network in its parameters' dtype; autograd
    is kept (``solverzoo.sample`` and ``solve(grad=False)`` run under ``torch.no_grad``).

    ``shape`` is one sample's shape, e.g. ``(3, 64, 64)`` (guessed from EDM's ``img_channels`` and
    ``img_resolution`` attributes when left out); ``process`` is the process the network was trained
    under (default EDM, over the network's ``sigma_min``/``sigma_max`` when it has them).  A Model is
    returned as it is."""
    from .models.adapters import wrap_denoiser as adapt

    if isinstance(denoiser, Model):
        if shape is not None or process != "edm" or process_options or extra_args:
            raise ValueError(f"{type(denoiser).__name__} is already a solverzoo Model; shape, process, "
                             f"process_options and extra_args apply to a plain denoiser")
        return denoiser
    label = name or getattr(denoiser, "__name__", type(denoiser).__name__)
    if not callable(denoiser):
        raise TypeError(f"wrap_denoiser() needs a callable D(x, sigma) or a solverzoo Model, got "
                        f"{type(denoiser).__name__}")
    if shape is None and (getattr(denoiser, "img_channels", None) is None
                          or getattr(denoiser, "img_resolution", None) is None):
        raise ValueError(f"cannot tell the sample shape of {label!r}: call wrap_denoiser({label}, shape=(C, H, W)) "
                         f"with one sample's shape (or give the network img_channels and img_resolution "
                         f"attributes, as EDM's networks have)")
    model = adapt(denoiser, name=label, shape=None if shape is None else tuple(int(n) for n in shape),
                  process=process, process_options=process_options)
    model.keep_grad = True
    model.extra_args = dict(extra_args or {})
    return model


def calls_by_step(solver: Solver, grid: Grid) -> list[int] | None:
    """The model calls ``solver`` makes in each step of ``grid`` (None for an adaptive solver), from its
    budget: ``calls_per_step``, ``zero_step_calls`` on a step to sigma = 0, the restart segments of
    ``restart`` (in the step that ends at its restart node) and the Runge-Kutta warm-up calls of a
    multistep solver (its first steps); the other ``extra_calls`` (a final denoise) follow the last step."""
    from .solvers.blocks import Multistep
    from .solvers.restart import Restart

    info = solver.info
    if info.adaptive:
        return None
    steps = grid.steps
    last = info.zero_step_calls if grid.final == "zero" and info.zero_step_calls is not None else info.calls_per_step
    plan = [info.calls_per_step] * (steps - 1) + [last]
    if isinstance(solver, Restart) and solver.restarts:
        plan[solver.restart_node(grid.sigmas()) - 1] += info.extra_calls
    elif isinstance(solver, Multistep):
        for i in range(min(solver.warmup_steps(), steps)):
            plan[i] += solver.order - 2
    return plan


class _StepWatch:
    """Which step the run is in, from the count of model calls (:func:`calls_by_step`), and the
    callback after the first call of each step."""

    def __init__(self, solver: Solver, grid: Grid, sigmas: Tensor, callback: Callable[[dict], Any] | None):
        self.sigma = grid.sigmas()
        self.sigmas, self.callback = sigmas, callback
        plan = calls_by_step(solver, grid)
        self.starts = None if plan is None else [sum(plan[:i]) for i in range(len(plan))]
        self.calls, self.step = 0, -1

    def after_call(self, x: Tensor, sigma: float | Tensor, denoised: Tensor) -> None:
        k, self.calls = self.calls, self.calls + 1
        if self.starts is not None:
            step = bisect.bisect_right(self.starts, k) - 1
            opens = self.starts[step] == k
        else:  # adaptive: step j opens at the first call at sigmas[j]
            s = float(sigma) if not torch.is_tensor(sigma) or sigma.ndim == 0 else float(sigma.reshape(-1)[0])
            later = [j for j in range(self.step + 1, len(self.sigma) - 1) if s == self.sigma[j]]
            opens, step = bool(later), (later[0] if later else self.step)
        if not opens or step == self.step:
            return
        self.step = step
        if self.callback is not None:
            hat = sigma.reshape(-1)[0] if torch.is_tensor(sigma) else None
            if hat is None:
                hat = self.sigmas[step] if sigma == self.sigma[step] else self.sigmas.new_tensor(float(sigma))
            self.callback({"x": x, "i": step, "sigma": self.sigmas[step], "sigma_hat": hat, "denoised": denoised})


class _SamplerNoise:
    """``ctx.noise`` of a run whose draws come from a k-diffusion noise sampler: it has no per-sample
    generators to hand out (``sde_reference`` builds its Brownian path from them)."""

    @property
    def generators(self):
        raise ValueError("this solver draws its noise from per-sample generators, not from a noise_sampler(sigma, "
                         "sigma_next); pass noise=an int seed or a torch.Generator")


class SolveContext(Context):
    """A :class:`~solverzoo.solvers.base.Context` that reports steps (:class:`_StepWatch`) and, given a
    k-diffusion ``noise_sampler(sigma, sigma_next)``, serves every draw from it: a draw asked for an
    interval (``ctx.randn_like(x, a, b)``: ``dpmpp_sde``'s Brownian sub-steps) gets ``noise_sampler(a, b)``,
    any other the current step's ``noise_sampler(sigmas[i], sigmas[i + 1])``, as k-diffusion's ancestral
    and SDE samplers ask.  Solvers that draw several times in one step without naming the intervals
    (SEEDS' noise chains, restart, the churn of ``heun``/``dpm2``) then ask one interval more than once:
    a sampler that draws fresh noise at each call (k-diffusion's ``default_noise_sampler``) serves them;
    a Brownian tree would hand back the same increment, so give those solvers ``noise=seed`` instead."""

    def __init__(self, denoiser: CountingDenoiser, grid: Grid, noise, watch: _StepWatch,
                 noise_sampler: NoiseSampler | None = None, preconditioner=None, drift: bool = False):
        super().__init__(denoiser, grid, noise if noise_sampler is None else _SamplerNoise(), preconditioner, drift)
        self.watch, self.noise_sampler = watch, noise_sampler

    def denoise(self, x_hat: Tensor, sigma: float | Tensor) -> Tensor:
        out = super().denoise(x_hat, sigma)
        self.watch.after_call(x_hat, sigma, out)
        return out

    def _sigma(self, value: float) -> Tensor:
        sigmas = self.watch.sigmas
        return sigmas[self.sigma.index(value)] if value in self.sigma else sigmas.new_tensor(float(value))

    def randn_like(self, x: Tensor, sigma: float | None = None, sigma_next: float | None = None) -> Tensor:
        if self.noise_sampler is None:
            return super().randn_like(x, sigma, sigma_next)
        if sigma is None or sigma_next is None:
            i = min(max(self.watch.step, 0), self.grid.steps - 1)
            a, b = self.watch.sigmas[i], self.watch.sigmas[i + 1]
        else:
            a, b = self._sigma(sigma), self._sigma(sigma_next)
        z = self.noise_sampler(a, b)
        return self.precondition_noise(z.to(device=x.device, dtype=x.dtype))


def _path_noise(noise: Any, x: Tensor) -> tuple[NoiseSource | None, NoiseSampler | None]:
    """(per-sample source, k-diffusion noise sampler) for ``solve(noise=...)``: an int seed (sample b of
    the batch draws from the stream of (seed, b), as ``solverzoo.sample``), a ``torch.Generator`` (one
    seed drawn from it, then the same), None (a seed drawn from torch's global generator) or a callable
    ``noise_sampler(sigma, sigma_next)``."""
    if callable(noise) and not isinstance(noise, torch.Generator):
        return None, noise
    if noise is None:
        seed = int(torch.randint(0, 2**62, ()))
    elif isinstance(noise, torch.Generator):
        seed = int(torch.randint(0, 2**62, (), generator=noise, device=noise.device))
    elif isinstance(noise, int) and not isinstance(noise, bool) and noise >= 0:
        seed = noise
    else:
        raise ValueError(f"noise={noise!r}: give an int seed >= 0, a torch.Generator, or a k-diffusion "
                         f"noise_sampler(sigma, sigma_next)")
    return NoiseSource(seed, range(x.shape[0]), PATH, x.device, x.dtype), None


def _sigma_list(sigmas: Any) -> list[float]:
    values = sigmas.tolist() if hasattr(sigmas, "tolist") else sigmas
    if not isinstance(values, (list, tuple)) or any(isinstance(v, (list, tuple)) for v in values):
        raise ValueError(f"sigmas must be a 1-D tensor or list of noise levels, got {type(sigmas).__name__}"
                         + (f" of shape {tuple(sigmas.shape)}" if hasattr(sigmas, "shape") else ""))
    if len(values) < 2:
        raise ValueError(f"sigmas needs at least two noise levels (one step), got {list(values)}")
    return [float(v) for v in values]


def _build_solver(solver: str | Solver, options: dict[str, Any], grid: list[float]) -> Solver:
    """The solver with ``options`` checked as on the command line, on the explicit grid."""
    from .bench.validate import check_solver_options

    if "grid" in options:
        raise ValueError("solve() takes the grid as its sigmas argument; drop the grid= option")
    if isinstance(solver, Solver):
        if options:
            raise ValueError(f"options {', '.join(sorted(options))} were given for an already-built solver; "
                             f"build it with them or pass its name")
        return solver.with_options(grid=grid)
    if not isinstance(solver, str):
        raise TypeError(f"solver must be a registered name or a Solver, got {type(solver).__name__}")
    valid, _ = declared_options(SOLVERS.lookup(solver))
    for key in options:
        close = difflib.get_close_matches(key, SOLVE_KEYWORDS, n=1, cutoff=0.75)
        if key not in valid and close:
            raise TypeError(f"solve() got an unexpected keyword argument {key!r} (did you mean {close[0]}=?); it is "
                            f"not an option of solver {solver!r} either (valid options: {', '.join(valid)})")
    return check_solver_options(solver, {**options, "grid": grid})


def _model_for(denoiser: Any, x: Tensor, extra_args: dict | None, grad: bool) -> tuple[Model, Tensor | None]:
    """(model, labels) of a solve() run: a plain callable or network wrapped (:func:`wrap_denoiser`);
    a solverzoo Model moved to ``x``'s device and dtype, ``extra_args={"labels": ...}`` for a
    class-conditional one.  A network model (a checkpoint, ``module:factory``, a diffusers folder, a flow
    network) keeps autograd under ``grad=True`` (a copy of it does: the model itself still runs under
    no_grad elsewhere)."""
    from .models.learned import DenoiserModel

    shape = tuple(x.shape[1:])
    if not isinstance(denoiser, Model):
        return wrap_denoiser(denoiser, shape=shape, extra_args=extra_args), None
    if isinstance(denoiser, DenoiserModel) and extra_args:
        model = copy.copy(denoiser)
        model.extra_args = {**denoiser.extra_args, **extra_args}
        denoiser = model
        extra_args = None
    if grad and getattr(denoiser, "keep_grad", True) is False:  # a network model that runs under no_grad
        denoiser = copy.copy(denoiser)
        denoiser.keep_grad = True
    extra = dict(extra_args or {})
    labels = extra.pop("labels", None)
    if extra:
        raise ValueError(f"extra_args {', '.join(sorted(extra))}: a solverzoo Model's denoise takes (x, sigma) and, "
                         f"if class-conditional, labels; pass a plain callable D(x, sigma, **extra_args) instead")
    model = denoiser.to(x.device, x.dtype)
    if tuple(model.shape) != shape:
        raise ValueError(f"x holds samples of shape {shape} but the model {model.name!r} makes {tuple(model.shape)}")
    return model, (None if labels is None else torch.as_tensor(labels, device=x.device))


def solve(
    denoiser: Any,
    x: Tensor,
    sigmas: Tensor | Sequence[float],
    solver: str | Solver = "dpmpp_2m",
    *,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    noise: int | torch.Generator | NoiseSampler | None = None,
    grad: bool = False,
    return_info: bool = False,
    **options: Any,
) -> Tensor | tuple[Tensor, SolveInfo]:
    """Run ``solver`` from ``x`` at ``sigmas[0]`` down the ``sigmas`` and return the sample.

    Args:
        denoiser: a plain callable ``D(x, sigma, **extra_args)`` in k-diffusion's convention (``sigma`` of
            shape ``(B,)``; it receives ``x``'s dtype, float64 end to end in a float64 run), a network
            with the same signature, or a solverzoo ``Model`` (:func:`wrap_denoiser`).
        x: the initial state at ``sigmas[0]``, batch first, unscaled as in k-diffusion (``sigmas[0] * z``
            for a run from pure noise).
        sigmas: a decreasing 1-D tensor or list; it is the grid (a trailing 0: the last step lands on the
            data; else the sample is returned at the last sigma).  ``nfe=``/``steps=`` are not needed; one
            that asks for another step count is an error.
        solver: a registered name (``solverzoo list``) or a built ``Solver``.
        extra_args: keyword arguments for every denoiser call (``labels`` for a class-conditional Model).
        callback: called once per step with k-diffusion's dict ``x, i, sigma, sigma_hat, denoised`` (the
            first model call of the step; module docstring).
        noise: for stochastic solvers, an int seed or a ``torch.Generator`` (per-sample streams: sample b
            does not depend on the rest of the batch), a k-diffusion ``noise_sampler(sigma, sigma_next)``,
            or None (a seed from torch's global generator).
        grad: False runs under ``torch.no_grad()`` (the result never requires grad); True keeps autograd
            through every model call (guidance, posterior sampling, gradients with respect to ``x`` or
            to the denoiser's parameters).
        return_info: also return a :class:`SolveInfo` (counted NFE, steps, options).
        options: solver options (``s_churn=``, ``eta=``...), checked as the command line checks them.

    Returns:
        The sample in ``x``'s dtype and on its device; with ``return_info``, ``(sample, info)``.
    """
    from .sampling import build_filters, explicit_grid_steps

    if not torch.is_tensor(x) or x.ndim < 2:
        raise ValueError(f"x must be a tensor with a batch axis, shape (B, ...), got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    grid_list = _sigma_list(sigmas)
    nfe, steps = options.pop("nfe", None), options.pop("steps", None)
    built = _build_solver(solver, options, grid_list)
    explicit_grid_steps(built, nfe, steps)
    model, labels = _model_for(denoiser, x, extra_args, grad)
    built.check_model(model)
    grid = built.make_grid(model.process, len(grid_list) - 1)
    sigma_tensor = sigmas if torch.is_tensor(sigmas) else torch.tensor(grid_list, dtype=x.dtype, device=x.device)
    filters, _ = build_filters(built, model, grid, x.device, x.dtype)
    source, sampler = _path_noise(noise, x) if built.stochastic else (None, None)
    counting = CountingDenoiser(model, labels)
    watch = _StepWatch(built, grid, sigma_tensor, callback)
    ctx = SolveContext(counting, grid, source, watch, sampler, filters, drift="drift" in built.info.preconditioning)
    with torch.set_grad_enabled(bool(grad)):
        out = built.run(ctx, x).to(x.dtype)
    if not return_info:
        return out
    return out, SolveInfo(solver=built.info.name, nfe=counting.nfe, steps=grid.steps, sigmas=grid.sigmas(),
                          options=built.options(), record=dict(ctx.record))
