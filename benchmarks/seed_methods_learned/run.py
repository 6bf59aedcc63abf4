"""The seed methods' claims on a learned score: PDS / TDAS vs PC and SEEDS vs Euler-Maruyama / PC
on the shipped ``patches-unet`` (3 x 32 x 32, EDM process), filters from its training data.

Every cell samples the same N initial noises (seed 0, samples 0..N-1) and is scored three ways:

* ``fd_pool8``: Frechet distance of 8 x 8 average-pooled samples (48 features) against the
  statistics of the 50 000 training patches, with its oracle floor at this N (held-out patches)
  and a bootstrap std (solverzoo.evaluate, the bench's scale);
* ``fid_inception``: Frechet distance of Inception-v3 pool features against ``--inception-ref``
  images of the patches data (biased at small N: compare cells with each other, not with papers);
* ``spectral_error`` / ``hf_ratio``: radial power spectrum of the samples against the training
  patches' (the learned model has no exact spectrum).

Usage (rows are appended to OUT/results.json as each cell finishes; rerunning skips done cells):

    python benchmarks/seed_methods_learned/run.py --out benchmarks/seed_methods_learned/results/seeds --parts seeds

(run.sh beside this file has the recorded commands).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import solverzoo
from solverzoo.data import load_patches
from solverzoo.io import atomic_write_json, save_image_grid
from solverzoo.metrics.spectrum import radial_power, spectral_scores

PLAN = {
    "pds_tdas": (("pc", "pds", "tdas"), (20, 50, 100)),
    "seeds": (("euler_maruyama", "seeds1", "seeds2", "seeds3"), (20, 50)),
}


def reference_file(out: Path, feature: str, count: int) -> str:
    """Statistics (and features) of ``count`` training patches (seed 2) in ``feature`` space, made once."""
    path = out / f"ref_{feature.replace(':', '')}_{count}.npz"
    if not path.exists():
        from solverzoo.metrics.features import build_extractor
        from solverzoo.metrics.fid import save_reference

        feats = build_extractor(feature)(load_patches(count, seed=2))
        save_reference(path, feats, feature, f"patches ({count}, seed 2)")
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="patches-unet")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--parts", default="pds_tdas,seeds")
    parser.add_argument("--inception-ref", type=int, default=1000, help="patches behind the Inception statistics")
    parser.add_argument("--no-inception", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    rows = json.loads(results_path.read_text())["rows"] if results_path.exists() else []
    done = {(r["solver"], r["nfe_requested"]) for r in rows}

    model = solverzoo.get_model(args.model)
    n = args.num_samples
    data_power = radial_power(load_patches(5000, seed=1))
    pool_ref = reference_file(args.out, "pool:8", 20_000)
    inception_ref = None if args.no_inception else reference_file(args.out, "inception", args.inception_ref)

    for part in args.parts.split(","):
        solvers, budgets = PLAN[part]
        for solver in solvers:
            for nfe in budgets:
                if (solver, nfe) in done:
                    continue
                start = time.perf_counter()
                result = solverzoo.sample(model, solver, nfe=nfe, num_samples=n, seed=0, batch_size=n)
                seconds = time.perf_counter() - start
                x = result.samples
                row = {"solver": solver, "nfe_requested": nfe, "nfe": result.nfe, "steps": result.steps,
                       "num_samples": n, "seconds": round(seconds, 1), "options": result.options}
                pooled = solverzoo.evaluate(model, x, feature="pool:8", reference=pool_ref)
                row.update({"fd_pool8": pooled["value"], "fd_pool8_std": pooled["uncertainty"],
                            "fd_pool8_floor": pooled["oracle_floor"]})
                if inception_ref is not None:
                    fid = solverzoo.evaluate(model, x, feature="inception", reference=inception_ref)
                    row.update({"fid_inception": fid["value"], "fid_inception_std": fid["uncertainty"],
                                "fid_inception_floor": fid["oracle_floor"]})
                row.update(spectral_scores(x, data_power))
                rows.append(row)
                atomic_write_json(results_path, {"model": args.model, "num_samples": n, "rows": rows})
                save_image_grid(args.out / f"{solver}_{nfe}.png", x[:16])
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                                  if k != "options"}), flush=True)


if __name__ == "__main__":
    main()
