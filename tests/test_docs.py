"""The reference pages agree with the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from solverzoo.cli.solvers import markdown_table
from solverzoo.solvers import SOLVERS, list_solvers

ROOT = Path(__file__).resolve().parents[1]


def test_docs_solver_table_is_the_registry():
    """docs/solvers.md's table is ``solverzoo list --markdown`` of the built-in solvers (regenerate it
    with that command when a solver is added or its declared data changes)."""
    from solverzoo.bench.selectors import families

    builtin = {n for n in list_solvers() if SOLVERS[n].__module__.startswith("solverzoo.solvers.")}
    infos = [SOLVERS[n].info.as_dict() for members in families().values() for n in members if n in builtin]
    page = (ROOT / "docs" / "solvers.md").read_text()
    table = re.search(r"<!-- solver-table -->\n(.*?)\n<!-- /solver-table -->", page, re.S)
    assert table is not None, "docs/solvers.md lost its <!-- solver-table --> markers"
    assert table.group(1) == markdown_table(infos)
