"""``solverzoo list``: the solver registry."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from .common import console, main


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON (every field, full citations).")
@click.option("--wide", is_flag=True, help="Every column (grid, preconditioning, paper); needs a wide terminal.")
@click.option("--markdown", is_flag=True, help="A Markdown table by family (the one in docs/solvers.md).")
def list_command(as_json: bool, wide: bool, markdown: bool) -> None:
    """The solver registry by family: ODE/SDE, order, model calls per step, minimum NFE (--wide: grid, paper)."""
    from ..bench.selectors import families
    from ..solvers import SOLVERS, list_solvers

    if as_json:
        click.echo(json.dumps([SOLVERS[name].info.as_dict() for name in list_solvers()], indent=1))
        return
    infos = [SOLVERS[name].info.as_dict() for members in families().values() for name in members]
    if markdown:
        click.echo(markdown_table(infos))
        return
    from rich import box

    table = Table(title="solverzoo solvers" + ("" if wide else " (list --wide / --json: all fields)"),
                  caption="--solvers takes names, families, 'all' or globs (e.g. pds,seeds or 'dpmpp_*')",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("family", "name", "kind", "order", "calls", "min NFE"):
        table.add_column(col, no_wrap=True)
    if wide:
        for col in ("grid", "precond."):
            table.add_column(col, no_wrap=True)
        table.add_column("paper", overflow="fold")
    previous = None
    for info in infos:
        row = ["" if info["family"] == previous else info["family"], info["name"], info["kind"], str(info["order"]),
               str(info["calls_per_step"]), str(info["min_nfe"])]
        if wide:
            row += [info["grid"], ",".join(info["preconditioning"]) or "-", info["paper"]]
        previous = info["family"]
        table.add_row(*row)
    (Console(width=max(console.width, 200)) if wide and not console.is_terminal else console).print(table)


def markdown_table(infos: list[dict]) -> str:
    """The registry as a Markdown table, one row per solver grouped by family: kind, the order its
    defaults reach, model calls per step, minimum NFE, default grid, in the default sweep, paper."""
    lines = ["| family | solver | kind | order | calls/step | min NFE | grid | default bench | paper |",
             "|---|---|---|---|---|---|---|---|---|"]
    previous = None
    for info in infos:
        family = "" if info["family"] == previous else info["family"]
        previous = info["family"]
        lines.append(f"| {family} | `{info['name']}` | {info['kind']} | {info['order']} | {info['calls_per_step']} | "
                     f"{info['min_nfe']} | {info['grid']} | {'yes' if info['in_default_bench'] else 'no'} | "
                     f"{info['paper'].replace('|', '/')} |")
    return "\n".join(lines)
