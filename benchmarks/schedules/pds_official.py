"""PDS: the default (continuous) discretisation against discretize="official" (fudan-zvg/PDS's
SDE.discretize tables and end time eps * k).  Prints the predictor's G^2 relative difference per
round and the relative difference of the final samples (same draws, float64), on gmm-image
3x32x32 with PDS filters from 200 data images (alpha 5), 64 samples.  Writes
benchmarks/schedules/results/pds_official/pds_official.json.  Run from the repository root:
python benchmarks/schedules/pds_official.py"""

import json
import time
from pathlib import Path

import torch

import solverzoo
from solverzoo.io import atomic_write_json
from solverzoo.solvers.score_sde import official_coefficients

OUT = Path(__file__).parent / "results" / "pds_official" / "pds_official.json"
#: (process, N0 = base_steps, speed-ups k)
CASES = (("ve", 2000, (200, 30)), ("vp", 1000, (30, 10)))


def compare(kind: str, n0: int, k: int) -> dict:
    """One (process, N0, k) case: coefficients and final samples of both discretisations."""
    model = solverzoo.get_model("gmm-image", process=kind)
    start = time.perf_counter()
    runs, coefficients = {}, {}
    for mode in ("continuous", "official"):
        solver = solverzoo.get_solver("pds", speed_up=k, base_steps=n0, discretize=mode)
        grid = solver.make_grid(model.process, solver.fixed_steps)
        s, sig, n = grid.s.tolist(), grid.sigma.tolist(), grid.steps
        if mode == "official":
            a, g2 = official_coefficients(model.process, grid)
        else:
            a = [s[i] / s[i + 1] for i in range(n)]
            g2 = [s[i] ** 2 * (sig[i] ** 2 - sig[i + 1] ** 2) for i in range(n)]
        coefficients[mode] = (a, g2, grid.t[n - 1].item())
        runs[mode] = solverzoo.sample(model, solver, num_samples=64, seed=0, batch_size=64,
                                      dtype=torch.float64).samples
    (a_c, g_c, t_c), (a_o, g_o, t_o) = coefficients["continuous"], coefficients["official"]
    g2_rel = [abs(o - c) / o for c, o in zip(g_c, g_o)]
    return {
        "steps": len(g_c), "t_end_continuous": t_c, "t_end_official": t_o,
        "g2_max_rel_diff": max(g2_rel), "g2_rel_diff_last_round": g2_rel[-1],
        "g2_max_rel_diff_before_last": max(g2_rel[:-1]),
        "a_max_abs_diff": max(abs(x - y) for x, y in zip(a_c, a_o)),
        "sample_rel_diff": float((runs["official"] - runs["continuous"]).norm() / runs["official"].norm()),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    torch.set_num_threads(1)
    out = {}
    for kind, n0, ks in CASES:
        for k in ks:
            row = out[f"{kind} N0={n0} k={k}"] = compare(kind, n0, k)
            print(kind, n0, k, json.dumps(row))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT, out)


if __name__ == "__main__":
    main()
