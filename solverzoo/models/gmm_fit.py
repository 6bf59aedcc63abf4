"""k-means for fitting gmm-image to real images (:meth:`solverzoo.models.GMMImage.fit`).

k-means++ seeding (Arthur & Vassilvitskii 2007: each new centre drawn with probability
proportional to the squared distance to the nearest chosen one) from a seeded CPU generator,
then Lloyd iterations in float64 over chunks of ``batch_size`` rows until the assignment stops
changing; the final centres are the averages of the final clusters, empty clusters dropped.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kmeans"]


def _nearest(x: Tensor, centres: Tensor) -> Tensor:
    d2 = (centres**2).sum(1)[None] - 2 * x @ centres.T
    return d2.argmin(1)


def _kmeans_pp(flat: Tensor, K: int, chunks, gen: torch.Generator) -> Tensor:
    N = flat.shape[0]
    first = int(torch.randint(N, (), generator=gen))
    centres = [flat[first].to(torch.float64)]
    best = None
    for _ in range(1, K):
        c = centres[-1]
        d2 = torch.cat([((flat[sl].to(torch.float64) - c) ** 2).sum(1) for sl in chunks])
        best = d2 if best is None else torch.minimum(best, d2)
        p = best.clamp_min(0).cpu()
        if float(p.sum()) <= 0:
            idx = int(torch.randint(N, (), generator=gen))
        else:
            idx = int(torch.multinomial(p / p.sum(), 1, generator=gen))
        centres.append(flat[idx].to(torch.float64))
    return torch.stack(centres)


def kmeans(flat: Tensor, K: int, iterations: int = 25, seed: int = 0, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
    """(centres (K', d) float64, assignment (N,) int64) of the rows of ``flat`` (N, d); K' <= K
    (empty clusters are dropped and the assignment renumbered)."""
    N = flat.shape[0]
    dev = flat.device
    chunks = [slice(s, min(s + batch_size, N)) for s in range(0, N, batch_size)]

    def chunk64(sl):
        return flat[sl].to(torch.float64)

    if K == 1:
        centres = sum(chunk64(sl).sum(0) for sl in chunks)[None] / N
        return centres, torch.zeros(N, dtype=torch.long, device=dev)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    centres = _kmeans_pp(flat, K, chunks, gen)
    assign = None
    for _ in range(int(iterations)):
        new = torch.cat([_nearest(chunk64(sl), centres) for sl in chunks])
        sums = torch.zeros_like(centres)
        counts = torch.zeros(K, dtype=torch.float64, device=dev)
        for sl in chunks:
            sums.index_add_(0, new[sl], chunk64(sl))
            counts.index_add_(0, new[sl], torch.ones(sl.stop - sl.start, dtype=torch.float64, device=dev))
        keep = counts > 0
        centres = torch.where(keep[:, None], sums / counts.clamp_min(1)[:, None], centres)
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
    assign = torch.cat([_nearest(chunk64(sl), centres) for sl in chunks])
    # final means = cluster averages of the final assignment
    sums = torch.zeros_like(centres)
    for sl in chunks:
        sums.index_add_(0, assign[sl], chunk64(sl))
    counts = torch.bincount(assign, minlength=K).to(torch.float64)
    keep = counts > 0
    centres = sums[keep] / counts[keep, None]
    remap = torch.cumsum(keep.long(), 0) - 1
    return centres, remap[assign]
