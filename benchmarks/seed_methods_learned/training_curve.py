"""Held-out loss curves of solverzoo checkpoints (their meta's ``heldout``), as a plot and a markdown table.

    python benchmarks/seed_methods_learned/training_curve.py --checkpoint solverzoo/checkpoints/patches_unet.pt \\
        --out benchmarks/seed_methods_learned/results/n256/heldout_curve
    python benchmarks/seed_methods_learned/training_curve.py --checkpoint edm=solverzoo/checkpoints/patches_unet.pt \\
        --checkpoint fdm=benchmarks/fdm_training/models/patches_unet_fdm_edm.pt --out .../heldout_edm_fdm

Runs with the same held-out set (same data, ``--heldout`` and seed) are comparable at equal iterations:
the loss is the EDM-weighted denoising error of the EMA model on the same (image, sigma, noise) draws.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from solverzoo.models.learned import load_checkpoint


def table(metas: dict[str, dict], every: int = 1000) -> str:
    """Every ``every``-th iteration (and each run's last): images seen, then per run the held-out loss and
    its improvement over the previous 1000 iterations."""
    curves = {label: dict(map(tuple, meta["heldout"]["curve"])) for label, meta in metas.items()}
    batch = next(iter(metas.values()))["train_config"]["batch_size"]
    last = {max(curve) for curve in curves.values()}
    iterations = sorted(k for k in set().union(*curves.values()) if k % every == 0 or k in last)
    one = len(metas) == 1
    head = ["iteration", "images seen"] + [h if one else f"{label}: {h}" for label in metas
                                           for h in ("held-out loss", "improvement over the previous 1000 iterations")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in iterations:
        cells = [str(k), f"{k * batch:,}"]
        for curve in curves.values():
            if k not in curve:
                cells += ["", ""]
                continue
            earlier = [i for i in curve if i <= k - 1000]
            change = f"{100 * (curve[max(earlier)] - curve[k]) / curve[max(earlier)]:.2f}%" if earlier else "—"
            cells += [f"{curve[k]:.4f}", change]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True, help="PATH or LABEL=PATH (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="output prefix: OUT.png and OUT.md")
    parser.add_argument("--every", type=int, default=1000, help="table rows at multiples of this iteration")
    args = parser.parse_args()
    paths = dict(item.split("=", 1) if "=" in item else (Path(item).stem, item) for item in args.checkpoint)
    try:
        metas = {label: load_checkpoint(path).meta for label, path in paths.items()}
    except ValueError as err:
        parser.error(str(err))
    missing = [label for label, meta in metas.items() if not meta.get("heldout")]
    if missing:
        parser.error(f"no held-out curve in the meta of {', '.join(missing)} (train with --heldout N)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    verdicts = []
    for label, meta in metas.items():
        held = meta["heldout"]
        its, losses = zip(*held["curve"])
        ax.plot(its, losses, marker=".", label=label)
        state = "flattened" if held["flattened"] else "not flattened"
        change = "" if held["improvement"] is None else f": {100 * held['improvement']:.2f}% over iterations " \
                                                         f"{held['over'][0]}-{held['over'][1]}"
        verdicts.append(f"{label}: {state}{change}")
    first = next(iter(metas.values()))
    ax.set_xlabel(f"training iteration (batch {first['train_config']['batch_size']})")
    ax.set_ylabel(f"held-out denoising loss ({first['heldout']['images']} images)")
    ax.set_title("; ".join(verdicts), fontsize=8)
    if len(metas) > 1:
        ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out.with_suffix(".png"))
    plt.close(fig)
    criterion = first["heldout"]["criterion"]
    args.out.with_suffix(".md").write_text(table(metas, args.every) + f"\n\n{criterion}: {'; '.join(verdicts)}.\n")
    print(table(metas, args.every))


if __name__ == "__main__":
    main()
