"""``solverzoo filters``: PDS statistics and TDAS filters from data."""

from __future__ import annotations

from pathlib import Path

import click

from .common import console, fail, main, parse_model_options, progress_bar, read_data_or_fail, usage_errors


@main.group("filters")
def filters_group() -> None:
    """Build PDS / TDAS filters from data statistics."""


def load_unit_images(option: str, data: str, num: int):
    """Images in [0, 1], float64 (N, C, H, W): ``model:NAME`` (exact samples of an analytic image model)
    or whatever :func:`solverzoo.data.load_dataset` reads (digits, patches, a folder of images, an
    .npy/.npz array); a bad source is a usage error naming ``option``."""
    import torch

    from ..data import load_dataset, to_unit

    if data.startswith("model:"):
        from ..models import get_model
        from ..solvers.preconditioned import FILTER_SEED

        net = get_model(data[len("model:"):])
        if not net.is_image:
            fail(f"{option} {data}: model {net.name!r} is not an image model")
        return to_unit(net.sample_data(FILTER_SEED, range(num)))
    return to_unit(read_data_or_fail(option, data, lambda: load_dataset(data, num)).to(torch.float64))


@filters_group.command("estimate")
@click.option("--data", required=True, help="digits, patches, a folder of images, .npy/.npz array, or model:NAME.")
@click.option("--num", type=click.IntRange(2), default=200, show_default=True, help="Images used.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--overwrite", is_flag=True)
@usage_errors
def filters_estimate(data: str, num: int, out: Path, overwrite: bool) -> None:
    """PDS statistics (log mean power spectrum, mean squared pixel) -> OUT (.npz)."""
    from ..preconditioners import pds_statistics, save_filters

    if out.exists() and not overwrite:
        fail(f"{out} exists; pass --overwrite")
    images = load_unit_images("--data", data, num)
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

    from ..models import get_model
    from ..preconditioners import image_mean, save_filters, tdas_estimate
    from ..sampling import sample
    from ..solvers.preconditioned import FILTER_SEED

    if out.exists() and not overwrite:
        fail(f"{out} exists; pass --overwrite")
    net = get_model(model, **parse_model_options(model_option))
    ref = load_unit_images("--reference", reference or getattr(net, "data", None) or f"model:{model}", num)  # default: its data
    with progress_bar() as progress:
        task = progress.add_task(f"pilot {solver} @ {nfe} NFE", total=num)
        pilot = sample(net, solver, nfe=nfe, num_samples=num, seed=FILTER_SEED, batch_size=100,
                       on_batch=lambda k: progress.advance(task, k)).samples
    fast = ((pilot + 1) / 2).clamp(0, 1).to(torch.float64)
    est = tdas_estimate(fast, ref.to(torch.float64))
    freq = getattr(est.preconditioner, "values", None)
    save_filters(out, freq=freq, space=None, kind="filter", method="tdas", **est.describe(),
                 mean_image=image_mean(ref).tolist())
    console.print(f"TDAS radii {[round(r, 4) for r in est.radii]}, rates {[round(r, 4) for r in est.rates]} -> {out}")
