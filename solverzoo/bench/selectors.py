"""Solver selectors for ``--solvers``: names, families, ``all`` and globs.

A selector list is comma-separated; each item is, in this order of precedence,

* a registered solver name (``heun``);
* ``all``: every registered solver (reference integrators included);
* a family, as ``solverzoo list`` shows it (``seeds``, ``edm``, ``score_sde``,
  ``dpm-solver``...; ``-`` and ``_`` are interchangeable; ``dpmpp`` is DPM-Solver++'s
  family ``dpm-solver``);
* a glob over solver names (``dpmpp_*``, ``seeds?``).

The result keeps the order of the items (registry order within an item) without
duplicates; an item that selects nothing is an error naming the valid choices.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from ..solvers import SOLVERS, list_solvers

__all__ = ["select_solvers", "families", "FAMILY_ALIASES"]

#: Other spellings of a family.
FAMILY_ALIASES = {"dpmpp": "dpm_solver", "dpm_solver_pp": "dpm_solver", "kdiffusion": "k_diffusion"}


def _key(family: str) -> str:
    return family.strip().lower().replace("-", "_")


def families() -> dict[str, list[str]]:
    """{family: [solver names]} in registry order."""
    out: dict[str, list[str]] = {}
    for name in list_solvers():
        out.setdefault(SOLVERS[name].info.family, []).append(name)
    return out


def select_solvers(spec: str | Iterable[str]) -> list[str]:
    """Solver names selected by ``spec`` (``"pds,seeds"``, ``["dpmpp_*", "heun"]``, ``"all"``)."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s and s.strip()]
    if not items:
        raise ValueError("empty solver selection; give solver names, families, 'all' or globs (see 'solverzoo list')")
    names = list_solvers()
    by_family = {_key(f): members for f, members in families().items()}
    chosen: list[str] = []
    for item in items:
        key = FAMILY_ALIASES.get(_key(item), _key(item))
        if item in SOLVERS:
            picked = [item]
        elif item.lower() == "all":
            picked = names
        elif key in by_family:
            picked = by_family[key]
        elif any(c in item for c in "*?["):
            picked = fnmatch.filter(names, item)
            if not picked:
                raise ValueError(f"solver pattern {item!r} matches no solver; solvers: {', '.join(names)}")
        else:
            raise ValueError(f"unknown solver or family {item!r}; solvers: {', '.join(names)}; "
                             f"families: {', '.join(sorted(families()))}; or 'all', or a glob such as 'dpmpp_*'")
        chosen += [p for p in picked if p not in chosen]
    return chosen
