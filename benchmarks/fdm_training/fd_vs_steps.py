"""FD versus training steps for solverzoo training runs (EDM vs FDM at the same budget).

For every snapshot ``RUN/snapshots/model-XXXXXX.pt`` of every run (every ``--every`` iterations):
sample N images with one sampler at one NFE (same seeds for every snapshot and run), and compute
the Frechet distance in ``--feature`` space (default fd_digits_classifier) against the model's
training data or ``--reference`` (solverzoo.metrics.fid.data_reference; the oracle floor is FD of
N held-out real images vs the other ones).  Writes JSON and a plot.

    python benchmarks/fdm_training/fd_vs_steps.py --run edm=/work/runs/edm --run fdm_edm=/work/runs/fdm_edm \\
        --solver heun --nfe 19 --num-samples 500 --out benchmarks/fdm_training/results/fd_vs_steps/fd_vs_steps
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from solverzoo.metrics.fid import data_reference
from solverzoo.models.learned import load_checkpoint
from solverzoo.sampling import sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="label=RUN_DIR (repeatable)")
    parser.add_argument("--solver", default="heun")
    parser.add_argument("--nfe", type=int, nargs="+", default=[19])
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=1, help="disjoint seed ranges per point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--feature", default="digits_classifier", help="feature space (pool:8 for patches)")
    parser.add_argument("--reference", default=None, help="real data or an .npz (default: the training data)")
    parser.add_argument("--every", type=int, default=1, help="use the snapshots at multiples of this iteration")
    parser.add_argument("--out", type=Path, required=True, help="output prefix: OUT.json and OUT.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    runs = dict(item.split("=", 1) for item in args.run)
    n = args.num_samples
    results = {"solver": args.solver, "nfe": args.nfe, "num_samples": n, "repeats": args.repeats, "seed": args.seed,
               "metric": None, "oracle_floors": None, "runs": {}}
    ref = None
    for label, run in runs.items():
        snapshots = [s for s in sorted(Path(run, "snapshots").glob("model-*.pt"))
                     if int(s.stem.split("-")[1]) % args.every == 0]
        rows = []
        for snap in snapshots:
            model = load_checkpoint(snap)
            if ref is None:
                ref = data_reference(model, args.feature, n, repeats=args.repeats, seed=args.seed,
                                     reference=args.reference)
                results["metric"], results["oracle_floors"], results["note"] = ref.metric, ref.floors, ref.note
            for nfe in args.nfe:
                fds = []
                start = time.perf_counter()
                for r in range(args.repeats):
                    res = sample(model, args.solver, nfe=nfe, num_samples=n, seed=args.seed, start_index=r * n,
                                 batch_size=n)
                    fds.append(ref.distance_samples(res.samples))
                row = {"iteration": model.meta["iterations"], "images": model.meta["images_seen"], "nfe": res.nfe,
                       "fd": sum(fds) / len(fds), "fds": fds, "train_loss": model.meta.get("loss"),
                       "seconds": round(time.perf_counter() - start, 1)}
                rows.append(row)
                print(f"{label:>8} it {row['iteration']:>6} NFE {row['nfe']:>3}: {results['metric']} "
                      f"{row['fd']:.2f} (loss {row['train_loss']:.4f})", flush=True)
        results["runs"][label] = {"dir": str(run), "train_config": model.meta.get("train_config"), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    _plot(results, args.out.with_suffix(".png"))


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120)
    for label, run in results["runs"].items():
        for nfe in results["nfe"]:
            pts = [(r["iteration"], r["fd"]) for r in run["rows"] if r["nfe"] in (nfe, nfe - 1, nfe + 1)]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, marker="o", label=f"{label}, {results['solver']} NFE {pts and nfe}")
    floors = [f for f in results["oracle_floors"] or [] if f is not None]
    if floors:
        ax.axhline(sum(floors) / len(floors), color="black", linestyle="--", linewidth=1, label="oracle floor")
    ax.set_yscale("log")
    batch = next(iter(results["runs"].values()))["train_config"]["batch_size"]
    ax.set_xlabel(f"training iterations (batch {batch})")
    ax.set_ylabel(results["metric"])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
