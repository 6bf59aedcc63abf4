"""The held-out loss curve of a solverzoo checkpoint (its meta's ``heldout``), as a plot and a markdown table.

    python benchmarks/seed_methods_learned/training_curve.py --checkpoint solverzoo/checkpoints/patches_unet.pt \\
        --out benchmarks/seed_methods_learned/results/n256/heldout_curve
"""

from __future__ import annotations

import argparse
from pathlib import Path

from solverzoo.models.learned import load_checkpoint


def table(meta: dict, every: int = 1000) -> str:
    """Every ``every``-th point of the curve: iteration, images seen, held-out loss, improvement over the window."""
    held = meta["heldout"]
    curve = dict(map(tuple, held["curve"]))
    batch = meta["train_config"]["batch_size"]
    lines = ["| iteration | images seen | held-out loss | improvement over the previous 1000 iterations |",
             "|---|---|---|---|"]
    for k in sorted(curve):
        if k % every and k != max(curve):
            continue
        earlier = [i for i in curve if i <= k - 1000]
        change = f"{100 * (curve[max(earlier)] - curve[k]) / curve[max(earlier)]:.2f}%" if earlier else "—"
        lines.append(f"| {k} | {k * batch:,} | {curve[k]:.4f} | {change} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="output prefix: OUT.png and OUT.md")
    parser.add_argument("--every", type=int, default=1000, help="table rows at multiples of this iteration")
    args = parser.parse_args()
    meta = load_checkpoint(args.checkpoint).meta
    held = meta["heldout"]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its, losses = zip(*held["curve"])
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.plot(its, losses, marker=".")
    ax.set_xlabel(f"training iteration (batch {meta['train_config']['batch_size']})")
    ax.set_ylabel(f"held-out denoising loss ({held['images']} images)")
    state = "flattened" if held["flattened"] else "not flattened"
    ax.set_title(f"{state}: {100 * held['improvement']:.2f}% over iterations {held['over'][0]}-{held['over'][1]}",
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out.with_suffix(".png"))
    plt.close(fig)
    args.out.with_suffix(".md").write_text(table(meta, args.every) + f"\n\n{held['criterion']}: {state}.\n")
    print(table(meta, args.every))


if __name__ == "__main__":
    main()
