"""k-diffusion drop-ins: ``sample_<name>(model, x, sigmas, extra_args=None, callback=None, disable=None,
noise_sampler=None, **options)`` for every registered solver, and k-diffusion's own sampler names.

The signature is ``k_diffusion.sampling``'s (Crowson, crowsonkb/k-diffusion), which is also what
ComfyUI-style code hands its sampler functions, so a zoo solver goes wherever such a function goes::

    from solverzoo.k_diffusion import sample_seeds2, sample_dpmpp_3m_sde
    x0 = sample_seeds2(model, x, sigmas, extra_args={"cond": c}, callback=preview)

Each function is :func:`solverzoo.solve` under ``torch.no_grad`` (k-diffusion's samplers are no-grad):
``model(x, sigma, **extra_args)`` with ``sigma`` of shape ``(B,)``, ``x`` the state at ``sigmas[0]``,
the ``sigmas`` the grid, ``callback`` once per step with k-diffusion's keys, ``disable`` accepted (no
progress bar is drawn).  ``noise_sampler(sigma, sigma_next)`` serves the draws of a stochastic solver;
without one the noise comes from per-sample streams seeded by ``extra_args["seed"]`` when that is an
int (ComfyUI passes it), else by a seed drawn from torch's global generator.

k-diffusion's names carry k-diffusion's defaults (:data:`K_DIFFUSION_NAMES`): ``sample_dpm_2_ancestral``
is ``dpm2`` with ``eta=1``, ``sample_dpmpp_2s_ancestral`` is ``dpmpp_2s`` with ``eta=1``,
``sample_dpmpp_3m_sde`` is ``dpmpp_3m_sde`` with the references' third-order weight
(``third_order="upstream"``).  In float64 with the same noise sampler they equal ``k_diffusion.sampling``
(tests/test_k_diffusion_dropin.py).  A solver registered later (``solverzoo.register``, a plugin) has its
``sample_<name>`` too: names are looked up in the registry when asked for.

k-diffusion's two samplers that take a sigma range instead of sigmas keep their signatures:
:func:`sample_dpm_fast` (``model, x, sigma_min, sigma_max, n``) runs ``dpm_solver_fast`` on its call grid
of ``n`` model calls and :func:`sample_dpm_adaptive` (``model, x, sigma_min, sigma_max``) runs
``dpm_solver_adaptive`` from sigma_max to sigma_min, with k-diffusion's defaults and its batch RMS error
(tests/test_solvers_dpm_singlestep.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .api import solve
from .processes import get_process
from .solvers import SOLVERS, get_solver
from .solvers.dpm_singlestep import fast_orders

#: k-diffusion's sampler name -> (solver, the options that give k-diffusion's defaults)
K_DIFFUSION_NAMES: dict[str, tuple[str, dict[str, Any]]] = {
    "sample_euler": ("euler", {}),
    "sample_euler_ancestral": ("euler_ancestral", {}),
    "sample_heun": ("heun", {}),
    "sample_dpm_2": ("dpm2", {}),
    "sample_dpm_2_ancestral": ("dpm2", {"eta": 1.0}),
    "sample_lms": ("lms", {}),
    "sample_dpmpp_2s_ancestral": ("dpmpp_2s", {"eta": 1.0}),
    "sample_dpmpp_sde": ("dpmpp_sde", {}),
    "sample_dpmpp_2m": ("dpmpp_2m", {}),
    "sample_dpmpp_2m_sde": ("dpmpp_2m_sde", {}),
    "sample_dpmpp_3m_sde": ("dpmpp_3m_sde", {"third_order": "upstream"}),
}

Sampler = Callable[..., Tensor]
#: k-diffusion's samplers that take (sigma_min, sigma_max) in place of sigmas
K_DIFFUSION_RANGE_NAMES = ("sample_dpm_fast", "sample_dpm_adaptive")


def sampler(solver: str, **defaults: Any) -> Sampler:
    """A k-diffusion-signature function running ``solver`` with ``defaults`` (overridable per call)."""
    cls = SOLVERS.lookup(solver)

    def sample(model: Callable[..., Tensor], x: Tensor, sigmas: Tensor, extra_args: dict | None = None,
               callback: Callable[[dict], Any] | None = None, disable: bool | None = None,
               noise_sampler: Callable[[Tensor, Tensor], Tensor] | None = None, **options: Any) -> Tensor:
        extra_args = {} if extra_args is None else extra_args
        return solve(model, x, sigmas, solver, extra_args=extra_args, callback=callback,
                     noise=_seeded(noise_sampler, extra_args), grad=False,
                     **{**defaults, **options})

    set_by = f" with {', '.join(f'{k}={v!r}' for k, v in defaults.items())}" if defaults else ""
    sample.__name__ = sample.__qualname__ = f"sample_{solver}"
    sample.__doc__ = (f"k-diffusion-signature sampler: solverzoo solver {solver!r}{set_by} "
                      f"(solverzoo.k_diffusion).\n\n{cls.info.paper}\n\nOptions: "
                      f"{', '.join(f'{k}={v!r}' for k, v in {**_options(cls), **defaults}.items())}")
    return sample


def _sigma_range(sigma_min: float | Tensor, sigma_max: float | Tensor) -> tuple[float, float]:
    lo, hi = float(sigma_min), float(sigma_max)
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={lo}, sigma_max={hi}")
    return lo, hi


def _seeded(noise_sampler: Callable | None, extra_args: dict) -> Any:
    """solve()'s noise: the sampler, else extra_args["seed"] when it is an int >= 0 (as ComfyUI passes it)."""
    if noise_sampler is None and isinstance(extra_args.get("seed"), int) and extra_args["seed"] >= 0:
        return extra_args["seed"]
    return noise_sampler


def sample_dpm_fast(model: Callable[..., Tensor], x: Tensor, sigma_min: float | Tensor, sigma_max: float | Tensor,
                    n: int, extra_args: dict | None = None, callback: Callable[[dict], Any] | None = None,
                    disable: bool | None = None, eta: float = 0.0, s_noise: float = 1.0,
                    noise_sampler: Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
    """DPM-Solver-fast (Lu et al. 2022, Sec. 3.4) with k-diffusion's signature: ``n`` model calls from
    sigma_max to sigma_min, uniform in lambda (solver ``dpm_solver_fast``).  ``callback`` once per step
    (K = n // 3 + 1 steps), at its first call, with k-diffusion's keys (``t`` = -log sigma)."""
    lo, hi = _sigma_range(sigma_min, sigma_max)
    extra_args = {} if extra_args is None else extra_args
    orders = fast_orders(n)  # checks n
    solver = get_solver("dpm_solver_fast", final="sigma_min", grid_options={"sigma_min": lo, "sigma_max": hi})
    sigmas = solver.make_grid(get_process("edm"), int(n)).sigmas()
    step_of_call = {sum(orders[:i]): i for i in range(len(orders))}  # a step's first call -> the step

    def on_call(info: dict) -> None:
        if info["i"] in step_of_call:
            t = -torch.log(torch.as_tensor(info["sigma"]))
            callback({**info, "i": step_of_call[info["i"]], "t": t, "t_up": t})

    return solve(model, x, sigmas, "dpm_solver_fast", extra_args=extra_args,
                 callback=None if callback is None else on_call, noise=_seeded(noise_sampler, extra_args),
                 eta=eta, s_noise=s_noise)


def sample_dpm_adaptive(model: Callable[..., Tensor], x: Tensor, sigma_min: float | Tensor,
                        sigma_max: float | Tensor, extra_args: dict | None = None,
                        callback: Callable[[dict], Any] | None = None, disable: bool | None = None, order: int = 3,
                        rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05, pcoeff: float = 0.0,
                        icoeff: float = 1.0, dcoeff: float = 0.0, accept_safety: float = 0.81, eta: float = 0.0,
                        s_noise: float = 1.0, noise_sampler: Callable[[Tensor, Tensor], Tensor] | None = None,
                        return_info: bool = False) -> Tensor | tuple[Tensor, dict]:
    """DPM-Solver-12/23 with adaptive step size (Lu et al. 2022, Sec. 3.4) with k-diffusion's signature
    (solver ``dpm_solver_adaptive`` with the batch RMS error, as k-diffusion).  ``return_info``: also
    k-diffusion's dict of attempted ``steps``, ``n_accept``, ``n_reject`` and ``nfe``, the counted calls (a
    rejected attempt reuses eps at its start, so ``nfe`` is k-diffusion's count less ``n_reject``).
    ``callback``: once, at the first call (the controller's attempts are not steps of a grid)."""
    lo, hi = _sigma_range(sigma_min, sigma_max)
    extra_args = {} if extra_args is None else extra_args
    out, info = solve(model, x, [hi, lo], "dpm_solver_adaptive", extra_args=extra_args, callback=callback,
                      noise=_seeded(noise_sampler, extra_args), return_info=True, order=order, rtol=rtol, atol=atol,
                      h_init=h_init, pcoeff=pcoeff, icoeff=icoeff, dcoeff=dcoeff, accept_safety=accept_safety,
                      eta=eta, s_noise=s_noise, error_norm="batch")
    if return_info:
        return out, {**info.record, "nfe": info.nfe}
    return out


def _options(cls) -> dict[str, Any]:
    from .solvers.base import declared_options

    options, _ = declared_options(cls)
    return {k: v for k, v in options.items() if k not in ("grid", "final", "grid_options")}


def _build(name: str) -> Sampler | None:
    if name in K_DIFFUSION_NAMES:
        solver, defaults = K_DIFFUSION_NAMES[name]
        fn = sampler(solver, **defaults)
        fn.__name__ = fn.__qualname__ = name
        return fn
    if name.startswith("sample_") and name[len("sample_"):] in SOLVERS:
        return sampler(name[len("sample_"):])
    return None


def __getattr__(name: str) -> Sampler:
    fn = _build(name)
    if fn is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r} (samplers: sample_<solver> for "
                             f"{', '.join(SOLVERS.names())}, and k-diffusion's "
                             f"{', '.join([*K_DIFFUSION_NAMES, *K_DIFFUSION_RANGE_NAMES])})")
    return fn


def samplers() -> list[str]:
    """Every ``sample_*`` name this module answers: one per registered solver, and k-diffusion's."""
    return sorted({f"sample_{name}" for name in SOLVERS.names()} | set(K_DIFFUSION_NAMES)
                  | set(K_DIFFUSION_RANGE_NAMES))


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(samplers()))


__all__ = ["K_DIFFUSION_NAMES", "K_DIFFUSION_RANGE_NAMES", "sampler", "samplers"]
__all__.extend(samplers())
# the solvers known at import time are module attributes too (``from solverzoo.k_diffusion import *``)
globals().update({name: _build(name) for name in samplers() if name not in K_DIFFUSION_RANGE_NAMES})
