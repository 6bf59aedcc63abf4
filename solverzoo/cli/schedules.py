"""``solverzoo tune-grid``: step schedules tuned for a solver and budget."""

from __future__ import annotations

import click

from .common import (
    command_line,
    console,
    fail,
    main,
    nonempty_path,
    parse_model_options,
    parse_solver_options,
    progress_bar,
    usage_errors,
)


@main.command("tune-grid")
@click.option("--model", default="gmm-image", show_default=True)
@click.option("--model-option", "-m", multiple=True, help="key=value passed to the model, e.g. resolution=16.")
@click.option("--solver", required=True, help="A deterministic (ODE) solver (solverzoo list).")
@click.option("--nfe", type=int, required=True, help="The NFE budget the grid is tuned for.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              callback=nonempty_path, required=True, help="Grid file (.json).")
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
    from ..bench.validate import build_model, check_out_path, check_solver_run
    from ..sampling import build_solver
    from ..tune import save_grid_file, tune_grid

    options = parse_solver_options(option, [solver]).get(solver, {})
    built = build_solver(solver, options)
    if built.stochastic:
        fail(f"--solver {solver}: tune-grid needs a deterministic (ODE) solver; {solver!r} is stochastic")
    check_out_path(out, kind="file")
    if out.exists() and not overwrite:
        fail(f"{out} exists; pass --overwrite or choose another --out")
    if not out.parent.is_dir():
        fail(f"--out {out}: the folder {out.parent} does not exist")
    net = build_model(model, parse_model_options(model_option))
    check_solver_run(built, net, [nfe])
    with progress_bar() as progress:
        task = progress.add_task(f"tune {solver} @ {nfe} NFE", total=max_evals)

        def on_eval(k: int, best: float) -> None:
            progress.update(task, completed=min(k, max_evals), description=f"tune {solver} @ {nfe} NFE: {best:.5f}")

        result = tune_grid(net, built, nfe, num_samples=num_samples, seed=seed, reference_steps=reference_steps,
                           method=method, max_evals=max_evals, free_end=not fixed_end, on_eval=on_eval)
    command = command_line()
    save_grid_file(out, result, model=net.describe(), solver=solver, solver_options=options, nfe=nfe, command=command)
    console.print(f"{solver} @ {nfe} NFE: pathwise error {result.objective_before:.5f} ({result.start}) -> "
                  f"{result.objective_after:.5f} in {result.evaluations} runs, {result.seconds:.0f} s "
                  f"(reference error {result.reference_error:.1e}) -> {out} (use: -o {solver}.grid=@{out})")
