"""Randomness users can trust: per-sample seeds, paired initial noise, batch-free paths.

Every random number in solverzoo is drawn from a generator that belongs to one
sample.  Sample ``i`` of a run with seed ``S`` owns two independent streams:

* stream ``INIT`` draws its initial noise.  It does not depend on the solver, so
  every solver in a comparison starts from the same ``x_T`` (paired comparisons);
* stream ``PATH`` draws the noise a stochastic solver adds along the way.

Two sources give these draws, with the same interface (``randn``, ``randn_like``,
``len``, ``draws``, ``generators``):

* :class:`NoiseSource` (``noise="cpu"``, the default on the CPU): one CPU ``torch.Generator`` per
  sample, draws moved to the target device.  The same seed gives the same sample on CPU
  and CUDA (Karras et al. 2022 use one generator per image seed for the same reason);
  it reproduces every earlier result exactly, and costs one generator call per sample
  per draw on the host.
* :class:`PhiloxNoiseSource` (``noise="philox"``, the default on CUDA): the counter-based generator
  Philox-4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3",
  SC'11) evaluated with vectorised integer ops on the model's device, keyed by the run
  seed and counting (element block, draw number, sample index, stream): the whole batch
  in one call, no host generator, no copy.  A value depends only on its
  (seed, sample, stream, draw, position), never on the batch.

Both keep the guarantee that a sample never depends on the batch size or order of
batches; they are two different random streams, so their samples differ.

``noise="auto"`` (the default of ``solverzoo.sample`` and ``bench``; :func:`resolve_noise`) picks
``"philox"`` on a CUDA device, where host generators would cost a generator call per sample per
draw and a host-to-device copy, and ``"cpu"`` elsewhere, so that results recorded on the CPU
reproduce.  Results and ``SampleResult.noise`` record the source actually used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["INIT", "PATH", "DATA", "NOISE_KINDS", "NOISE_CHOICES", "AUTO", "sample_seed", "NoiseSource",
           "PhiloxNoiseSource", "make_noise_source", "default_noise", "resolve_noise", "philox4x32", "philox_normal"]

INIT, PATH, DATA = 0, 1, 2
#: the noise sources of ``solverzoo.sample(noise=...)`` / ``--noise``
NOISE_KINDS = ("cpu", "philox")
AUTO = "auto"
#: what ``noise=`` / ``--noise`` accept: a source, or ``auto`` (:func:`default_noise` of the device)
NOISE_CHOICES = (AUTO, *NOISE_KINDS)


def default_noise(device: torch.device | str) -> str:
    """The noise source ``auto`` means on ``device``: ``"philox"`` on CUDA (the draws are made on the
    device), ``"cpu"`` on every other device (CPU results reproduce earlier ones exactly)."""
    return "philox" if torch.device(device).type == "cuda" else "cpu"


def resolve_noise(kind: str | None, device: torch.device | str) -> str:
    """``kind`` checked, with ``auto`` (or None) replaced by :func:`default_noise` of ``device``."""
    if kind is None or kind == AUTO:
        return default_noise(device)
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise source {kind!r}; choose one of {', '.join(NOISE_CHOICES)}")
    return kind


def sample_seed(seed: int, index: int, stream: int) -> int:
    """A well-mixed 63-bit seed for (run seed, sample index, stream)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seeds and sample indices must be >= 0, got seed={seed}, index={index}")
    state = np.random.SeedSequence([int(seed), int(stream), int(index)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


class _PerSampleNoise:
    """What both noise sources share: the global sample indices of a batch, the stream, the
    target device and dtype, and the count of draws made so far (draw ``k`` of a source is the
    ``k``-th ``randn`` call, the same for every sample in it)."""

    kind: str

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
        self.draws = 0

    def __len__(self) -> int:
        return len(self.indices)

    def randn(self, shape: Sequence[int]) -> Tensor:
        raise NotImplementedError

    def randn_like(self, x: Tensor) -> Tensor:
        if x.shape[0] != len(self.indices):
            raise ValueError(f"batch of {x.shape[0]} samples but the noise source holds {len(self.indices)}")
        return self.randn(x.shape[1:])


class NoiseSource(_PerSampleNoise):
    """Per-sample Gaussian draws for a batch of samples with known global indices.

    ``randn(shape)`` returns a ``(len(indices), *shape)`` tensor whose row ``b`` comes
    from the generator of sample ``indices[b]``: the values of a row never depend on
    which other samples share the batch.
    """

    kind = "cpu"

    def __init__(self, seed: int, indices: Sequence[int], stream: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        super().__init__(seed, indices, stream, device, dtype)
        self.generators = [
            torch.Generator(device="cpu").manual_seed(sample_seed(seed, i, stream)) for i in self.indices
        ]

    def randn(self, shape: Sequence[int]) -> Tensor:
        """One standard normal draw per sample, stacked along a new batch axis."""
        shape = tuple(int(n) for n in shape)
        work = torch.float64 if self.dtype == torch.float64 else torch.float32
        out = torch.empty((len(self.generators), *shape), dtype=work)
        # row.normal_ is what torch.randn(out=row) runs after its argument parsing and resize:
        # the same values from the same generator state, with less per-row Python overhead
        for row, gen in zip(out.unbind(0), self.generators):
            row.normal_(generator=gen)
        self.draws += 1
        return out.to(device=self.device, dtype=self.dtype, non_blocking=True)


# ----------------------------------------------------------------------------- Philox-4x32-10
# Salmon et al. 2011 (the Philox S-box and key schedule) and Random123's philox.h: multipliers, Weyl key increments
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
PHILOX_ROUNDS = 10
_MASK32 = 0xFFFFFFFF
_MASK16 = 0xFFFF


def _mulhilo32_split(m: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """(hi, lo) 32-bit halves of the 64-bit product ``m * x`` for a 32-bit constant ``m`` and
    int64 tensors ``x`` holding 32-bit values, without overflow: ``x`` is split into 16-bit
    halves, so every partial product is < 2^48 (torch has no uint64 multiply)."""
    a = m * (x & _MASK16)  # < 2^48
    b = m * (x >> 16)  # < 2^48
    low = a + ((b & _MASK16) << 16)  # < 2^49: the low 32 bits of m x plus a carry
    return (b >> 16) + (low >> 32), low & _MASK32


def _mulhilo32_wrap(m: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """The same from one int64 multiply that wraps modulo 2^64 (two's complement): the low
    64 bits of ``m x`` are exact, so ``lo = p & (2^32 - 1)`` and ``hi = (p >> 32) & (2^32 - 1)``
    (the arithmetic shift's sign bits are masked off).  Used where :func:`_wrapping_multiply`
    has checked that the device's int64 multiply wraps."""
    p = x * m
    return (p >> 32) & _MASK32, p & _MASK32


_WRAPS: dict[str, bool] = {}


def _wrapping_multiply(device: torch.device) -> bool:
    """Whether int64 multiplication wraps modulo 2^64 on this device type (it does on every
    backend torch ships, but C++ leaves signed overflow undefined): checked once per device
    type against the overflow-free split product on edge and random 32-bit values."""
    key = torch.device(device).type
    if key not in _WRAPS:
        gen = torch.Generator().manual_seed(0)
        x = torch.cat([torch.tensor([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000]),
                       torch.randint(0, 2**32, (4096,), generator=gen)]).to(device)
        _WRAPS[key] = all(torch.equal(a, b) for m in (PHILOX_M0, PHILOX_M1)
                          for a, b in zip(_mulhilo32_wrap(m, x), _mulhilo32_split(m, x)))
    return _WRAPS[key]


def philox4x32(counter: Sequence[Tensor], key: tuple[int, int], rounds: int = PHILOX_ROUNDS) -> list[Tensor]:
    """Philox-4x32-R (Salmon et al. 2011, the Philox bijection; Random123 ``philox4x32_R``).

    ``counter``: four int64 tensors of 32-bit words (broadcastable), ``key``: two 32-bit
    ints.  Returns the four 32-bit output words as int64 tensors.  Round:
    ``(c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0))``,
    then ``k += (W0, W1)`` before the next round."""
    words = [t.clone(memory_format=torch.contiguous_format)
             for t in torch.broadcast_tensors(*(torch.as_tensor(c, dtype=torch.int64) for c in counter))]
    _philox_rounds_(words, int(key[0]) & _MASK32, int(key[1]) & _MASK32, rounds)
    return words


def _philox_rounds_(c: list[Tensor], k0: int, k1: int, rounds: int = PHILOX_ROUNDS) -> None:
    """The Philox rounds of :func:`philox4x32` on four contiguous int64 tensors, whose list
    ``c`` is updated to the output words (two scratch products, no other allocation: the
    rounds are memory-bound; the buffers rotate instead of being copied)."""
    c0, c1, c2, c3 = c
    p0, p1 = torch.empty_like(c0), torch.empty_like(c0)
    wraps = _wrapping_multiply(c0.device)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + PHILOX_W0) & _MASK32, (k1 + PHILOX_W1) & _MASK32
        if wraps:  # p = M c modulo 2^64: hi = (p >> 32) & mask, lo = p & mask (see _mulhilo32_wrap)
            torch.mul(c0, PHILOX_M0, out=p0)
            torch.mul(c2, PHILOX_M1, out=p1)
            torch.bitwise_right_shift(p1, 32, out=c0).bitwise_and_(_MASK32)  # hi(M1 c2)
            torch.bitwise_right_shift(p0, 32, out=c2).bitwise_and_(_MASK32)  # hi(M0 c0)
            p0.bitwise_and_(_MASK32)  # lo(M0 c0)
            p1.bitwise_and_(_MASK32)  # lo(M1 c2)
        else:
            hi0, lo0 = _mulhilo32_split(PHILOX_M0, c0)
            hi1, lo1 = _mulhilo32_split(PHILOX_M1, c2)
            c0.copy_(hi1), c2.copy_(hi0), p0.copy_(lo0), p1.copy_(lo1)
        c0.bitwise_xor_(c1).bitwise_xor_(k0)
        c2.bitwise_xor_(c3).bitwise_xor_(k1)
        c1, p1 = p1, c1  # c1 <- lo(M1 c2); the old c1 becomes scratch
        c3, p0 = p0, c3  # c3 <- lo(M0 c0)
    c[:] = [c0, c1, c2, c3]


#: on the CPU the blocks are generated in chunks of at most this many, so the rounds' working
#: set (six int64 tensors) stays in cache; on accelerators all at once
CPU_CHUNK_BLOCKS = 1 << 14


def philox_normal(seed: int, indices: Tensor, stream: int, draw: int, numel: int,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normals (len(indices), numel) on ``indices``' device, from Philox-4x32-10.

    Key = the 64-bit seed (low word, high word).  Counter = (element block, draw number,
    sample index, stream): block ``j`` of row ``b`` yields elements ``4j .. 4j + 3`` of that
    row, so a value depends only on (seed, sample, stream, draw, position).  Each pair of
    32-bit words ``(u, v)`` becomes two normals by Box-Muller (Box & Muller 1958):
    ``r = sqrt(-2 log((u + 1) / 2^32))``, ``(r cos(2 pi v / 2^32), r sin(2 pi v / 2^32))``
    (tails reach 6.66, the 32-bit limit).  Computed in float64 for float64 output, else
    in float32.  ``indices`` must hold values in [0, 2^32) (not checked here: that would
    synchronise the device)."""
    if not 0 <= seed < 2**64:
        raise ValueError(f"the philox noise needs a seed in [0, 2^64), got {seed}")
    blocks = (numel + 3) // 4
    if blocks >= 2**32 or not 0 <= draw < 2**32 or not 0 <= stream < 2**32:
        raise ValueError("philox noise: block, draw and stream must each be in [0, 2^32)")
    device, rows = indices.device, len(indices)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    out = torch.empty(rows, blocks, 2, 2, device=device, dtype=work)  # (row, block, pair, cos/sin)
    index = indices.to(torch.int64)
    if device.type == "cpu":
        nb = min(blocks, CPU_CHUNK_BLOCKS)
        nr = max(1, CPU_CHUNK_BLOCKS // max(nb, 1))
    else:
        nb, nr = blocks, rows
    for r0 in range(0, rows, nr):
        for j0 in range(0, blocks, nb):
            r1, j1 = min(r0 + nr, rows), min(j0 + nb, blocks)
            shape = (r1 - r0, j1 - j0)
            c0 = torch.arange(j0, j1, device=device, dtype=torch.int64).expand(shape).contiguous()
            c2 = index[r0:r1, None].expand(shape).contiguous()
            words = [c0, torch.full_like(c0, int(draw)), c2, torch.full_like(c0, int(stream))]
            _philox_rounds_(words, seed & _MASK32, seed >> 32)
            z = out[r0:r1, j0:j1]
            for k in (0, 1):  # the pairs (w0, w1) and (w2, w3)
                radius = words[2 * k].to(work).add_(1.0).mul_(2.0**-32).log_().mul_(-2.0).sqrt_()
                angle = words[2 * k + 1].to(work).mul_(2.0 * math.pi * 2.0**-32)
                torch.mul(radius, torch.cos(angle), out=z[:, :, k, 0])
                torch.mul(radius, angle.sin_(), out=z[:, :, k, 1])
    return out.view(rows, 4 * blocks)[:, :numel].to(dtype)


class PhiloxNoiseSource(_PerSampleNoise):
    """Per-sample Gaussian draws computed on the device by Philox-4x32-10 (:func:`philox_normal`).

    The same interface as :class:`NoiseSource`; the ``k``-th ``randn`` call of a source is draw
    number ``k`` of every sample in it, so a sample's values never depend on the batch.
    ``generators`` (built on first use) gives host generators seeded from each sample's own
    Philox stream, for solvers that need one (torchsde's Brownian interval in ``sde_reference``).
    """

    kind = "philox"

    def __init__(self, seed: int, indices: Sequence[int], stream: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        if seed < 0 or any(not 0 <= int(i) < 2**32 for i in indices):
            raise ValueError(f"the philox noise needs a seed >= 0 and sample indices in [0, 2^32), got seed={seed}")
        super().__init__(seed, indices, stream, device, dtype)
        self._index = torch.tensor(self.indices, dtype=torch.int64, device=self.device)
        self._generators: list[torch.Generator] | None = None

    def randn(self, shape: Sequence[int]) -> Tensor:
        """One standard normal draw per sample, stacked along a new batch axis."""
        shape = tuple(int(n) for n in shape)
        numel = math.prod(shape)
        z = philox_normal(self.seed, self._index, self.stream, self.draws, numel, self.dtype)
        self.draws += 1
        return z.reshape(len(self.indices), *shape)

    @property
    def generators(self) -> list[torch.Generator]:
        """One host generator per sample, seeded by 63 bits of the sample's Philox block at
        draw number 2^32 - 1 (a counter no ``randn`` call reaches)."""
        if self._generators is None:
            index = torch.tensor(self.indices, dtype=torch.int64)
            zero = torch.zeros_like(index)
            w = philox4x32((zero, torch.full_like(index, _MASK32), index, torch.full_like(index, self.stream)),
                           (self.seed & _MASK32, self.seed >> 32))
            seeds = ((w[0] & 0x7FFFFFFF) << 32) | w[1]
            self._generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        return self._generators


def make_noise_source(kind: str, seed: int, indices: Sequence[int], stream: int,
                      device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """``"cpu"`` -> :class:`NoiseSource`, ``"philox"`` -> :class:`PhiloxNoiseSource`."""
    if kind == "cpu":
        return NoiseSource(seed, indices, stream, device, dtype)
    if kind == "philox":
        return PhiloxNoiseSource(seed, indices, stream, device, dtype)
    raise ValueError(f"unknown noise source {kind!r}; choose one of {', '.join(NOISE_KINDS)}")
