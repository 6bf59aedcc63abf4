"""The ``solverzoo`` command line: list, sample, bench, report, filters.

Bad input (an unknown solver, an NFE below a solver's minimum, a malformed file...)
exits with code 2 and a message that names the problem and the valid choices, before
any work starts; nothing already written is overwritten by a failed command.
"""

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


def _fail(message: str) -> None:
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


def _csv_list(value: str | None, kind=str, what: str = "value") -> list | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        _fail(f"empty list of {what}s")
    try:
        return [kind(v) for v in items]
    except ValueError:
        _fail(f"could not read {what}s from {value!r}")


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _solver_options(options: tuple[str, ...], solvers: list[str]) -> dict[str, dict]:
    """``-o solver.key=value`` (or ``key=value`` for every solver) -> {solver: {key: value}}."""
    out: dict[str, dict] = {}
    for item in options:
        if "=" not in item:
            _fail(f"option {item!r} is not of the form [solver.]key=value")
        key, value = item.split("=", 1)
        target, _, name = key.rpartition(".")
        targets = [target] if target else solvers
        if target and target not in solvers:
            _fail(f"option {item!r} names solver {target!r}, which is not in this run ({', '.join(solvers)})")
        for t in targets:
            out.setdefault(t, {})[name] = _parse_value(value)
    return out


def _model_options(items: tuple[str, ...]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            _fail(f"model option {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        out[key] = _parse_value(value)
    return out


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="solverzoo")
def main() -> None:
    """solverzoo: diffusion-sampling acceleration methods side by side."""


# ----------------------------------------------------------------------------- list
@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def list_command(as_json: bool) -> None:
    """The solver registry: family, ODE/SDE, order, model calls per step, minimum NFE, paper."""
    from .solvers import SOLVERS, list_solvers

    infos = [SOLVERS[name].info.as_dict() for name in list_solvers()]
    if as_json:
        click.echo(json.dumps(infos, indent=1))
        return
    table = Table(title="solverzoo solvers (full citations: solverzoo list --json)")
    for col in ("name", "family", "kind", "order", "calls/step", "min NFE", "grid", "precond."):
        table.add_column(col, no_wrap=True)
    table.add_column("paper", overflow="ellipsis", no_wrap=True, min_width=20)
    for info in infos:
        table.add_row(info["name"], info["family"], info["kind"], str(info["order"]), str(info["calls_per_step"]),
                      str(info["min_nfe"]), info["grid"], ",".join(info["preconditioning"]) or "-",
                      info["paper"].split(",")[0])
    console.print(table)


# ----------------------------------------------------------------------------- sample
def _check_out(out: Path, files: list[str], overwrite: bool) -> None:
    existing = [f for f in files if (out / f).exists()]
    if existing and not overwrite:
        _fail(f"{out} already holds {', '.join(existing)}; pass --overwrite or choose another --out")


@main.command("sample")
@click.option("--model", default="gmm-image", show_default=True, help="Model name (see the README).")
@click.option("--model-option", "-m", multiple=True, help="key=value passed to the model, e.g. resolution=64.")
@click.option("--solver", required=True, help="Solver name (solverzoo list).")
@click.option("--nfe", type=int, required=True, help="Budget of model calls per sample.")
@click.option("--num-samples", type=click.IntRange(1), default=64, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Default: all samples in one batch.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--option", "-o", multiple=True, help="Solver option key=value, e.g. -o s_churn=40.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--overwrite", is_flag=True, help="Replace samples.npz / grid.png already in --out.")
@usage_errors
def sample_command(model, model_option, solver, nfe, num_samples, seed, batch_size, device, option, out, overwrite):
    """Sample with one solver: OUT/samples.npz and OUT/grid.png (image models)."""
    import numpy as np

    from .models import get_model
    from .sampling import sample

    options = _solver_options(option, [solver]).get(solver, {})
    _check_out(out, ["samples.npz", "grid.png"], overwrite)
    net = get_model(model, **_model_options(model_option))
    with _progress() as progress:
        task = progress.add_task(f"{solver} @ {nfe} NFE", total=num_samples)
        result = sample(net, solver, nfe=nfe, num_samples=num_samples, seed=seed, batch_size=batch_size,
                        device=device, on_batch=lambda k: progress.advance(task, k), **options)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model": net.describe(), **result.describe(), "seed": seed, "num_samples": num_samples}
    np.savez(out / "samples.npz", samples=result.samples.numpy(), meta=json.dumps(meta))
    if net.is_image:
        _save_grid(result.samples, out / "grid.png")
    console.print(f"{solver}: {result.nfe} model calls per sample (requested {nfe}), {result.steps} steps, "
                  f"{result.seconds:.2f} s -> {out}")


def _save_grid(samples, path: Path, max_images: int = 64) -> None:
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = samples[:max_images].clamp(-1, 1).add(1).div(2)
    n = len(x)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    c, h, w = x.shape[1:]
    canvas = x.new_ones((c, rows * (h + 1) + 1, cols * (w + 1) + 1))
    for k in range(n):
        r, q = divmod(k, cols)
        canvas[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = x[k]
    img = canvas.permute(1, 2, 0).numpy()
    plt.imsave(path, img[..., 0] if c == 1 else img, cmap="gray" if c == 1 else None)


# ----------------------------------------------------------------------------- bench
@main.command("bench")
@click.option("--model", default="gmm-image", show_default=True)
@click.option("--model-option", "-m", multiple=True, help="key=value passed to the model, e.g. resolution=64.")
@click.option("--solvers", default=None, help="Comma-separated solver names. Default: every solver that applies.")
@click.option("--nfe", default="10,20,50", show_default=True, help="Comma-separated NFE budgets.")
@click.option("--num-samples", type=click.IntRange(2), default=500, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=500, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--feature", default="pixels", show_default=True, help="FD feature: pixels or pool:K.")
@click.option("--option", "-o", multiple=True, help="Solver option solver.key=value (or key=value for all).")
@click.option("--repeats", type=click.IntRange(1), default=1, show_default=True,
              help="Disjoint seed ranges per cell; the table shows mean ± std.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-out"), show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace results already in --out.")
@click.option("--resume", is_flag=True, help="Keep the rows already in --out (same options) and run the rest.")
@usage_errors
def bench_command(model, model_option, solvers, nfe, num_samples, seed, batch_size, device, feature, option,
                  repeats, out, overwrite, resume):
    """NFE-versus-FD sweep: a table, OUT/results.json, OUT/results.csv and OUT/nfe_vs_fd.png."""
    from .bench.report import write_outputs
    from .bench.runner import BenchConfig, default_solvers, run_bench
    from .metrics import metric_name
    from .models import get_model
    from .sampling import resolve_device
    from .solvers import get_solver

    nfes = _csv_list(nfe, int, "NFE budget")
    if any(n < 1 for n in nfes):
        _fail(f"NFE budgets must be positive, got {nfe}")
    solver_names = _csv_list(solvers, str, "solver")
    resolve_device(device)
    metric_name(feature)
    net = get_model(model, **_model_options(model_option))
    names = solver_names or default_solvers(net)
    solver_options = _solver_options(option, names)
    for name in names:  # validate every solver, option and budget before any work
        built = get_solver(name, **solver_options.get(name, {}))
        built.check_model(net)
        for n in nfes:
            built.steps_for_nfe(n)
    if overwrite and resume:
        _fail("--overwrite and --resume exclude each other")
    if not resume:
        _check_out(out, ["results.json"], overwrite)
    config = BenchConfig(model=model, model_options=_model_options(model_option), solvers=names,
                         solver_options=solver_options, nfe=nfes, num_samples=num_samples, seed=seed,
                         batch_size=batch_size, device=device, feature=feature, repeats=repeats)
    command = "solverzoo " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with _progress() as progress:
        task = progress.add_task("bench", total=len(names) * len(nfes) * num_samples * repeats)

        def on_row(row):
            fd = "—" if row.fd is None else f"{row.fd:.3f}"
            spec = "" if row.spectral_error is None else f"  spectral {row.spectral_error:.3f} hf {row.hf_ratio:.2f}"
            rep = f" #{row.repeat}" if repeats > 1 else ""
            progress.console.print(f"  {row.solver:>16} NFE {row.nfe_requested:>4}{rep} ({row.nfe} counted): "
                                   f"{row.metric} {fd}{spec}  [{row.status}] {row.seconds:.1f}s")

        results = run_bench(config, out, on_progress=lambda k: progress.advance(task, k), on_row=on_row,
                            command=command, resume=resume)
    write_outputs(results, out)
    print_table(results)
    bad = [r for r in results["rows"] if r["status"] != "ok"]
    for r in bad:
        err_console.print(f"[red]{r['solver']} @ {r['nfe_requested']}: {r['status']}: {r['message'].splitlines()[0]}")
    console.print(f"results: {out / 'results.json'}, {out / 'results.csv'}, {out / 'nfe_vs_fd.png'}")
    sys.exit(1 if bad else 0)


def print_table(results: dict) -> None:
    from .bench.report import table_rows

    nfes, by_solver = table_rows(results)
    table = Table(title=f"{results['metric']} (lower is better; oracle floor {results['oracle_floor']:.3f}). "
                        f"Cells: fd [counted NFE]")
    table.add_column("solver")
    for n in nfes:
        table.add_column(f"NFE {n}", justify="right")
    for solver, cells in by_solver.items():
        row = [solver]
        for n in nfes:
            r = cells.get(n)
            if r is None:
                row.append("")
            elif r["status"] != "ok":
                row.append(f"[red]{r['status']}")
            elif r["repeats"] > 1:
                row.append(f"{r['fd']:.2f} ± {r['fd_std']:.2f} [{r['nfe']}]")
            else:
                row.append(f"{r['fd']:.2f} [{r['nfe']}]")
        table.add_row(*row)
    console.print(table)


@main.command("report")
@click.argument("results_dir", type=click.Path(path_type=Path))
@usage_errors
def report_command(results_dir: Path) -> None:
    """Rebuild the table, CSV and plot from a saved results folder."""
    from .bench.report import load_results, write_outputs

    results = load_results(results_dir)
    out = results_dir if results_dir.is_dir() else results_dir.parent
    write_outputs(results, out)
    print_table(results)


# ----------------------------------------------------------------------------- filters
@main.group("filters")
def filters_group() -> None:
    """Build PDS / TDAS filters from data statistics."""


def _load_images(data: str, num: int):
    """A folder of images, an .npy/.npz array, or model:NAME -> (N, C, H, W) in [0, 1]."""
    import numpy as np
    import torch

    if data.startswith("model:"):
        from .models import get_model
        from .solvers.preconditioned import FILTER_SEED

        net = get_model(data[len("model:"):])
        if not net.is_image:
            _fail(f"model {net.name!r} is not an image model")
        return ((net.sample_data(FILTER_SEED, range(num)) + 1) / 2).clamp(0, 1)
    path = Path(data)
    if not path.exists():
        _fail(f"--data {data}: no such file or folder (give a folder of images, an .npy/.npz array, or model:NAME)")
    if path.is_dir():
        import matplotlib.image as mpimg

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:num]
        if not files:
            _fail(f"--data {data}: the folder holds no .png/.jpg images")
        arrays = []
        for f in files:
            a = mpimg.imread(f)
            a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0)
            arrays.append(a[..., None] if a.ndim == 2 else a[..., :3])
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            _fail(f"--data {data}: images have different shapes {sorted(shapes)}")
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    if path.suffix == ".npz":
        with np.load(path) as z:
            arr = z[z.files[0]]
    elif path.suffix == ".npy":
        arr = np.load(path)
    else:
        _fail(f"--data {data}: expected a folder, .npy, .npz, or model:NAME")
    if arr.ndim != 4:
        _fail(f"--data {data}: expected an (N, C, H, W) or (N, H, W, C) array, got shape {arr.shape}")
    x = torch.from_numpy(np.asarray(arr, dtype=np.float64))
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.max() > 1.5:
        x = x / 255.0
    elif x.min() < -0.01:
        x = (x + 1) / 2
    return x[:num].contiguous()


@filters_group.command("estimate")
@click.option("--data", required=True, help="Folder of images, .npy/.npz array, or model:NAME.")
@click.option("--num", type=click.IntRange(2), default=200, show_default=True, help="Images used.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--overwrite", is_flag=True)
@usage_errors
def filters_estimate(data: str, num: int, out: Path, overwrite: bool) -> None:
    """PDS statistics (log mean power spectrum, mean squared pixel) -> OUT (.npz)."""
    from .preconditioners import pds_statistics, save_filters

    if out.exists() and not overwrite:
        _fail(f"{out} exists; pass --overwrite")
    images = _load_images(data, num)
    stats = pds_statistics(images)
    save_filters(out, freq=stats.freq, space=stats.space, kind="statistic", source=data, count=len(images))
    console.print(f"PDS statistics of {len(images)} images {tuple(images.shape[1:])} -> {out} "
                  f"(use: -o pds.filters={out})")


@filters_group.command("tdas-estimate")
@click.option("--model", default="gmm-image", show_default=True)
@click.option("--model-option", "-m", multiple=True)
@click.option("--solver", default="pc", show_default=True, help="The accelerated sampler of the pilot run.")
@click.option("--nfe", type=int, required=True, help="The target NFE of the pilot run.")
@click.option("--reference", default=None, help="Reference images (folder/.npy/.npz). Default: the model's data.")
@click.option("--num", type=click.IntRange(2), default=200, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--overwrite", is_flag=True)
@usage_errors
def filters_tdas_estimate(model, model_option, solver, nfe, reference, num, out, overwrite):
    """TDAS appendix A.2: radial filter from a pilot run at the target NFE vs the data."""
    import torch

    from .models import get_model
    from .preconditioners import image_mean, save_filters, tdas_estimate
    from .sampling import sample
    from .solvers.preconditioned import FILTER_SEED

    if out.exists() and not overwrite:
        _fail(f"{out} exists; pass --overwrite")
    net = get_model(model, **_model_options(model_option))
    ref = _load_images(reference, num) if reference else _load_images(f"model:{model}", num)
    with _progress() as progress:
        task = progress.add_task(f"pilot {solver} @ {nfe} NFE", total=num)
        pilot = sample(net, solver, nfe=nfe, num_samples=num, seed=FILTER_SEED, batch_size=100,
                       on_batch=lambda k: progress.advance(task, k)).samples
    fast = ((pilot + 1) / 2).clamp(0, 1).to(torch.float64)
    est = tdas_estimate(fast, ref.to(torch.float64))
    freq = getattr(est.preconditioner, "values", None)
    save_filters(out, freq=freq, space=None, kind="filter", method="tdas", **est.describe(),
                 mean_image=image_mean(ref).tolist())
    console.print(f"TDAS radii {[round(r, 4) for r in est.radii]}, rates {[round(r, 4) for r in est.rates]} -> {out}")


if __name__ == "__main__":
    main()
