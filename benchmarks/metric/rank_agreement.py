"""Do the default cells rank the same at N = 500 and at 10x N?  (benchmarks/metric)

A subset of the default solvers (six, from the best to the worst of the default table, to fit
2 shared CPU cores) at NFE 10 / 20 / 50 on the default model; each cell samples N = 5000
(indices 0..4999 of seed 0), so its first 500 samples are exactly the default bench's cell.
Both sets are scored by ``mmd_whitened``; the Spearman rank correlation of the 18 cells is
printed with both columns.

    OMP_NUM_THREADS=1 python benchmarks/metric/rank_agreement.py \
        > benchmarks/metric/results/rank_agreement/rank_agreement.md
"""

from __future__ import annotations

import sys
import time

from scipy.stats import spearmanr

import solverzoo
from solverzoo.metrics.mmd import kernel_reference

SOLVERS = ("unipc", "dpmpp_2m", "heun", "euler", "euler_ancestral", "pc")
NFE = (10, 20, 50)
N_SMALL, N_LARGE = 500, 5000


def main() -> None:
    import torch

    torch.set_num_threads(1)
    start = time.time()
    model = solverzoo.get_model("gmm-image")
    ref = kernel_reference(model)
    cells = []
    for solver in SOLVERS:
        for nfe in NFE:
            x = solverzoo.sample(model, solver, nfe=nfe, num_samples=N_LARGE, seed=0, batch_size=500).samples
            small, large = ref.score(x[:N_SMALL]), ref.score(x)
            cells.append((solver, nfe, small, large))
            print(f"{solver} {nfe}: {small.value:.3f} / {large.value:.3f} ({time.time() - start:.0f} s)",
                  file=sys.stderr, flush=True)
    rho = spearmanr([c[2].value for c in cells], [c[3].value for c in cells]).statistic
    print(f"gmm-image 3x32x32 (VE), seed 0; mmd_whitened at N = {N_SMALL} (the default bench cell) and "
          f"N = {N_LARGE} (the same noise, 10x the samples).\n")
    print(f"| solver | NFE | N = {N_SMALL} | N = {N_LARGE} |")
    print("|---|---|---|---|")
    for solver, nfe, small, large in cells:
        print(f"| {solver} | {nfe} | {small.value:.3f} ± {small.std:.3f} | {large.value:.3f} ± {large.std:.3f} |")
    print(f"\nSpearman rank correlation over the {len(cells)} cells: **{rho:.3f}** "
          f"({time.time() - start:.0f} s on this machine)")


if __name__ == "__main__":
    main()
