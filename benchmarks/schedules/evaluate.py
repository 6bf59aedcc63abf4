"""Held-out pathwise error of 10-NFE schedules on gmm-image: the tuned grids (tune-grid, fitted on
seed 0, samples 0-127; results/tuned/) against Karras rho 3/5/7/9 and kl_optimal, on 256 other initial
noises (seed 1).  Writes benchmarks/schedules/results/pathwise/pathwise.json and prints a markdown table.
Run from the repository root: python benchmarks/schedules/evaluate.py"""

import sys
import time
from pathlib import Path

import torch

import solverzoo
from solverzoo.io import atomic_write_json
from solverzoo.tune import load_grid_file, pathwise_error, reference_samples

RESULTS = Path(__file__).parent / "results"
TUNED, OUT = RESULTS / "tuned", RESULTS / "pathwise" / "pathwise.json"
SEED, COUNT, NFE = 1, 256, 10


def main() -> None:
    torch.set_num_threads(1)
    model = solverzoo.get_model("gmm-image")
    start = time.perf_counter()
    reference = reference_samples(model, model.process.sigma_max, num_samples=COUNT, seed=SEED, steps=200)
    coarse = reference_samples(model, model.process.sigma_max, num_samples=COUNT, seed=SEED, steps=100)
    rows = {"reference_error": pathwise_error(coarse, reference), "seed": SEED, "num_samples": COUNT, "nfe": NFE,
            "solvers": {}}
    for solver in ("dpmpp_2m", "unipc"):
        schedules = {f"karras(rho={r})": {"grid": "karras", "grid_options": {"rho": float(r)}} for r in (3, 5, 7, 9)}
        schedules["kl_optimal"] = {"grid": "kl_optimal"}
        schedules["tuned"] = {"grid": load_grid_file(TUNED / f"{solver}_nfe10.json")[0]}
        schedules["tuned (fixed end)"] = {"grid": load_grid_file(TUNED / f"{solver}_nfe10_fixed_end.json")[0]}
        errors = {}
        for name, options in schedules.items():
            run = solverzoo.sample(model, solver, nfe=NFE, num_samples=COUNT, seed=SEED, dtype=torch.float64,
                                   **options)
            if run.nfe != NFE:
                raise RuntimeError(f"{solver} on {name} spent {run.nfe} model calls, not {NFE}")
            errors[name] = pathwise_error(run.samples, reference)
        rows["solvers"][solver] = errors
    rows["seconds"] = time.perf_counter() - start
    rows["command"] = "python " + " ".join(sys.argv)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT, rows)
    names = list(next(iter(rows["solvers"].values())))
    print("| solver | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for solver, errors in rows["solvers"].items():
        print(f"| {solver} | " + " | ".join(f"{errors[n]:.4f}" for n in names) + " |")
    print(f"reference error (100 vs 200 Heun steps): {rows['reference_error']:.1e}; {rows['seconds']:.0f} s")


if __name__ == "__main__":
    main()
