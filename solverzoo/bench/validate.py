"""The checks every command makes before any work: option text, model options, devices, budgets,
seeds, output folders and environment variables.

Every check raises ``ValueError`` with a message naming the option, file or variable, the problem
and the valid choices; the command line turns it into exit code 2.  The same functions serve
``bench``, ``sample``, ``score``, ``report``, ``filters``, ``fid-ref``, ``tune-grid``, ``train`` and
Python callers (:func:`solverzoo.bench.plan` runs them on a :class:`~solverzoo.bench.schema.BenchConfig`).
Solvers are built from option dicts by :func:`solverzoo.sampling.build_solver` alone.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import typing
from pathlib import Path
from typing import Any

import torch

from ..sampling import build_solver

__all__ = ["check_device", "build_model", "check_model_options", "check_solver_options", "check_solver_run",
           "parse_value", "parse_assignments", "parse_solver_options", "check_nfes", "check_seed",
           "check_out_path", "check_env", "env_int", "env_float", "MAX_VALUE_CHARS", "MAX_JSON_DEPTH"]

#: The longest value text an option takes (a grid of a few hundred sigmas fits; a 5000-digit number does not).
MAX_VALUE_CHARS = 4000
#: The deepest nesting of lists / objects an option value may have.
MAX_JSON_DEPTH = 4


# ----------------------------------------------------------------------------- option text
def _depth(value) -> int:
    """Levels of list / object nesting of a parsed JSON value, counted breadth-first and no further than
    one past :data:`MAX_JSON_DEPTH` (so a hostile value cannot exhaust the stack)."""
    level, frontier = 0, [value]
    while level <= MAX_JSON_DEPTH:
        containers = [v for v in frontier if isinstance(v, (dict, list))]
        if not containers:
            return level
        level += 1
        frontier = [item for c in containers for item in (c.values() if isinstance(c, dict) else c)]
    return level


def parse_value(text: str, where: str = "option") -> Any:
    """Option text -> a value: JSON where it parses (numbers, lists, objects, true/false, null), the
    words nan / inf as floats, else the text itself.  ``where`` names the option in errors: values
    longer than :data:`MAX_VALUE_CHARS`, nested deeper than :data:`MAX_JSON_DEPTH`, or numbers
    too large for a float are refused."""
    if len(text) > MAX_VALUE_CHARS:
        raise ValueError(f"{where}: the value is {len(text)} characters long; at most {MAX_VALUE_CHARS} are read")
    if text.strip().lower() in ("nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"):
        return float(text)
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        if text.lstrip()[:1] in ("[", "{") and text.count(text.lstrip()[0]) > MAX_JSON_DEPTH:
            raise ValueError(f"{where}: not a readable list or object (at most {MAX_JSON_DEPTH} levels of "
                             f"nesting)") from None
        return text
    except ValueError as err:  # e.g. an integer beyond Python's digit limit
        raise ValueError(f"{where}: cannot read the value ({err})") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"{where}: nested more than {MAX_JSON_DEPTH} levels deep; at most {MAX_JSON_DEPTH} are "
                         f"allowed")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
        raise ValueError(f"{where}: {len(str(abs(value)))}-digit integer is out of range")
    return value


def parse_assignments(items, what: str, flag: str) -> list[tuple[str, str, Any]]:
    """``key=value`` texts -> [(text, key, value)]; ``flag`` (``-o`` / ``-m``) names them in errors."""
    out = []
    for item in items:
        if "=" not in item:
            raise ValueError(f"{flag} {item!r}: not of the form {what}=value")
        key, text = item.split("=", 1)
        if not key.strip():
            raise ValueError(f"{flag} {item!r}: no option name before '='")
        out.append((item, key.strip(), parse_value(text, f"{flag} {key.strip()}")))
    return out


def parse_solver_options(items, solvers: list[str] | None) -> dict[str, dict]:
    """``-o solver.key=value`` (or ``key=value`` for every solver of the run) -> {solver: {key: value}};
    with ``solvers`` None (the run's solvers are not known yet) ``key=value`` goes under ``"*"``, which
    :func:`solverzoo.bench.plan` gives to every solver.  ``grid=@FILE`` reads the sigmas of a grid file
    (``solverzoo tune-grid``); an explicit grid, inline or from a file, is checked against every budget
    by :func:`check_solver_run`."""
    from ..tune import load_grid_file

    out: dict[str, dict] = {}
    for item, key, value in parse_assignments(items, "[solver.]key", "-o"):
        target, _, name = key.rpartition(".")
        if target and solvers is not None and target not in solvers:
            raise ValueError(f"-o {item!r} names solver {target!r}, which is not in this run ({', '.join(solvers)})")
        if name == "grid" and isinstance(value, str) and value.startswith("@"):
            try:
                value = load_grid_file(value[1:])[0]
            except ValueError as err:
                raise ValueError(f"-o {item!r}: {err}") from None
        for t in [target] if target else (solvers if solvers is not None else ["*"]):
            out.setdefault(t, {})[name] = value
    return out


# ----------------------------------------------------------------------------- devices, seeds, budgets
def check_device(device: str | None) -> torch.device:
    """'cpu', 'cuda', 'cuda:N', 'mps' or 'auto' -> a usable torch device."""
    from ..sampling import resolve_device

    text = "auto" if device is None else str(device).strip()
    try:
        dev = resolve_device(text)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"--device {device!r} is not a usable device ({str(err).splitlines()[0]}); use cpu, cuda, "
                         f"cuda:N or auto") from None
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device!r}: there are {torch.cuda.device_count()} CUDA devices")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device!r}: solverzoo runs on cpu, cuda, cuda:N or auto")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"--device {device!r}: MPS is not available here; use cpu or auto")
    return dev


def check_seed(seed, what: str = "--seed") -> int:
    """A seed is an integer in [0, 2^63)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"{what} must be an integer in [0, 2^63), got {seed!r}")
    return seed


def check_nfes(nfes, what: str = "--nfe") -> list[int]:
    """NFE budgets: positive integers, each once (a repeated budget would run the same cell twice;
    use --repeats for disjoint seed ranges)."""
    if not nfes:
        raise ValueError(f"{what}: no NFE budget given")
    out = []
    for n in nfes:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{what}: NFE budgets must be positive integers, got {n!r}")
        if n in out:
            raise ValueError(f"{what}: budget {n} is given twice; give each budget once (use --repeats for "
                             f"disjoint seed ranges of one cell)")
        out.append(n)
    return out


# ----------------------------------------------------------------------------- typed options
_SIMPLE = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None), "dict": dict, "list": list,
           "tuple": tuple}


def _annotation_types(annotation) -> tuple[type, ...] | None:
    """The plain types an annotation allows (``int | None`` -> (int, NoneType)); None when it names
    anything else (a class, a torch type: not checkable from option text)."""
    if annotation is inspect.Parameter.empty:
        return None
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    parts = [p.strip() for p in text.replace("Optional[", "").replace("]", "").split("|")]
    if not parts or any(p.split("[")[0] not in _SIMPLE for p in parts):
        return None
    return tuple(_SIMPLE[p.split("[")[0]] for p in parts)


def _check_typed(where: str, value, types: tuple[type, ...]) -> None:
    if value is None and type(None) in types:
        return
    if bool in types and isinstance(value, bool):
        return
    if int in types and isinstance(value, int) and not isinstance(value, bool):
        return
    if float in types and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and math.isnan(value):
            raise ValueError(f"{where}: expected a number, got nan")
        return
    for t in (str, dict, list, tuple):
        if t in types and isinstance(value, list if t is tuple else t):
            return
    names = " or ".join("null" if t is type(None) else {"int": "an integer", "float": "a number",
                                                           "bool": "true or false"}.get(t.__name__, f"a {t.__name__}")
                        for t in types)
    raise ValueError(f"{where}: expected {names}")


def _model_parameters(name: str) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword parameters a registered model takes (its factory, and the class it builds when
    the factory forwards ``**options``), and whether any name may be valid."""
    from ..models import MODELS

    factory = MODELS.lookup(name)
    params: dict[str, inspect.Parameter] = {}
    open_ended = False
    targets: list = [factory]
    try:
        made = typing.get_type_hints(factory).get("return")
    except Exception:  # a hint that does not resolve: check the factory's own parameters only
        made = None
    while targets:
        fn = targets.pop(0)
        sig = inspect.signature(fn)
        forwards = False
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                forwards = True
            elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                params.setdefault(p.name, p)
        if forwards:
            if isinstance(made, type) and fn is factory and "__init__" in vars(made):
                targets.append(made.__init__)
            else:
                open_ended = True
    return params, open_ended


def check_model_options(name: str, options: dict) -> None:
    """Model options before the model is built: names the model takes, values of the declared type
    (``resolution=8.5`` is not an integer; ``resolution=abc`` is not a number)."""
    from ..models import MODELS

    if not isinstance(options, dict):
        raise ValueError(f"model options must be a mapping, got {type(options).__name__}")
    if name not in MODELS:
        return  # a diffusers folder, a checkpoint or module:factory: checked as it loads
    params, open_ended = _model_parameters(name)
    unknown = sorted(set(options) - set(params))
    if unknown and not open_ended:
        raise ValueError(f"-m {unknown[0]}: model {name!r} has no option {unknown[0]!r}; valid options: "
                         f"{', '.join(params) or '(none)'}")
    for key, value in options.items():
        p = params.get(key)
        if p is None:
            continue
        types = _annotation_types(p.annotation)
        if types is None and p.default not in (None, inspect.Parameter.empty):
            types = (float, int) if type(p.default) is float else (type(p.default),)
        if types is not None:
            _check_typed(f"-m {key}={value!r}", value, types)


def build_model(name: str, options: dict):
    """Model ``name`` with ``options``, checked first (:func:`check_model_options`); errors the model
    raises while it is built name the model and its options."""
    from ..models import get_model

    check_model_options(name, options)
    given = ", ".join(f"{k}={v!r}" for k, v in options.items())
    try:
        return get_model(name, **options)
    except (TypeError, ValueError, OverflowError) as err:
        reason = _first_line(err)
        if given:
            raise ValueError(f"model {name!r} rejected its options ({given}): {reason}") from None
        raise ValueError(f"model {name!r} could not be built: {reason}") from None
    except (OSError, RuntimeError, EOFError, KeyError) as err:
        raise ValueError(f"model {name!r} could not be loaded ({type(err).__name__}: {_first_line(err)}); "
                         f"check the checkpoint or folder it names") from None


def _first_line(err: BaseException) -> str:
    """An error's first line, without torch's advice to unpickle untrusted files."""
    text = (str(err).strip().splitlines() or [""])[0]
    if "Weights only load failed" in text:
        text = text[: text.index("(") if "(" in text else len(text)].rstrip() + \
            " (not a checkpoint solverzoo wrote, or a corrupt one; solverzoo never unpickles arbitrary objects)"
    return text[:400]


def check_solver_options(name: str, options: dict):
    """The solver ``name`` built from ``options`` (:func:`solverzoo.sampling.build_solver`: typed values,
    unknown names refused)."""
    return build_solver(name, options)


def check_solver_run(solver, model, nfes) -> dict[int, int]:
    """Everything about (solver, model, NFE budgets) that can fail before sampling: the model check,
    the step count of each budget and the grid it builds (an explicit grid must have exactly the
    steps the budget gives, inline or from a file).  Returns {nfe: steps}."""
    from ..tune import check_grid_fits

    solver.check_model(model)
    steps = {}
    for n in nfes:
        steps[n] = solver.steps_for_nfe(n)
        if isinstance(solver.grid, (list, tuple)):
            check_grid_fits(solver, solver.grid, n, source=f"-o {solver.info.name}.grid")
        try:
            solver.make_grid(model.process, steps[n])
        except (ValueError, TypeError, IndexError) as err:
            raise ValueError(f"solver {solver.info.name!r}: its grid cannot be built at NFE {n}: {err}") from None
    return steps



# ----------------------------------------------------------------------------- files and folders
def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def check_out_path(out, what: str = "--out", kind: str = "folder") -> Path:
    """An output path that can be made: not empty, no part longer than the filesystem allows, no
    existing file where a folder must be (or the reverse), a parent that exists or can be made."""
    if out is None or str(out).strip() == "":
        raise ValueError(f"{what}: an empty path; give a {kind} name")
    path = Path(out)
    for part in path.parts:
        if len(part.encode()) > 255:  # longer than any common filesystem takes (checked before any lookup)
            raise ValueError(f"{what} {str(out)[:60]}...: the name {part[:40]}... is {len(part.encode())} bytes "
                             f"long; file names take at most 255")
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    limit = _name_max(existing if existing.is_dir() else existing.parent)
    for part in path.parts:
        if len(part.encode()) > limit:
            raise ValueError(f"{what} {str(out)[:60]}...: the name {part[:40]}... is {len(part.encode())} bytes; "
                             f"this filesystem takes at most {limit}")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise ValueError(f"{what} {out}: is a file, not a folder; choose another --out")
    if kind == "file" and path.is_dir():
        raise ValueError(f"{what} {out}: is a folder; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{what} {out}: {parent} is a file, so the {kind} cannot be made")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValueError(f"{what} {out}: the folder {parent} is not writable; choose another --out")
            break
    return path


# ----------------------------------------------------------------------------- environment
def _env_value(name: str, parse, kind: str):
    """The environment variable ``name`` parsed by ``parse`` (None when unset or blank)."""
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return None, text
    try:
        return parse(text), text
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not {kind}") from None


def env_int(name: str, default: int, minimum: int = 0) -> int:
    """An integer environment variable (``WORLD_SIZE``, ``RANK``...), or ``default`` when unset."""
    value, text = _env_value(name, int, "an integer")
    if value is None:
        return default
    if value < minimum:
        raise ValueError(f"environment variable {name}={text!r} must be >= {minimum}")
    return value


def env_float(name: str, default: float, positive: bool = True) -> float:
    """A finite (positive) number from an environment variable, or ``default`` when unset."""
    value, text = _env_value(name, float, "a number")
    if value is None:
        return default
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"environment variable {name}={text!r} must be a finite number > 0")
    return value


def check_env() -> dict:
    """The torchrun variables the bench reads, checked: WORLD_SIZE >= 1, 0 <= RANK < WORLD_SIZE,
    SOLVERZOO_DIST_TIMEOUT_MIN > 0 (minutes)."""
    world = env_int("WORLD_SIZE", 1, minimum=1)
    rank = env_int("RANK", 0)
    if rank >= world:
        raise ValueError(f"environment variable RANK={rank} must be below WORLD_SIZE={world}")
    env_int("LOCAL_RANK", 0)
    return {"world_size": world, "rank": rank, "timeout_min": env_float("SOLVERZOO_DIST_TIMEOUT_MIN", 30.0)}
