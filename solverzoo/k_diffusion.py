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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from .api import solve
from .solvers import SOLVERS

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


def sampler(solver: str, **defaults: Any) -> Sampler:
    """A k-diffusion-signature function running ``solver`` with ``defaults`` (overridable per call)."""
    cls = SOLVERS.lookup(solver)

    def sample(model: Callable[..., Tensor], x: Tensor, sigmas: Tensor, extra_args: dict | None = None,
               callback: Callable[[dict], Any] | None = None, disable: bool | None = None,
               noise_sampler: Callable[[Tensor, Tensor], Tensor] | None = None, **options: Any) -> Tensor:
        extra_args = {} if extra_args is None else extra_args
        noise = noise_sampler
        if noise is None and isinstance(extra_args.get("seed"), int) and extra_args["seed"] >= 0:
            noise = extra_args["seed"]
        return solve(model, x, sigmas, solver, extra_args=extra_args, callback=callback, noise=noise, grad=False,
                     **{**defaults, **options})

    set_by = f" with {', '.join(f'{k}={v!r}' for k, v in defaults.items())}" if defaults else ""
    sample.__name__ = sample.__qualname__ = f"sample_{solver}"
    sample.__doc__ = (f"k-diffusion-signature sampler: solverzoo solver {solver!r}{set_by} "
                      f"(solverzoo.k_diffusion).\n\n{cls.info.paper}\n\nOptions: "
                      f"{', '.join(f'{k}={v!r}' for k, v in {**_options(cls), **defaults}.items())}")
    return sample


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
                             f"{', '.join(SOLVERS.names())}, and k-diffusion's {', '.join(K_DIFFUSION_NAMES)})")
    return fn


def samplers() -> list[str]:
    """Every ``sample_*`` name this module answers: one per registered solver, and k-diffusion's."""
    return sorted({f"sample_{name}" for name in SOLVERS.names()} | set(K_DIFFUSION_NAMES))


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(samplers()))


__all__ = ["K_DIFFUSION_NAMES", "sampler", "samplers"]
__all__.extend(samplers())
# the solvers known at import time are module attributes too (``from solverzoo.k_diffusion import *``)
globals().update({name: _build(name) for name in samplers()})
