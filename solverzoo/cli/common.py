"""Shared pieces of the command line: the ``solverzoo`` group, error handling (bad input -> exit 2),
option parsing (``-o solver.key=value``, ``-m key=value``, comma lists), shared options,
progress bars and the results tables."""

from __future__ import annotations

import json
import shlex
import sys
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
    """ValueErrors from the library become clean usage errors (exit code 2)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as err:
            raise click.UsageError(str(err)) from None

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
        fail(f"could not read {what}s from {value!r}")


def parse_value(text: str):
    """JSON where it parses (numbers, lists, true/false, NaN/Infinity), nan/inf words as floats, else the text."""
    if text.strip().lower() in ("nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"):
        return float(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_solver_options(options: tuple[str, ...], solvers: list[str], nfes: list[int] | None = None) -> dict[str, dict]:
    """``-o solver.key=value`` (or ``key=value`` for every solver) -> {solver: {key: value}}.
    ``grid=@FILE`` reads the sigmas of a grid file (``solverzoo tune-grid``); with ``nfes`` the
    file's step count must be the one the solver takes at every budget."""
    from ..tune import check_grid_fits, load_grid_file

    out: dict[str, dict] = {}
    grid_files: dict[str, str] = {}
    for item in options:
        if "=" not in item:
            fail(f"option {item!r} is not of the form [solver.]key=value")
        key, value = item.split("=", 1)
        target, _, name = key.rpartition(".")
        targets = [target] if target else solvers
        if target and target not in solvers:
            fail(f"option {item!r} names solver {target!r}, which is not in this run ({', '.join(solvers)})")
        parsed = parse_value(value)
        if name == "grid" and isinstance(parsed, str) and parsed.startswith("@"):
            try:
                parsed = load_grid_file(parsed[1:])[0]
            except ValueError as err:
                fail(f"option {item!r}: {err}")
        for t in targets:
            out.setdefault(t, {})[name] = parsed
            if name == "grid":
                grid_files.pop(t, None)
                if value.startswith("@"):
                    grid_files[t] = value[1:]
    if nfes:
        from ..solvers import get_solver

        for t, path in grid_files.items():
            built = get_solver(t, **out[t])
            for n in nfes:
                try:
                    check_grid_fits(built, out[t]["grid"], n, source=f"grid file {path!r}")
                except ValueError as err:
                    fail(f"-o {t}.grid=@{path}: {err}")
    return out


def parse_model_options(items: tuple[str, ...]) -> dict:
    """``-m key=value`` items -> {key: value} (values parsed as by :func:`parse_value`)."""
    out = {}
    for item in items:
        if "=" not in item:
            fail(f"model option {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        out[key] = parse_value(value)
    return out


def progress_bar(disable: bool = False) -> Progress:
    """The progress bar every long command shows (on stderr; ``disable`` on torchrun ranks other than 0)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False,
                    disable=disable)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="solverzoo")
def main() -> None:
    """solverzoo: diffusion-sampling acceleration methods side by side."""
    from ..plugins import load_plugins

    for problem in load_plugins():  # solvers published under the entry-point group solverzoo.solvers
        click.echo(f"solverzoo: skipped {problem}", err=True)


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
    """The primary-metric table (verdict marks), then FD, spectral error and path error (when present)."""
    from ..bench.report import SIGNIFICANCE, table_rows

    nfes, by_solver = table_rows(results)
    floor = results.get("oracle_floor")
    metric = results["metric"]
    tables = {"value": Table(title=f"{metric} (lower is better; oracle floor {fmt(floor)}). Cells: value ± std "
                                   f"[counted NFE]; * best in the column, = not significantly worse "
                                   f"(within {SIGNIFICANCE:g} std)")}
    fd_metric = results.get("fd_metric")
    if fd_metric and fd_metric != metric and any(c.get("fd") is not None for cs in by_solver.values()
                                                for c in cs.values()):
        tables["fd"] = Table(title=f"{fd_metric} (secondary: biased at N < d; oracle floor "
                                   f"{fmt(results.get('fd_oracle_floor'), 4)}). Cells: fd")
    spectral = results.get("spectral_floor")
    if spectral:
        tables["spectral_error"] = Table(title=f"spectral_error (0 = the exact radial power spectrum; oracle floor "
                                               f"{spectral['spectral_error']:.3f}). Cells: error (hf_ratio)")
    if any(c.get("path_rms") is not None for cs in by_solver.values() for c in cs.values()):
        ref = results.get("path_reference", {})
        tables["path_rms"] = Table(title=f"path_rms (ODE solvers: RMS distance to {ref.get('solver')} at NFE "
                                         f"{ref.get('nfe')} from the same noise, {ref.get('num_samples')} samples)")
    if any(c.get("label_accuracy") is not None for cs in by_solver.values() for c in cs.values()):
        tables["label_accuracy"] = Table(title="label_accuracy (the shipped digits classifier on each sample's "
                                               "requested label; 1 = all)")
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
                elif key == "spectral_error":
                    spec = r.get("spectral_error")
                    rows[key].append("" if spec is None else f"{spec:.3f} ({r['hf_ratio']:.2f})")
                else:
                    rows[key].append(fmt(r.get(key), 4))
        for key, t in tables.items():
            t.add_row(*rows[key])
    for t in tables.values():
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
    "--noise", type=click.Choice(["cpu", "philox"]), default="cpu", show_default=True,
    help="Per-sample noise: CPU generators (reproduces earlier results) or Philox on the device.")
