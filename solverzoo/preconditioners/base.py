"""Linear noise-shaping operators ``M`` on images ``(C, H, W)`` for PDS / TDAS samplers, acting on batches
``(..., C, H, W)``.  A sampler uses ``noise(z) = M z`` (the Gaussian noise it adds, and its initial
sample) and ``drift(v) = M M^T v`` (the preconditioned score, PDS only): with z ~ N(0, I), M z ~
N(0, M M^T), the same matrix, which keeps the stationary law of the preconditioned Langevin dynamics
(Ma et al. 2022).

``Identity`` (returns its input), ``SpaceFilter(s)`` (``diag(s)``), ``FrequencyFilter(f)`` (diagonal in
the 2-D DFT or DCT basis) and ``Composed(s, f)`` (``F^-1 diag(f) F diag(s)``, PDS's order).  Buffers live
on one device/dtype (``to``); a call computes on the input's device and precision (half in float32) and
returns the input's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "Preconditioner",
    "Identity",
    "SpaceFilter",
    "FrequencyFilter",
    "Composed",
    "dense_matrix",
    "dct_matrix",
    "dft_flip",
    "image_shape_of",
    "image_tensor",
]

_BASES = ("dft", "dct")


@runtime_checkable
class Preconditioner(Protocol):
    """What a sampler may ask of a preconditioner.

    ``noise(z) = M z``, ``adjoint(v) = M^T v``, ``drift(v) = M M^T v`` on ``(..., C, H, W)``
    tensors; ``check_shape(image_shape)`` raises ``ValueError`` when the operator does
    not fit images of that shape; ``to(device, dtype)`` moves the buffers (in place,
    returns ``self``); ``describe()`` is a JSON-friendly summary; ``is_identity`` is True
    only when ``noise``/``drift`` return their input object unchanged.
    """

    is_identity: bool

    def noise(self, z: Tensor) -> Tensor: ...

    def adjoint(self, v: Tensor) -> Tensor: ...

    def drift(self, v: Tensor) -> Tensor: ...

    def check_shape(self, image_shape: Sequence[int]) -> None: ...

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Preconditioner: ...

    def describe(self) -> dict: ...


# --------------------------------------------------------------------------- helpers


def image_shape_of(shape: Sequence[int] | Tensor) -> tuple[int, int, int]:
    """The trailing ``(C, H, W)`` of a shape (or of a tensor's shape)."""
    if isinstance(shape, Tensor):
        shape = tuple(shape.shape)
    shape = tuple(int(s) for s in shape)
    if len(shape) < 3:
        raise ValueError(f"images must have shape (C, H, W) or (B, C, H, W), got {shape}")
    return shape[-3:]  # type: ignore[return-value]


def _work_dtype(x: Tensor) -> torch.dtype:
    if x.is_complex() or not x.is_floating_point():
        raise TypeError(f"preconditioners act on real floating-point tensors, got {x.dtype}")
    if x.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return x.dtype


def image_tensor(values, what: str) -> Tensor:
    """``values`` as a real floating (C, H, W) tensor ((H, W) gains C = 1), finite, detached and copied;
    ``what`` names it in the errors (TypeError for complex values, ValueError otherwise)."""
    t = torch.as_tensor(values)
    if t.is_complex():
        raise TypeError(f"{what} must be real, got {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3:
        raise ValueError(f"{what} must have shape (C, H, W) (or (H, W)), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} has non-finite values")
    return t.detach().clone()


def _as_filter(values, name: str) -> Tensor:
    return image_tensor(values, f"the {name} filter")


def _check_fits(name: str, fshape: tuple[int, ...], image_shape: Sequence[int] | Tensor) -> None:
    c, h, w = image_shape_of(image_shape)
    fc, fh, fw = fshape
    if (fh, fw) != (h, w) or fc not in (1, c):
        raise ValueError(f"{name} filter has shape {tuple(fshape)} but images are {(c, h, w)}")


def dft_flip(f: Tensor) -> Tensor:
    """``f[..., -u mod H, -v mod W]``: the DFT index reflection over the last two axes."""
    return torch.roll(torch.flip(f, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def dct_matrix(n: int, *, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """Orthonormal DCT-II matrix ``D`` (``n x n``): ``X = D x``, ``x = D^T X``."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    d = torch.cos(math.pi * (2 * j + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(device=device, dtype=dtype)


def _stats(t: Tensor) -> dict:
    t = t.detach().to("cpu", torch.float64)
    return {"min": float(t.min()), "max": float(t.max()), "mean": float(t.mean())}


# --------------------------------------------------------------------------- operators


class Identity:
    """``M = I``.  ``noise``, ``adjoint`` and ``drift`` return the very same tensor object,
    so a solver run with ``Identity()`` is bit-identical to the plain solver."""

    is_identity = True

    def noise(self, z: Tensor) -> Tensor:
        return z

    def adjoint(self, v: Tensor) -> Tensor:
        return v

    def drift(self, v: Tensor) -> Tensor:
        return v

    def check_shape(self, image_shape: Sequence[int]) -> None:
        image_shape_of(image_shape)

    def to(self, device=None, dtype=None) -> Identity:
        return self

    def describe(self) -> dict:
        return {"kind": "identity"}

    def __repr__(self) -> str:
        return "Identity()"


class _Filter:
    """Shared plumbing of the diagonal-in-some-basis filters."""

    kind = "filter"
    is_identity = False

    def __init__(self, meta: dict | None = None):
        self.meta = dict(meta or {})

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.values.shape)  # type: ignore[attr-defined]

    @property
    def device(self) -> torch.device:
        return self.values.device  # type: ignore[attr-defined]

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype  # type: ignore[attr-defined]

    def check_shape(self, image_shape: Sequence[int] | Tensor) -> None:
        _check_fits(self.kind, self.shape, image_shape)

    def _prep(self, x: Tensor) -> torch.dtype:
        if x.ndim < 3:
            raise ValueError(f"images must have shape (..., C, H, W), got {tuple(x.shape)}")
        self.check_shape(tuple(x.shape))
        return _work_dtype(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape})"


class SpaceFilter(_Filter):
    """``M = diag(s)`` for ``s`` of shape ``(C, H, W)`` (``C = 1`` broadcasts over channels).

    ``noise(z) = s * z``, ``adjoint(v) = s * v``, ``drift(v) = s^2 * v``.
    """

    kind = "space"

    def __init__(self, s, meta: dict | None = None):
        super().__init__(meta)
        self.values = _as_filter(s, "space")

    def _s(self, x: Tensor, dt: torch.dtype) -> Tensor:
        return self.values.to(device=x.device, dtype=dt)

    def noise(self, z: Tensor) -> Tensor:
        dt = self._prep(z)
        return (z.to(dt) * self._s(z, dt)).to(z.dtype)

    adjoint = noise

    def drift(self, v: Tensor) -> Tensor:
        dt = self._prep(v)
        return (v.to(dt) * self._s(v, dt).square()).to(v.dtype)

    def to(self, device=None, dtype=None) -> SpaceFilter:
        self.values = self.values.to(device=device, dtype=dtype)
        return self

    def describe(self) -> dict:
        return {"kind": "space", "shape": list(self.shape), **_stats(self.values), **self.meta}


class FrequencyFilter(_Filter):
    """A filter diagonal in a 2-D frequency basis, ``f`` of shape ``(C, H, W)`` (``C = 1`` broadcasts).

    ``basis="dft"`` (PDS, TDAS-DFT; unshifted layout, DC at ``[0, 0]``, unnormalised ``torch.fft.fft2``):
    ``noise(z) = Re F^-1 (f * F z)``.  For real z only the even part ``f_e[k] = (f[k] + f[-k]) / 2`` acts, so
    M is a symmetric real convolution and ``drift(v) = M^2 v = F^-1 (f_e^2 F v)``: the exact M M^T of the
    noise operator (PDS's code differs for a non-symmetric f, docs/solver-notes.md); ``asymmetry`` records
    ``max |f - f[-k]| / max |f|``.  ``basis="dct"`` (TDAS on LSUN): ``M = D^T diag(f) D``, D the orthonormal
    2-D DCT-II, and ``drift = D^T f^2 D``.
    """

    kind = "frequency"

    def __init__(self, f, basis: str = "dft", meta: dict | None = None):
        super().__init__(meta)
        if basis not in _BASES:
            raise ValueError(f"basis must be one of {_BASES}, got {basis!r}")
        self.basis = basis
        self.values = _as_filter(f, "frequency")
        if basis == "dft":
            flipped = dft_flip(self.values)
            scale = float(self.values.abs().max())
            diff = float((self.values - flipped).abs().max())
            self.asymmetry = diff / scale if scale > 0 else 0.0
            self.effective = 0.5 * (self.values + flipped)
            self._dh = self._dw = None
        else:
            self.asymmetry = 0.0
            self.effective = self.values
            _, h, w = self.values.shape
            self._dh = dct_matrix(h, dtype=self.values.dtype, device=self.values.device)
            self._dw = dct_matrix(w, dtype=self.values.dtype, device=self.values.device)

    # -- the transforms, in the precision of the input
    def _apply(self, x: Tensor, power: int) -> Tensor:
        dt = self._prep(x)
        xf = x.to(dt)
        f = self.effective.to(device=x.device, dtype=dt)
        if power == 2:
            f = f.square()
        if self.basis == "dft":
            # f_e is real and even (f_e[k] = f_e[-k]), so f_e F x is Hermitian and
            # Re F^-1 (f_e F x) = F^-1 (f_e F x): one real-input half spectrum (rfft2 / irfft2)
            # gives the same operator as the full complex fft2 / ifft2, about 3.5x faster on CPU
            h, w = xf.shape[-2:]
            out = torch.fft.irfft2(f[..., : w // 2 + 1] * torch.fft.rfft2(xf), s=(h, w))
        else:
            dh = self._dh.to(device=x.device, dtype=dt)
            dw = self._dw.to(device=x.device, dtype=dt)
            coef = dh @ xf @ dw.transpose(0, 1)
            out = dh.transpose(0, 1) @ (f * coef) @ dw
        return out.to(x.dtype)

    def noise(self, z: Tensor) -> Tensor:
        return self._apply(z, 1)

    def adjoint(self, v: Tensor) -> Tensor:  # M is symmetric in both bases
        return self._apply(v, 1)

    def drift(self, v: Tensor) -> Tensor:
        return self._apply(v, 2)

    def to(self, device=None, dtype=None) -> FrequencyFilter:
        self.values = self.values.to(device=device, dtype=dtype)
        self.effective = self.effective.to(device=device, dtype=dtype)
        if self._dh is not None:
            self._dh = self._dh.to(device=device, dtype=dtype)
            self._dw = self._dw.to(device=device, dtype=dtype)
        return self

    def describe(self) -> dict:
        return {
            "kind": "frequency",
            "basis": self.basis,
            "shape": list(self.shape),
            **_stats(self.values),
            "asymmetry": self.asymmetry,
            **self.meta,
        }


class Composed:
    """``M = M_f M_s``: the space operator first, then the frequency operator.

    With ``SpaceFilter(s)`` and ``FrequencyFilter(f)`` this is PDS's
    ``M = F^-1 diag(f) F diag(s)``::

        noise(z)   = M_f (s * z)
        adjoint(v) = s * (M_f^T v)
        drift(v)   = M M^T v = M_f (s^2 * (M_f^T v))

    Any two preconditioners can be composed (``None`` means identity).
    """

    kind = "composed"

    def __init__(self, space: Preconditioner | None = None, frequency: Preconditioner | None = None):
        self.space = space if space is not None else Identity()
        self.frequency = frequency if frequency is not None else Identity()
        self.is_identity = bool(self.space.is_identity and self.frequency.is_identity)

    def noise(self, z: Tensor) -> Tensor:
        return self.frequency.noise(self.space.noise(z))

    def adjoint(self, v: Tensor) -> Tensor:
        return self.space.adjoint(self.frequency.adjoint(v))

    def drift(self, v: Tensor) -> Tensor:
        return self.frequency.noise(self.space.drift(self.frequency.adjoint(v)))

    def check_shape(self, image_shape: Sequence[int]) -> None:
        self.space.check_shape(image_shape)
        self.frequency.check_shape(image_shape)

    def to(self, device=None, dtype=None) -> Composed:
        self.space.to(device, dtype)
        self.frequency.to(device, dtype)
        return self

    def describe(self) -> dict:
        return {"kind": "composed", "space": self.space.describe(), "frequency": self.frequency.describe()}

    def __repr__(self) -> str:
        return f"Composed(space={self.space!r}, frequency={self.frequency!r})"


# --------------------------------------------------------------------------- tests' helper


def dense_matrix(
    precond: Preconditioner,
    shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    chunk: int = 512,
) -> tuple[Tensor, Tensor]:
    """``(M, M M^T)`` as dense ``n x n`` matrices, ``n = C*H*W``, built column by column.

    Column ``j`` of ``M`` is ``noise(e_j)`` and column ``j`` of the second matrix is
    ``drift(e_j)`` (flattened in C, H, W order), so ``M @ z.flatten() == noise(z).flatten()``.
    Meant for small images (tests).
    """
    c, h, w = image_shape_of(shape)
    n = c * h * w
    m_cols: list[Tensor] = []
    d_cols: list[Tensor] = []
    eye = torch.eye(n, dtype=dtype, device=device)
    for lo in range(0, n, chunk):
        basis = eye[lo : lo + chunk].reshape(-1, c, h, w)
        m_cols.append(precond.noise(basis.clone()).reshape(-1, n))
        d_cols.append(precond.drift(basis.clone()).reshape(-1, n))
    return torch.cat(m_cols).T.contiguous(), torch.cat(d_cols).T.contiguous()


def _iter_batches(images) -> Iterable[Tensor]:
    """A tensor/array ``(N, C, H, W)`` or ``(C, H, W)``, or an iterable of those."""
    if isinstance(images, Tensor) or hasattr(images, "__array__"):
        t = torch.as_tensor(images)
        yield t.unsqueeze(0) if t.ndim == 3 else t
        return
    for b in images:
        if isinstance(b, (tuple, list)):  # (images, labels) from a DataLoader
            b = b[0]
        t = torch.as_tensor(b)
        yield t.unsqueeze(0) if t.ndim == 3 else t
