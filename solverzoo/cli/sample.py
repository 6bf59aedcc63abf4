"""``solverzoo sample``: one solver, samples.npz and grid.png."""

from __future__ import annotations

import json

import click

from .common import (
    check_out,
    console,
    guidance_options,
    main,
    noise_option,
    nonempty_path,
    parse_model_options,
    parse_solver_options,
    progress_bar,
    usage_errors,
)


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
@click.option("--out", type=click.Path(file_okay=False, path_type=str),
              callback=nonempty_path, required=True)
@click.option("--overwrite", is_flag=True, help="Replace samples.npz / grid.png already in --out.")
@noise_option
@guidance_options
@usage_errors
def sample_command(model, model_option, solver, nfe, num_samples, seed, batch_size, device, option, out, overwrite,
                   noise, guidance, labels):
    """Sample with one solver: OUT/samples.npz and OUT/grid.png (image models)."""
    from ..bench.validate import build_model, check_device, check_out_path, check_solver_run
    from ..io import save_image_grid, save_npz
    from ..models.guidance import condition
    from ..sampling import build_solver, sample

    options = parse_solver_options(option, [solver]).get(solver, {})
    check_device(device)
    check_out_path(out)
    check_out(out, ["samples.npz", "grid.png"], overwrite)
    net = build_model(model, parse_model_options(model_option))
    built = build_solver(solver, options)
    steps = check_solver_run(built, net, [nfe])[nfe]
    condition(net, guidance, labels, seed)  # bad guidance / labels: exit 2 before any work
    with progress_bar() as progress:
        task = progress.add_task(f"{solver} @ {nfe} NFE", total=num_samples)
        result = sample(net, built, steps=steps, num_samples=num_samples, seed=seed, batch_size=batch_size,
                        device=device, on_batch=lambda k: progress.advance(task, k), noise=noise,
                        guidance=guidance, labels=labels)
    result.nfe_requested = nfe
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model": net.describe(), **result.describe(), "seed": seed, "num_samples": num_samples}
    save_npz(out / "samples.npz", samples=result.samples, meta=json.dumps(meta))
    if net.is_image:
        save_image_grid(out / "grid.png", result.samples)
    elif (out / "grid.png").exists():
        (out / "grid.png").unlink()  # an earlier run's picture is not this run's
    console.print(f"{solver}: {result.nfe} model calls per sample (requested {nfe}), {result.steps} steps, "
                  f"{result.seconds:.2f} s -> {out / 'samples.npz'}")
