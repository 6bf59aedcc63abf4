"""``solverzoo report`` (tables and plots from saved results, or two folders compared) and
``solverzoo score`` (samples scored on the bench's scale)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from .common import console, err_console, fail, fmt, main, parse_model_options, print_table, usage_errors


def _short(value) -> str:
    text = value if isinstance(value, str) else ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    return text[:120]


@main.command("report")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.argument("other_dir", type=click.Path(path_type=Path), required=False)
@usage_errors
def report_command(results_dir: Path, other_dir: Path | None) -> None:
    """Rebuild the tables, CSV and plots from a saved results folder; with a second folder,
    compare the two (the difference per solver and NFE; nothing is rewritten)."""
    from ..bench.report import load_results, table_rows, write_outputs

    results = load_results(results_dir)
    if other_dir is None:
        out = results_dir if results_dir.is_dir() else results_dir.parent
        try:
            write_outputs(results, out)
        except OSError as err:  # a read-only or full folder: the tables still print
            err_console.print(f"[yellow]could not write the CSV and plots to {out} ({err.strerror or err}); "
                              f"the tables follow")
        print_table(results)
        return
    other = load_results(other_dir)
    for key, what in (("metric", "metrics"), ("model", "models")):
        a, b = results.get(key), other.get(key)
        if key == "model":
            a = {k: (a or {}).get(k) for k in ("name", "shape", "process", "key")}
            b = {k: (b or {}).get(k) for k in ("name", "shape", "process", "key")}
        if a != b:
            fail(f"{results_dir} and {other_dir} hold different {what} ({_short(a)} vs {_short(b)}); their "
                 f"values cannot be compared cell by cell")
    nfes_a, cells_a = table_rows(results)
    nfes_b, cells_b = table_rows(other)
    nfes = sorted(set(nfes_a) | set(nfes_b))
    table = Table(title=f"{results['metric']}: {results_dir} -> {other_dir} (cells: a -> b, b - a)")
    table.add_column("solver")
    for n in nfes:
        table.add_column(f"NFE {n}", justify="right")
    for solver in list(dict.fromkeys([*cells_a, *cells_b])):
        row = [solver]
        for n in nfes:
            a, b = cells_a.get(solver, {}).get(n), cells_b.get(solver, {}).get(n)
            if a is None or b is None:
                row.append("only in " + ("b" if a is None else "a") if (a or b) else "")
            elif a["value"] is None or b["value"] is None:
                row.append(f"{a['status']} -> {b['status']}")
            else:
                row.append(f"{a['value']:.3g} -> {b['value']:.3g} ({b['value'] - a['value']:+.3g})")
        table.add_row(*row)
    console.print(table)


@main.command("score")
@click.argument("samples", type=click.Path(path_type=Path))
@click.option("--model", default="gmm-image", show_default=True, help="The model the samples are meant to follow.")
@click.option("--model-option", "-m", multiple=True, help="key=value passed to the model.")
@click.option("--feature", default=None, help="As for bench (default: the bench's metric for this model).")
@click.option("--reference", default=None, help="Learned models: reference data or fid-ref .npz (as for bench).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@usage_errors
def score_command(samples: Path, model, model_option, feature, reference, as_json) -> None:
    """Score SAMPLES (.npz with 'samples' or one array, or .npy; (N, C, H, W) in [-1, 1]) on the bench's scale."""
    import numpy as np

    from ..bench.validate import build_model
    from ..data import read_array
    from ..metrics.evaluate import evaluate

    if samples.is_dir() and (samples / "samples.npz").is_file():
        samples = samples / "samples.npz"  # the folder 'solverzoo sample --out' wrote
    if not samples.is_file():
        fail(f"{samples}: no such file (give an .npz or .npy of samples)")

    if samples.suffix not in (".npz", ".npy"):
        fail(f"{samples}: expected an .npz or .npy file of samples")
    if samples.suffix == ".npz":
        import zipfile

        try:
            with np.load(samples, allow_pickle=False) as z:
                keys = list(z.files)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            fail(f"{samples}: cannot read the archive ({type(err).__name__}: {err})")
        if "samples" not in keys and len(keys) != 1:
            fail(f"{samples}: holds {len(keys)} arrays ({', '.join(keys[:8]) or 'none'}) and none is named "
                 f"'samples'; save the samples as samples=... (np.savez(path, samples=x))")
    arr = read_array(samples, keys=("samples",))
    if np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.floating):
        fail(f"{samples}: samples of dtype {arr.dtype}; expected real floating-point samples in [-1, 1] "
             f"(convert uint8 images with x / 127.5 - 1)")
    net = build_model(model, parse_model_options(model_option))
    from ..models.base import AnalyticModel

    if reference is not None and isinstance(net, AnalyticModel):
        fail(f"--reference applies to learned models; {model!r} has exact moments (leave --reference out)")
    shape = tuple(net.shape)
    if arr.ndim == len(shape) + 1 and arr.shape[1:] != shape and arr.shape[-1] == shape[0] \
            and arr.shape[1:-1] == shape[1:]:
        arr = np.moveaxis(arr, -1, 1)  # (N, H, W, C) -> (N, C, H, W)
    if arr.ndim != len(shape) + 1 or tuple(arr.shape[1:]) != shape:
        fail(f"{samples}: samples of shape {arr.shape} do not match model {model!r}, whose samples are "
              f"(N, {', '.join(map(str, shape))})")
    if len(arr) < 2:
        fail(f"{samples}: holds {len(arr)} sample(s); scoring needs at least 2")
    result = evaluate(net, arr.astype(np.float64), feature, reference=reference)
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    floor = result["oracle_floor"]
    console.print(f"{result['metric']} = {result['value']:.4g} ± {result['uncertainty']:.2g} "
                  f"(N = {result['num_samples']}; oracle floor {fmt(floor)}, excess {fmt(result['excess'])})")
    for key, value in result["secondaries"].items():
        console.print(f"  {key} = {fmt(value, 4)}")
