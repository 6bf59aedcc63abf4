"""Bring your own sampler: a k-diffusion-style function as a zoo solver, and solvers published by other
packages under the entry-point group ``solverzoo.solvers``.

A function ``fn(model, x, sigmas, extra_args=None, callback=None, disable=None, **options)`` in
k-diffusion's convention (``k_diffusion.sampling``; ComfyUI's sampler functions) becomes a solver class
with :func:`from_k_diffusion`: its model calls are counted as every solver's (``CountingDenoiser``), its
keyword options are the class's options (checked, recorded, shown by ``inspect.signature``), and it
benches beside the built-in solvers.  A package publishes solvers in its metadata::

    [project.entry-points."solverzoo.solvers"]
    my_euler = "my_package.samplers:MyEuler"      # a Solver subclass or a from_k_diffusion(...) result

and the command line (``solverzoo list``, ``solverzoo bench --solvers my_euler,euler``) loads them
(:func:`load_plugins`); a plugin that fails to load is reported by name and skipped.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .solvers.base import SOLVERS, Context, Solver, SolverInfo, declared_options, register

__all__ = ["ENTRY_POINT_GROUP", "from_k_diffusion", "load_plugins"]

ENTRY_POINT_GROUP = "solverzoo.solvers"
#: the parameters of a k-diffusion sampler that are not options
K_DIFFUSION_ARGUMENTS = ("model", "x", "sigmas", "extra_args", "callback", "disable", "noise_sampler")
_BASE_OPTIONS = ("grid", "final", "grid_options", "preconditioner")


def from_k_diffusion(fn: Callable[..., Tensor], name: str, calls_per_step: int = 1, stochastic: bool = False, *,
                     zero_step_calls: int | None = None, order: int = 1, grid: str | None = "karras",
                     family: str = "plugin", paper: str | None = None) -> type[Solver]:
    """A solver class running ``fn(model, x, sigmas, extra_args=..., callback=None, disable=True, **options)``.

    ``calls_per_step`` model calls per step (``zero_step_calls`` on a step to sigma = 0, if different)
    set the NFE budget (``solverzoo bench --nfe``); the calls are counted, so a wrong budget shows in the
    results.  ``stochastic=True`` hands ``fn`` a ``noise_sampler(sigma, sigma_next)`` that draws from the
    run's per-sample noise streams (sample i's noise does not depend on the batch), if ``fn`` takes one.
    ``fn``'s keyword parameters beyond k-diffusion's are the solver's options.  ``grid``: the grid the
    solver uses by default (k-diffusion's samplers are written for Karras sigmas).  Register the class
    with ``solverzoo.register`` or publish it under the ``solverzoo.solvers`` entry-point group."""
    if not callable(fn):
        raise TypeError(f"from_k_diffusion() needs a sampler function, got {type(fn).__name__}")
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError) as err:
        raise TypeError(f"from_k_diffusion(): cannot read the signature of {fn!r} ({err})") from None
    if list(params)[:3] != ["model", "x", "sigmas"]:
        raise TypeError(f"from_k_diffusion(): {getattr(fn, '__name__', fn)!r} does not have k-diffusion's signature "
                        f"fn(model, x, sigmas, extra_args=None, callback=None, disable=None, ...); its parameters are "
                        f"({', '.join(params)})")
    if int(calls_per_step) != calls_per_step or calls_per_step < 1:
        raise ValueError(f"calls_per_step must be a positive integer, got {calls_per_step!r}")
    clashes = sorted(set(params) & set(_BASE_OPTIONS))
    if clashes:
        raise TypeError(f"from_k_diffusion(): {fn.__name__}'s parameters {', '.join(clashes)} clash with the options "
                        f"every solver has ({', '.join(_BASE_OPTIONS)})")
    options = {p.name: p.default for p in params.values()
               if p.name not in K_DIFFUSION_ARGUMENTS and p.default is not p.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_noise = "noise_sampler" in params
    qualname = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    info = SolverInfo(name=name, family=family, kind="sde" if stochastic else "ode", order=int(order),
                      calls_per_step=int(calls_per_step), zero_step_calls=zero_step_calls, grid=grid,
                      paper=paper or f"k-diffusion-style sampler {qualname}")

    def __init__(self, **given: Any) -> None:
        Solver.__init__(self, **{k: given.pop(k) for k in _BASE_OPTIONS if k in given})
        for key, value in {**options, **given}.items():  # the function's defaults, then what was given
            setattr(self, key, value)

    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in options.items()]
        + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None) for k in _BASE_OPTIONS])

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigmas = ctx.grid.sigma.to(device=x.device, dtype=torch.float32 if x.device.type == "mps" else torch.float64)
        kwargs = {k: getattr(self, k) for k in options}
        if takes_noise and stochastic:
            kwargs["noise_sampler"] = lambda sigma, sigma_next: ctx.randn_like(x, float(sigma), float(sigma_next))
        return fn(lambda x, sigma, **_: ctx.denoise(x, sigma), x, sigmas, extra_args={}, callback=None, disable=True,
                  **kwargs)

    doc = f"{name}: {qualname} as a solverzoo solver (from_k_diffusion).\n\n{inspect.getdoc(fn) or ''}".rstrip()
    cls = type(_class_name(name), (Solver,), {"info": info, "__init__": __init__, "run": run, "__doc__": doc,
                                              "__module__": getattr(fn, "__module__", __name__),
                                              "sampler_function": staticmethod(fn)})
    declared_options(cls)  # fails here, not at the first run, if the options cannot be read
    return cls


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_") if part) or "Plugin"


_LOADED: dict[str, list[str]] = {}


def load_plugins(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Register the solvers published under the entry-point ``group`` (once per process) and return
    one message for each plugin that could not be loaded (the others are registered regardless)."""
    if group in _LOADED:
        return _LOADED[group]
    problems: list[str] = []
    for entry in importlib.metadata.entry_points(group=group):
        where = f"plugin {entry.name!r} ({entry.value}"
        dist = getattr(entry, "dist", None)
        where += f", from {dist.name})" if dist is not None and getattr(dist, "name", None) else ")"
        try:
            obj = entry.load()
        except Exception as err:  # noqa: BLE001  (a plugin's import can fail in any way; it must not stop the command line)
            problems.append(f"{where} failed to import: {type(err).__name__}: {err}")
            continue
        if not (isinstance(obj, type) and issubclass(obj, Solver)):
            problems.append(f"{where} is a {type(obj).__name__}, not a solver class; publish a Solver subclass or "
                            f"solverzoo.from_k_diffusion(fn, name=...)")
            continue
        existing = SOLVERS.get(obj.info.name) if isinstance(getattr(obj, "info", None), SolverInfo) else None
        if existing is not None and existing is not obj:
            problems.append(f"{where} names its solver {obj.info.name!r}, which is already registered "
                            f"({existing.__module__}.{existing.__qualname__}); it was skipped")
            continue
        try:
            register(obj)
            declared_options(obj)
        except (TypeError, ValueError) as err:
            problems.append(f"{where} cannot be registered: {err}")
    _LOADED[group] = problems
    return problems
