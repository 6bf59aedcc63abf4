"""Candidate metrics on exact vs degraded samples (benchmarks/metric/README.md).

Unbiased MMD^2 (Gretton et al. 2012, JMLR, eq. 3) with three kernels -- cubic polynomial (KID,
Binkowski et al. 2018), Gaussian, and distance (energy) -- in the whitened (``Sigma^-1/2``) and
half-whitened (``Sigma^-1/4``) bases of gmm-image (``solverzoo.metrics.mmd.whitening_map``);
6 seeds x N = 500 against 2000 exact samples.  Writes its table to stdout, progress to stderr:

    OMP_NUM_THREADS=1 python benchmarks/metric/candidates.py > benchmarks/metric/results/candidates/candidates.txt
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch
from measure import blur  # the script beside this one

from solverzoo import get_model
from solverzoo.metrics.mmd import whitening_map
from solverzoo.models.gmm_image import GMMImage

POWERS = (0.5, 0.25)
REFERENCE_SEED = 12345


def degradations(model, x: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Exact samples ``x`` and degraded copies of them (the sets of measure.py, short names)."""
    m = model.data_mean().reshape(1, *model.shape)
    g = torch.Generator().manual_seed(1000 + seed)
    return {
        "exact": x, "blur0.6": blur(x, 0.6), "blur0.4": blur(x, 0.4),
        "sharpen": x + 0.5 * (x - blur(x, 1.0)),
        "noise0.05": x + 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64),
        "noise0.1": x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64),
        "contract10": m + 0.9 * (x - m), "contract5": m + 0.95 * (x - m),
        "colour0.05": x + torch.tensor([0.05, 0.0, -0.05], dtype=torch.float64)[None, :, None, None],
    }


def kernel_scores(gxx: torch.Tensor, gyy: torch.Tensor, gxy: torch.Tensor, nx2: torch.Tensor, ny2: torch.Tensor,
                  dim: int) -> dict[str, tuple[float, float]]:
    """Unbiased MMD^2 and its first-order std for the three kernels, from the Gram matrices.

    ``gxx``, ``gyy``, ``gxy``: inner products of the samples x (N) and the reference y (M);
    ``nx2``, ``ny2``: squared norms; ``dim``: feature dimension (KID's ``(a.b / d + 1)^3``).  The
    Gaussian and energy kernels are scaled by the reference's mean squared distance.
    """
    n, m = gxy.shape

    def off_diagonal_means(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = k.clone()
        k.fill_diagonal_(0)
        return k.sum() / (k.shape[0] * (k.shape[0] - 1)), k.sum(1) / (k.shape[0] - 1)

    dxx = (nx2[:, None] + nx2[None, :] - 2 * gxx).clamp_min(0)
    dyy = (ny2[:, None] + ny2[None, :] - 2 * gyy).clamp_min(0)
    dxy = (nx2[:, None] + ny2[None, :] - 2 * gxy).clamp_min(0)
    s2 = float(dyy.sum() / (m * (m - 1)))
    kernels = {
        "kid": lambda g, dd: (g / dim + 1) ** 3,
        "rbf": lambda g, dd: torch.exp(-dd / s2),
        "energy": lambda g, dd: -dd.sqrt() / math.sqrt(s2),
    }
    out = {}
    for name, kernel in kernels.items():
        kxx, kyy, kxy = kernel(gxx, dxx), kernel(gyy, dyy), kernel(gxy, dxy)
        mean_xx, row_xx = off_diagonal_means(kxx)
        mean_yy, row_yy = off_diagonal_means(kyy)
        value = mean_xx + mean_yy - 2 * kxy.mean()
        hx, hy = row_xx - kxy.mean(1), row_yy - kxy.mean(0)
        std = (4 * hx.var() / n + 4 * hy.var() / m).sqrt()
        out[name] = (float(value), float(std))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=500, help="N per sample set")
    parser.add_argument("--num-reference", type=int, default=2000, help="M exact reference samples")
    parser.add_argument("--seeds", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n, seeds = args.num_samples, range(args.seeds)
    model = get_model("gmm-image")
    dropped = GMMImage(means=model.means[1:], spectrum=model.power_spectrum())
    reference = model.sample_data(REFERENCE_SEED, range(args.num_reference)).double()
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for power in POWERS:
        whiten = whitening_map(model, power)
        y = whiten(reference)
        gyy, ny2 = y @ y.T, (y * y).sum(1)
        for seed in seeds:
            x = model.sample_data(seed, range(n)).double()
            sets = degradations(model, x, seed)
            sets["drop1"] = dropped.sample_data(seed, range(n)).double()
            for name, xs in sets.items():
                f = whiten(xs)
                scores = kernel_scores(f @ f.T, gyy, f @ y.T, (f * f).sum(1), ny2, f.shape[1])
                for kernel, score in scores.items():
                    results.setdefault(f"{kernel}_w{power}", {}).setdefault(name, []).append(score)
            print(power, "seed", seed, file=sys.stderr, flush=True)
    for key, sets in results.items():
        print("==", key)
        exact = np.array([v for v, _ in sets["exact"]])
        for name, scores in sets.items():
            v = np.array([a for a, _ in scores])
            s = np.array([b for _, b in scores])
            worse = (v > exact).sum() if name != "exact" else -1
            print(f"{name:12s} mean {v.mean():.4g} sd_seeds {v.std(ddof=1):.3g} est_std {s.mean():.3g} "
                  f"worse_in {worse}/{len(v)} z {(v.mean() - exact.mean()) / exact.std(ddof=1):.1f}")


if __name__ == "__main__":
    main()
