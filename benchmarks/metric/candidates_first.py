"""First exploration (benchmarks/metric/README.md): cubic-kernel MMD^2 (KID) in the whitened, half-whitened and
pixel bases and the pixel Frechet distance, exact vs degraded samples, 6 seeds x N = 500 against M = 2000 exact
samples.  Writes its table to stdout, progress to stderr:

    OMP_NUM_THREADS=1 python benchmarks/metric/candidates_first.py 2000 \\
        > benchmarks/metric/results/candidates_first/candidates_first.txt
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from candidates import REFERENCE_SEED, degradations  # the script beside this one

from solverzoo import get_model
from solverzoo.metrics import exact_reference
from solverzoo.metrics.mmd import whitening_map
from solverzoo.models.gmm_image import GMMImage

N, SEEDS, POWERS = 500, range(6), (0.5, 0.25)


def kid(fx: torch.Tensor, fy: torch.Tensor) -> tuple[float, float]:
    """Unbiased MMD^2 with KID's cubic kernel ``(a.b / d + 1)^3`` and its first-order std."""
    d, n, m = fx.shape[1], len(fx), len(fy)
    kxx, kyy, kxy = (fx @ fx.T / d + 1) ** 3, (fy @ fy.T / d + 1) ** 3, (fx @ fy.T / d + 1) ** 3
    kxx.fill_diagonal_(0)
    kyy.fill_diagonal_(0)
    hx = kxx.sum(1) / (n - 1) - kxy.mean(1)
    hy = kyy.sum(1) / (m - 1) - kxy.mean(0)
    value = kxx.sum() / (n * (n - 1)) + kyy.sum() / (m * (m - 1)) - 2 * kxy.mean()
    std = (4 * hx.var() / n + 4 * hy.var() / m).sqrt()
    return float(value), float(std)


def main() -> None:
    torch.set_num_threads(1)
    num_reference = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    model = get_model("gmm-image")
    mean = model.data_mean().reshape(1, *model.shape).double()
    whiten = {p: whitening_map(model, p) for p in POWERS}
    dropped = GMMImage(means=model.means[1:], spectrum=model.power_spectrum())
    ref = model.sample_data(REFERENCE_SEED, range(num_reference)).double()
    ref_white = {p: whiten[p](ref) for p in POWERS}
    ref_pixels = (ref - mean).reshape(num_reference, -1)
    fd_reference = exact_reference(model, "pixels")
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for seed in SEEDS:
        x = model.sample_data(seed, range(N)).double()
        sets = degradations(model, x, seed)
        sets["drop1"] = dropped.sample_data(seed, range(N)).double()
        for name, xs in sets.items():
            r = results.setdefault(name, {})
            for p in POWERS:
                r.setdefault(f"kid_w{p}", []).append(kid(whiten[p](xs), ref_white[p]))
            r.setdefault("kid_pix", []).append(kid((xs - mean).reshape(N, -1), ref_pixels))
            r.setdefault("fd_pix", []).append((fd_reference.distance_samples(xs.reshape(N, -1)), 0.0))
        print("seed", seed, file=sys.stderr, flush=True)
    for key in ("kid_w0.5", "kid_w0.25", "kid_pix", "fd_pix"):
        print("==", key)
        exact = np.array([v for v, _ in results["exact"][key]])
        for name in results:
            v = np.array([a for a, _ in results[name][key]])
            s = np.array([b for _, b in results[name][key]])
            worse = (v > exact).sum() if name != "exact" else -1
            print(f"{name:12s} mean {v.mean():.4g} sd_seeds {v.std(ddof=1):.3g} est_std {s.mean():.3g} "
                  f"worse_in {worse}/{len(v)}  min_gap {(v - exact).min():.3g}")


if __name__ == "__main__":
    main()
