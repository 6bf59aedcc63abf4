"""``solverzoo filters``: PDS statistics and TDAS filters from data, made by the same pipeline as the
filters of ``bench`` and ``sample`` (:func:`solverzoo.sampling.build_filters`, the seeded data draw of
:func:`solverzoo.preconditioners.build.draw_data_images`), so one data set gives one set of filters."""

from __future__ import annotations

from pathlib import Path

import click

from .common import (
    console,
    fail,
    main,
    nonempty_path,
    parse_model_options,
    progress_bar,
    read_data_or_fail,
    usage_errors,
)


@main.group("filters")
def filters_group() -> None:
    """Build PDS / TDAS filters from data statistics."""


def check_filter_out(out: Path, overwrite: bool) -> None:
    """A filter file name: ends in .npz (the name printed is the file written), usable, and not an
    existing file unless ``--overwrite``."""
    from ..bench.validate import check_out_path

    check_out_path(out, kind="file")
    if out.suffix != ".npz":
        fail(f"--out {out}: a filter file is an .npz archive; give a name ending in .npz (e.g. {out}.npz)")
    if out.exists() and not overwrite:
        fail(f"--out {out} exists; pass --overwrite to replace it, or choose another --out")
    if not out.parent.is_dir():
        fail(f"--out {out}: the folder {out.parent} does not exist")


def load_unit_images(option: str, data: str, num: int):
    """``num`` images in [0, 1], float64 (N, C, H, W): ``model:NAME`` (exact samples of an analytic image
    model) or a seeded draw (:func:`~solverzoo.preconditioners.build.draw_data_images`) from whatever
    :func:`solverzoo.data.load_dataset` reads; a bad source is a usage error naming ``option``."""
    import torch

    from ..preconditioners.build import FILTER_SEED, draw_data_images

    if data.startswith("model:"):
        from ..bench.validate import build_model
        from ..data import to_unit

        net = build_model(data[len("model:"):], {})
        if not net.is_image or not hasattr(net, "sample_data"):
            fail(f"{option} {data}: model {net.name!r} is not an analytic image model")
        return to_unit(net.sample_data(FILTER_SEED, range(num)))
    return read_data_or_fail(option, data, lambda: draw_data_images(data, None, num, "cpu", torch.float64,
                                                                    what=option))


@filters_group.command("estimate")
@click.option("--data", required=True, help="digits, patches, a folder of images, .npy/.npz array, or model:NAME.")
@click.option("--num", type=click.IntRange(2), default=200, show_default=True, help="Images used.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              callback=nonempty_path, required=True, help="Filter file (.npz).")
@click.option("--overwrite", is_flag=True)
@usage_errors
def filters_estimate(data: str, num: int, out: Path, overwrite: bool) -> None:
    """PDS statistics (log mean power spectrum, mean squared pixel) -> OUT (.npz)."""
    from ..preconditioners import pds_statistics, save_filters

    check_filter_out(out, overwrite)
    images = load_unit_images("--data", data, num)
    stats = pds_statistics(images)
    written = save_filters(out, freq=stats.freq, space=stats.space, kind="statistic", source=data, count=len(images))
    console.print(f"PDS statistics of {len(images)} images {tuple(images.shape[1:])} -> {written} "
                  f"(use: -o pds.filters={written})")


@filters_group.command("tdas-estimate")
@click.option("--model", default="gmm-image", show_default=True)
@click.option("--model-option", "-m", multiple=True)
@click.option("--solver", default="pc", show_default=True, help="The accelerated sampler of the pilot run.")
@click.option("--nfe", type=int, required=True, help="The target NFE of the pilot run.")
@click.option("--reference", default=None, help="Reference images (folder/.npy/.npz). Default: the model's data.")
@click.option("--num", type=click.IntRange(2), default=200, show_default=True, help="Pilot samples.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              callback=nonempty_path, required=True, help="Filter file (.npz).")
@click.option("--overwrite", is_flag=True)
@usage_errors
def filters_tdas_estimate(model, model_option, solver, nfe, reference, num, out, overwrite):
    """TDAS appendix A.2: radial filter from a pilot run at the target NFE vs the data, with the mean-image
    space filter, as ``-o tdas.filters=OUT`` (or ``-o SOLVER.preconditioner=OUT``) reads them."""
    from dataclasses import replace

    import torch

    from ..bench.validate import build_model, check_nfes, check_solver_run
    from ..sampling import build_filters, build_solver

    check_nfes([nfe])
    check_filter_out(out, overwrite)
    net = build_model(model, parse_model_options(model_option))
    built = build_solver("tdas") if solver == "pc" else build_solver(solver, {"preconditioner": "tdas"})
    steps = check_solver_run(built, net, [nfe])[nfe]
    spec = replace(built.filter_spec(), pilot_samples=num, data=reference)
    if reference is not None:
        read_data_or_fail("--reference", reference, lambda: load_unit_images("--reference", reference, 2))
    else:
        spec.check(net)
    grid = built.make_grid(net.process, steps)
    with progress_bar() as progress:
        progress.add_task(f"pilot {solver} @ {nfe} NFE ({num} samples)", total=None)
        operator, estimate = build_filters(spec, net, grid, torch.device("cpu"), torch.float32, save=out)
    console.print(f"TDAS radii {[round(r, 4) for r in estimate['radii']]}, rates "
                  f"{[round(r, 4) for r in estimate['rates']]} -> {out} (use: -o tdas.filters={out})")
