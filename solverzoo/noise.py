"""Randomness users can trust: per-sample seeds, paired initial noise, batch-free paths.

Every random number in solverzoo is drawn from a generator that belongs to one
sample.  Sample ``i`` of a run with seed ``S`` owns two independent streams:

* stream ``INIT`` draws its initial noise.  It does not depend on the solver, so
  every solver in a comparison starts from the same ``x_T`` (paired comparisons);
* stream ``PATH`` draws the noise a stochastic solver adds along the way.

The generators live on the CPU and the draws are moved to the target device, so the
same seed gives the same sample on CPU and CUDA, at any batch size, in any order of
batches (Karras et al. 2022 use one generator per image seed for the same reason).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["INIT", "PATH", "DATA", "sample_seed", "NoiseSource"]

INIT, PATH, DATA = 0, 1, 2


def sample_seed(seed: int, index: int, stream: int) -> int:
    """A well-mixed 63-bit seed for (run seed, sample index, stream)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seeds and sample indices must be >= 0, got seed={seed}, index={index}")
    state = np.random.SeedSequence([int(seed), int(stream), int(index)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


class NoiseSource:
    """Per-sample Gaussian draws for a batch of samples with known global indices.

    ``randn(shape)`` returns a ``(len(indices), *shape)`` tensor whose row ``b`` comes
    from the generator of sample ``indices[b]``: the values of a row never depend on
    which other samples share the batch.
    """

    def __init__(
        self,
        seed: int,
        indices: Sequence[int],
        stream: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.seed, self.stream = int(seed), int(stream)
        self.indices = [int(i) for i in indices]
        self.device, self.dtype = torch.device(device), dtype
        self.generators = [
            torch.Generator(device="cpu").manual_seed(sample_seed(seed, i, stream)) for i in self.indices
        ]
        self.draws = 0

    def __len__(self) -> int:
        return len(self.indices)

    def randn(self, shape: Sequence[int]) -> Tensor:
        """One standard normal draw per sample, stacked along a new batch axis."""
        shape = tuple(int(n) for n in shape)
        out = torch.empty((len(self.generators), *shape), dtype=torch.float64 if self.dtype == torch.float64 else torch.float32)
        # row.normal_ is what torch.randn(out=row) runs after its argument parsing and resize:
        # the same values from the same generator state, with less per-row Python overhead
        for row, gen in zip(out.unbind(0), self.generators):
            row.normal_(generator=gen)
        self.draws += 1
        return out.to(device=self.device, dtype=self.dtype, non_blocking=True)

    def randn_like(self, x: Tensor) -> Tensor:
        if x.shape[0] != len(self.generators):
            raise ValueError(f"batch of {x.shape[0]} samples but the noise source holds {len(self.generators)}")
        return self.randn(x.shape[1:])
