"""Shared pieces of the command line: the ``solverzoo`` group, error handling (bad input -> exit 2),
option parsing (``-o solver.key=value``, ``-m key=value``, comma lists), shared options,
progress bars and the results tables."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> None:
    """Stop with a usage error: exit code 2 and ``message`` (name the problem and the valid choices)."""
    raise click.UsageError(message)


def usage_errors(fn):
    """ValueErrors from the library (the validation layer's, :mod:`solverzoo.bench.validate`) become clean
    usage errors (exit code 2); a filesystem error names the path (exit code 2); any other error is
    reported in one line with exit code 1, never as a traceback (``SOLVERZOO_DEBUG=1`` re-raises it)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        import os

        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except ValueError as err:
            raise click.UsageError(str(err)) from None
        except OSError as err:
            where = f" {err.filename}" if getattr(err, "filename", None) else ""
            raise click.UsageError(f"cannot read or write{where}: {err.strerror or err}; check the path, its "
                                   f"permissions and the free space, then run again") from None
        except Exception as err:  # noqa: BLE001 - the last guard: a message, not a traceback
            if os.environ.get("SOLVERZOO_DEBUG"):
                raise
            err_console.print(f"[red]Error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                              f" (set SOLVERZOO_DEBUG=1 for the traceback)")
            sys.exit(1)

    return wrapper


def parse_csv(value: str | None, kind=str, what: str = "value") -> list | None:
    """A comma-separated option value as a list of ``kind`` (None stays None); exit 2 on an empty or bad list."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        fail(f"empty list of {what}s")
    try:
        return [kind(v) for v in items]
    except ValueError:
        fail(f"could not read {what}s from {value[:80]!r}")


def parse_solver_options(options: tuple[str, ...], solvers: list[str] | None) -> dict[str, dict]:
    """``-o solver.key=value`` (or ``key=value`` for every solver; under ``"*"`` when ``solvers`` is None)
    -> {solver: {key: value}}
    (:func:`solverzoo.bench.validate.parse_solver_options`; bad text exits 2 naming the option)."""
    from ..bench.validate import parse_solver_options as parse

    try:
        return parse(options, solvers)
    except ValueError as err:
        fail(str(err))


def parse_model_options(items: tuple[str, ...]) -> dict:
    """``-m key=value`` items -> {key: value} (:func:`solverzoo.bench.validate.parse_value`)."""
    from ..bench.validate import parse_assignments

    try:
        return {key: value for _, key, value in parse_assignments(items, "key", "-m")}
    except ValueError as err:
        fail(str(err))


def progress_bar(disable: bool = False) -> Progress:
    """The progress bar every long command shows (on stderr; ``disable`` on torchrun ranks other than 0)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False,
                    disable=disable)


def stage_progress(progress: Progress) -> Callable[[str, int, int], None]:
    """A ``progress(stage, done, total)`` callback drawing one bar per stage on ``progress`` (the fixed
    costs of a command: reference statistics, oracle floors)."""
    tasks: dict[str, object] = {}

    def advance(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    return advance


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="solverzoo")
def main() -> None:
    """solverzoo: diffusion-sampling acceleration methods side by side."""
    from ..plugins import load_plugins

    for problem in load_plugins():  # solvers published under the entry-point group solverzoo.solvers
        click.echo(f"solverzoo: skipped {problem}", err=True)


def nonempty_path(ctx, param, value):
    """Click callback of every ``--out``: an empty path is refused (it would mean the current folder)."""
    if value is None:
        return None
    if str(value).strip() == "":
        raise click.BadParameter("an empty path; give a name", ctx=ctx, param=param)
    return Path(value)


def check_out(out: Path, files: list[str], overwrite: bool) -> None:
    """Refuse (exit 2) to overwrite ``files`` already in ``out`` unless ``--overwrite``."""
    existing = [f for f in files if (out / f).exists()]
    if existing and not overwrite:
        fail(f"{out} already holds {', '.join(existing)}; pass --overwrite or choose another --out")


def read_data_or_fail(option: str, data: str, loader):
    """Run a data loader; an unreadable file (a corrupt image, a broken array) is a usage error naming it."""
    import zipfile

    try:
        return loader()
    except click.UsageError:
        raise
    except ValueError as err:  # solverzoo.data's errors name the file already
        fail(f"{option}: {err}")
    except (OSError, SyntaxError, EOFError, zipfile.BadZipFile, KeyError) as err:
        fail(f"{option} {data}: cannot read the data ({type(err).__name__}: {err})")


def fmt(value: float | None, digits: int = 3) -> str:
    """A table cell: ``value`` to ``digits`` significant figures, a dash for None."""
    return "—" if value is None else f"{value:.{digits}g}"


def print_table(results: dict) -> None:
    """The primary-metric table (verdict marks), then one table per declared metric the cells have
    (``results["metrics"]``), then the cells that failed and why."""
    from ..bench.report import SIGNIFICANCE, table_rows

    nfes, by_solver = table_rows(results)
    floor = results.get("oracle_floor")
    metric = results["metric"]
    tables = {"value": Table(title=f"{metric} (lower is better; oracle floor {fmt(floor)}). Cells: value ± std "
                                   f"[counted NFE]; * best in the column, = not significantly worse "
                                   f"(within {SIGNIFICANCE:g} std)")}
    for name, info in results.get("metrics", {}).items():  # one table per declared metric the cells have
        if not any(c.get("metrics", {}).get(name) is not None for cs in by_solver.values() for c in cs.values()):
            continue
        title = info.get("title", name) if isinstance(info, dict) else name
        if name == "fd":
            title = f"{results.get('fd_metric', 'fd')}: {title}"
        floor = results.get(info.get("floor")) if isinstance(info, dict) and info.get("floor") else None
        floor = floor.get(name) if isinstance(floor, dict) else floor
        if isinstance(floor, (int, float)):
            title += f"; oracle floor {fmt(floor, 4)}"
        if name.startswith("path_"):
            ref = results.get("path_reference", {})
            title += f" [reference {ref.get('solver')} at NFE {ref.get('nfe')}, {ref.get('num_samples')} samples]"
        tables[name] = Table(title=title)
    for t in tables.values():
        t.add_column("solver")
        for n in nfes:
            t.add_column(f"NFE {n}", justify="right")
    for solver, cells in by_solver.items():
        rows = {key: [solver] for key in tables}
        for n in nfes:
            r = cells.get(n)
            for key in tables:
                if r is None:
                    rows[key].append("")
                elif r["status"] != "ok":
                    rows[key].append(f"[red]{r['status']}")
                elif key == "value":
                    mark = {"best": " [bold green]*", "tie": " [green]="}.get(r["verdict"], "  ")
                    unc = "" if r["uncertainty"] is None else f" ± {r['uncertainty']:.2g}"
                    rows[key].append(f"{r['value']:.3g}{unc} [{r['nfe']}]{mark}")
                else:
                    info = results["metrics"].get(key)
                    digits = info.get("digits", 4) if isinstance(info, dict) else 4
                    rows[key].append(fmt(r.get("metrics", {}).get(key), digits))
        for key, t in tables.items():
            t.add_row(*rows[key])
    for t in tables.values():
        console.print(t)
    failed = [(solver, n, c) for solver, cells in by_solver.items() for n, c in cells.items() if c["status"] != "ok"]
    if failed:
        t = Table(title="cells that failed (solverzoo bench --resume --retry-errors runs them again)")
        for column in ("solver", "NFE", "status", "why"):
            t.add_column(column)
        for solver, n, c in failed:
            reason = (c.get("message") or "").strip().splitlines()
            t.add_row(solver, str(n), c["status"], (reason[0] if reason else "")[:160])
        console.print(t)


def set_threads(threads: int | None) -> None:
    """``--threads``: set torch's intra-op threads (None: leave torch's default)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def command_line() -> str:
    """The command as typed (recorded in results and grid files)."""
    return "solverzoo " + " ".join(shlex.quote(a) for a in sys.argv[1:])


_GUIDANCE = click.option(
    "--guidance", type=float, default=None,
    help="Classifier-free guidance weight w: D_u + w (D_c - D_u) (1: conditional; one guided call = 1 NFE). "
         "Needs a class-conditional model (gmm-image -m conditional=true, digits-cond-unet).")
_LABELS = click.option(
    "--labels", default=None,
    help="Class of each sample: 0,1,2 (cycled over the sample index), all (0..K-1 cycled, the default "
         "under --guidance) or random (seeded per sample).")


def guidance_options(fn):
    """``--guidance`` and ``--labels`` (classifier-free guidance), shared by ``sample`` and ``bench``."""
    return _GUIDANCE(_LABELS(fn))


#: ``--noise cpu|philox`` (per-sample noise streams), shared by ``sample`` and ``bench``
noise_option = click.option(
    "--noise", type=click.Choice(["auto", "cpu", "philox"]), default="auto", show_default=True,
    help="Per-sample noise: CPU generators (reproduces earlier results), Philox on the device, or auto: "
         "philox on CUDA, cpu elsewhere.")
