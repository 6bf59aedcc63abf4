"""One model interface: a denoiser D(x_hat, sigma) plus the process it was trained under.

A model predicts ``D(x_hat; sigma) = E[x0 | x_hat]`` for ``x_hat = x0 + sigma n`` in
unscaled units (Karras et al. 2022, Eq. 2-3).  Everything else is derived:

    score(x_hat) = (D - x_hat) / sigma^2        (grad log p_sigma, in x_hat units)
    eps(x_hat)   = (x_hat - D) / sigma           (the noise a DDPM network predicts)

Solvers never call the model directly; they call a :class:`CountingDenoiser`, which
counts model calls.  The NFE reported anywhere in solverzoo is that count.

Class-conditional models (``num_classes = K > 0``) take one label per row,
``denoise(x_hat, sigma, labels)`` with labels in 0..K-1 or :data:`NULL_LABEL` (an unconditional
row); the counting wrapper passes the labels of its batch rows, so every solver samples a
conditional or guided model (solverzoo.models.guidance) unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..processes import Process

__all__ = ["Model", "AnalyticModel", "CountingDenoiser", "NULL_LABEL"]

#: the label of an unconditional row of a class-conditional model
NULL_LABEL = -1


class Model:
    """A denoiser in unscaled units and the process it was trained under.

    Subclasses implement :meth:`denoise`.  ``sigma`` is a tensor of shape ``(B,)`` (one
    noise level per sample) on the same device as ``x_hat``.  A class-conditional model sets
    ``num_classes`` and accepts ``denoise(x_hat, sigma, labels=None)`` (see the module docstring).
    """

    name: str = "model"
    process: Process
    shape: tuple[int, ...]
    num_classes: int = 0  # > 0: class-conditional

    def denoise(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        raise NotImplementedError

    def score(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        sigma_b = _bcast(sigma, x_hat)
        return (self.denoise(x_hat, sigma) - x_hat) / sigma_b**2

    def eps(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        sigma_b = _bcast(sigma, x_hat)
        return (x_hat - self.denoise(x_hat, sigma)) / sigma_b

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Model:
        return self

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def describe(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "process": self.process.describe()}


class AnalyticModel(Model):
    """A model whose data law is known in closed form: exact denoiser, exact samples
    from the data law (the oracle), and exact first and second moments."""

    def sample_data(self, seed: int, indices: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        """Exact samples x0 ~ p_data; sample ``i`` depends only on (seed, i)."""
        raise NotImplementedError

    def data_mean(self) -> Tensor:
        raise NotImplementedError

    def data_cov(self) -> Tensor:
        raise NotImplementedError


def _bcast(sigma: Tensor, x: Tensor) -> Tensor:
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        return sigma
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


class CountingDenoiser:
    """Wraps a model for the solvers: ``D(x_hat, sigma)`` with ``sigma`` a python float
    or a per-sample tensor, and an exact count of model calls (``nfe``).

    One call on a batch counts once: NFE is per sample trajectory, as in every paper.
    ``labels`` (one per batch row, for a class-conditional model) go with every call.
    """

    def __init__(self, model: Model, labels: Tensor | None = None):
        self.model = model
        self.process = model.process
        self.labels = labels
        self.nfe = 0

    def __call__(self, x_hat: Tensor, sigma: float | Tensor) -> Tensor:
        self.nfe += 1
        if not torch.is_tensor(sigma) or sigma.ndim == 0:
            sigma = torch.full((x_hat.shape[0],), float(sigma), dtype=x_hat.dtype, device=x_hat.device)
        if self.labels is None:
            return self.model.denoise(x_hat, sigma)
        if len(self.labels) != x_hat.shape[0]:
            raise ValueError(f"{len(self.labels)} labels for a batch of {x_hat.shape[0]} rows")
        return self.model.denoise(x_hat, sigma, labels=self.labels.to(x_hat.device))

    def score(self, x_hat: Tensor, sigma: float) -> Tensor:
        """grad log p_sigma(x_hat) = (D - x_hat) / sigma^2, one counted call."""
        return (self(x_hat, sigma) - x_hat) / sigma**2
