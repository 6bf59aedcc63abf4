"""Sharing a sweep's cells between torchrun processes: each rank samples a block of whole batches,
the samples are gathered in index order, and rank 0 alone writes."""

from __future__ import annotations

import torch

from ..sampling import SampleResult, sample

__all__ = ["world_info", "dist_backend", "shard", "sample_sharded"]


def world_info() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def dist_backend() -> str:
    import torch.distributed as dist

    return str(dist.get_backend())


def shard(num_samples: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """Rank ``rank``'s share of a cell: (offset, count) of a contiguous block of whole batches.

    The batches are those a single process makes ([0, B), [B, 2B), ...), so every sample is
    computed in the same batch as in a one-process run, with its own per-sample seeds: the
    gathered samples, hence the statistics, are identical.  Ranks take ceil(batches / world)
    batches each, lowest ranks first; a rank gets none when there are too few batches (use
    --batch-size <= N / world size to keep every rank busy)."""
    batches = -(-num_samples // batch_size)
    per_rank = -(-batches // world)
    lo, hi = min(batches, rank * per_rank), min(batches, (rank + 1) * per_rank)
    start = lo * batch_size
    return start, max(0, min(num_samples, hi * batch_size) - start)


def sample_sharded(model, solver, steps: int, n: int, start: int, config, device, progress,
                   built_filters=None):
    """``sample`` of the built ``solver`` at ``steps`` (the plan's steps for the cell's budget) over ``n``
    samples from index ``start``, with the filters built for that grid; under torch.distributed each rank samples
    its block of batches (:func:`shard`) and the samples are gathered in index order on every rank.
    An error on any rank is raised on every rank (so all ranks record the same row)."""
    rank, world = world_info()
    batch_size = int(config.batch_size or n)
    if world == 1:
        return sample(model, solver, steps=steps, num_samples=n, seed=config.seed, start_index=start,
                      batch_size=batch_size, device=device, on_batch=progress, noise=config.noise,
                      guidance=config.guidance, labels=config.labels, built_filters=built_filters)
    import torch.distributed as dist

    offset, count = shard(n, batch_size, rank, world)
    outcome: tuple = ("empty",)
    if count > 0:
        try:
            res = sample(model, solver, steps=steps, num_samples=count, seed=config.seed,
                         start_index=start + offset, batch_size=batch_size, device=device, on_batch=progress,
                         noise=config.noise, guidance=config.guidance, labels=config.labels,
                         built_filters=built_filters)
            outcome = ("ok", res.samples, res.nfe, res.seconds, res.solver, res.steps, res.grid, res.options)
        except Exception as err:  # reported on every rank below
            outcome = ("error", type(err).__name__, str(err), isinstance(err, ValueError))
    gathered: list = [None] * world
    dist.all_gather_object(gathered, outcome)
    for item in gathered:
        if item[0] == "error":
            if item[3]:
                raise ValueError(item[2])
            raise RuntimeError(f"{item[1]}: {item[2]}")
    oks = [item for item in gathered if item[0] == "ok"]
    nfes = {item[2] for item in oks}
    if len(nfes) != 1:
        raise RuntimeError(f"ranks counted different NFE for {solver.info.name!r}: {sorted(nfes)}")
    if progress is not None:
        progress(n - count)  # the other ranks' samples
    _, _, nfe_counted, _, solver_name, steps, grid, opts = oks[0]
    return SampleResult(samples=torch.cat([item[1] for item in oks]), solver=solver_name, nfe=nfe_counted,
                        nfe_requested=None, steps=steps, grid=grid, seconds=max(item[3] for item in oks),
                        options=opts)
