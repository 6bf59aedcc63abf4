"""Filters for a run, built in one place: what a solver asks for (:class:`FilterSpec`) and the
finished operator made from it, from the model's data (PDS statistics, the TDAS mean image),
a filter file, or an operator given as it is.

The TDAS radial filter estimated from a pilot run (Ma et al., TDAS appendix A.2) needs samples
of the solver without filters at the run's grid: ``solverzoo.sampling.build_filters`` makes
that pilot run and passes its samples to :meth:`FilterSpec.build`.  Nothing here samples, and
nothing here imports the solvers: the spec's ``pilot`` is any object ``sample`` accepts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..models.base import AnalyticModel, Model
from .pds import load_filters, pds_preconditioner, pds_statistics
from .tdas import tdas_estimate, tdas_preconditioner

__all__ = ["FilterSpec", "FILTER_KINDS", "STATISTIC_SAMPLES", "FILTER_SEED", "data_images", "draw_data_images"]

FILTER_KINDS = ("freq+space", "freq", "space")
STATISTIC_SAMPLES = 200  # images behind the filter statistics, as in PDS and TDAS
FILTER_SEED = 2**31 - 1  # data/pilot samples for filters use their own seed, not the run's
METHODS = ("pds", "tdas")


def data_images(model: Model, device, dtype, what: str, source: str | None = None) -> Tensor:
    """200 data images in [0, 1] (images in [-1, 1] are mapped by (x + 1) / 2): exact samples of an
    analytic model, or a seeded draw from a learned model's training data (``model.data``: a named
    dataset such as ``digits`` / ``patches``, a folder or an array), as PDS and TDAS take their
    statistics from the training set.  ``source``: other data than the model's own (same draw)."""
    if source is not None:
        return draw_data_images(source, tuple(model.shape), STATISTIC_SAMPLES, device, dtype, what=f"{what}: data")
    source = _data_source(model, what)
    if isinstance(model, AnalyticModel):
        x = model.sample_data(FILTER_SEED, range(STATISTIC_SAMPLES), device=device).to(dtype)
        return ((x + 1) / 2).clamp(0, 1)
    return draw_data_images(source, tuple(model.shape), STATISTIC_SAMPLES, device, dtype,
                            what=f"{what}: the training data of model {model.name!r}")


def draw_data_images(source: str, shape: tuple | None = None, num: int = STATISTIC_SAMPLES, device="cpu",
                     dtype: torch.dtype = torch.float64, what: str = "data") -> Tensor:
    """``num`` images in [0, 1] drawn from a dataset (``solverzoo.data.load_dataset``: a named dataset,
    a folder or an array) by a permutation seeded with :data:`FILTER_SEED`: the draw behind every
    filter built from data (``solverzoo filters estimate --data`` included), so the same data gives
    the same filters through every door.  ``shape``: the image shape the filters must fit."""
    from ..data import load_dataset

    images = load_dataset(source)
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(f"{what} {source!r} has images of shape {tuple(images.shape[1:])}, the filters are for "
                         f"{tuple(shape)}")
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(FILTER_SEED))[:num]
    x = images[pick].to(device=device, dtype=dtype)
    return ((x + 1) / 2).clamp(0, 1)


def _data_source(model: Model, what: str) -> str | None:
    """What the filters of ``model`` are estimated from; a ValueError if there is nothing."""
    if not model.is_image:
        raise ValueError(f"{what} filters act on images (C, H, W); model {model.name!r} has shape {model.shape}")
    if isinstance(model, AnalyticModel):
        return None
    source = getattr(model, "data", None)
    if source is None:
        raise ValueError(
            f"{what} needs filters for model {model.name!r}, whose training data is not known: pass filters=PATH "
            f"(an .npz from 'solverzoo filters estimate --data YOUR_DATA' or PDS .npy statistics)"
        )
    return str(source)


def check_source(source: Any) -> None:
    """A filter source is a kind (from the model's data), "tdas", an existing file, or an operator."""
    if isinstance(source, str) and source not in FILTER_KINDS and source != "tdas" and not os.path.exists(source):
        raise ValueError(f"filters={source!r} is neither a filter kind ({', '.join(FILTER_KINDS)}) nor an existing "
                         f"file")


@dataclass(frozen=True)
class FilterSpec:
    """The filters a run needs.  ``method``: "pds" (Ma et al. 2022, Eq. 9-10: filters from data
    statistics, strength ``alpha``) or "tdas" (TDAS Sec. 4.3: mean-image space filter and a
    radial frequency filter, given by ``radii``/``rates`` or estimated (app. A.2) from
    ``pilot_samples`` samples of ``pilot``).  ``source``: a kind in :data:`FILTER_KINDS`
    ("tdas" = "freq+space"), a filter file, or a finished operator."""

    solver: str
    method: str
    source: Any
    alpha: float = 5.0
    radii: tuple[float, ...] | None = None
    rates: tuple[float, ...] | None = None
    quantiles: tuple[float, ...] = (0.5, 0.65)
    softness: float = 5.0
    pilot_samples: int = STATISTIC_SAMPLES
    pilot: Any = None
    data: str | None = None  # the data behind the filters, when not the model's own

    @property
    def kinds(self) -> str | None:
        """The filters to build from the model's data, or None (a file or an operator)."""
        if isinstance(self.source, str) and (self.source in FILTER_KINDS or self.source == "tdas"):
            return "freq+space" if self.source == "tdas" else self.source
        return None

    @property
    def needs_pilot(self) -> bool:
        kinds = self.kinds
        return self.method == "tdas" and kinds is not None and "freq" in kinds and self.radii is None

    def check(self, model: Model) -> None:
        """Before any work: images only; filters from data need an analytic model; a filter file or
        an operator must fit the image shape."""
        name = self.solver
        if not model.is_image:
            raise ValueError(f"{name}: filters act on images (C, H, W); model {model.name!r} has shape "
                             f"{tuple(model.shape)}")
        if self.kinds is not None and self.data is None:
            _data_source(model, name)
        elif isinstance(self.source, (str, os.PathLike)):
            load_filters(self.source, model.shape)
        elif hasattr(self.source, "check_shape"):
            self.source.check_shape(tuple(model.shape))

    def build(self, model: Model, device, dtype, pilot: Tensor | None = None) -> tuple[Any, dict | None]:
        """(operator on ``device``/``dtype``, the A.2 estimate or None); ``pilot``: the pilot run's
        samples when :attr:`needs_pilot`."""
        if self.method not in METHODS:
            raise ValueError(f"filter method must be one of {METHODS}, got {self.method!r}")
        operator, estimate = self._operator(model, device, pilot)
        operator = operator.to(device, dtype)
        if hasattr(operator, "check_shape"):
            operator.check_shape(tuple(model.shape))
        return operator, estimate

    def _operator(self, model: Model, device, pilot: Tensor | None) -> tuple[Any, dict | None]:
        kinds = self.kinds
        if kinds is None and isinstance(self.source, (str, os.PathLike)):
            if self.method == "pds":
                return load_filters(self.source, model.shape).preconditioner(self.alpha), None
            return load_filters(self.source, model.shape, kind="filter").preconditioner(), None
        if kinds is None:
            return self.source, None
        data = data_images(model, device, torch.float64, self.method, source=self.data)
        if self.method == "pds":
            stats = pds_statistics(data)
            return pds_preconditioner(stats.freq if "freq" in kinds else None,
                                      stats.space if "space" in kinds else None, self.alpha), None
        radii, rates, estimate = self.radii, self.rates, None
        if self.needs_pilot:
            if pilot is None:
                raise RuntimeError("TDAS filters need the samples of a pilot run at the run's grid")
            found = tdas_estimate(((pilot + 1) / 2).clamp(0, 1).to(torch.float64), data.cpu(), quantiles=self.quantiles)
            radii, rates, estimate = found.radii, found.rates, found.describe()
        operator = tdas_preconditioner(
            model.shape,
            radii if "freq" in kinds else (),
            rates if "freq" in kinds else (),
            mean_image=data.mean(0) if "space" in kinds else None,
            softness=self.softness,
        )
        return operator, estimate
