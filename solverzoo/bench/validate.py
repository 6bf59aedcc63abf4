"""Checks of user input made before any work: devices, model options, typed solver options.

Every check raises ``ValueError`` with a message naming the problem and the valid
choices; the command line turns it into exit code 2.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch

__all__ = ["check_device", "build_model", "check_solver_options", "check_solver_run"]


def check_device(device: str | None) -> torch.device:
    """'cpu', 'cuda', 'cuda:N', 'mps' or 'auto' -> a usable torch device."""
    from ..sampling import resolve_device

    text = "auto" if device is None else str(device).strip()
    try:
        dev = resolve_device(text)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"--device {device!r} is not a device ({str(err).splitlines()[0]}); use cpu, cuda, cuda:N "
                         f"or auto") from None
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device!r}: there are {torch.cuda.device_count()} CUDA devices")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device!r}: solverzoo runs on cpu, cuda, cuda:N or auto")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"--device {device!r}: MPS is not available here; use cpu or auto")
    return dev


def build_model(name: str, options: dict):
    """``get_model(name, **options)`` with a clear error for options the model does not take."""
    from ..models import get_model

    try:
        return get_model(name, **options)
    except TypeError as err:
        given = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "none"
        raise ValueError(f"model {name!r} rejected its options ({given}): {err}") from None


def _defaults(cls) -> dict[str, Any]:
    """{option: default} over the solver class and the bases it forwards ``**options`` to."""
    out: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        for p in params:
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in out:
                out[p.name] = p.default
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return out


def _check_value(solver: str, key: str, value, default) -> None:
    where = f"option {solver}.{key}={value!r}"
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer (default {default})")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number (default {default})")
        if math.isnan(value) or (math.isinf(value) and math.isfinite(default)):
            raise ValueError(f"{where}: expected a finite number (default {default})")


def check_solver_options(name: str, options: dict):
    """Build solver ``name`` with ``options`` after checking each value's type against the
    option's default (numbers for numbers, finite unless the default is infinite, integers for
    integers, booleans for booleans).  Returns the built solver."""
    from ..solvers import SOLVERS, get_solver

    cls = SOLVERS.get(name)
    if cls is not None:
        defaults = _defaults(cls)
        for key, value in options.items():
            if key in defaults:
                _check_value(name, key, value, defaults[key])
    try:
        return get_solver(name, **options)
    except TypeError as err:
        raise ValueError(f"solver {name!r}: bad option value ({err})") from None


def check_solver_run(solver, model, nfes) -> None:
    """Everything about (solver, model, NFE budgets) that can fail before sampling: the model
    check, the step count of each budget and the grid it builds (an explicit grid included)."""
    solver.check_model(model)
    for n in nfes:
        steps = solver.steps_for_nfe(n)
        try:
            solver.make_grid(model.process, steps)
        except (ValueError, TypeError, IndexError) as err:
            raise ValueError(f"solver {solver.info.name!r}: its grid cannot be built at NFE {n}: {err}") from None
