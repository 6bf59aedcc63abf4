"""Preconditioned predictor-corrector samplers: PDS and TDAS.

Both are the score_sde PC sampler (:class:`~solverzoo.solvers.score_sde.PredictorCorrector`)
with a linear operator ``M = F^-1 diag(f) F diag(s)`` (space filter, then frequency filter):

* PDS (Ma et al. 2022, "Accelerating Score-based Generative Models with Preconditioned
  Diffusion Sampling", ECCV, Eq. 9-10 with S = 0): ``M z`` on every Gaussian draw
  (initial sample included) and ``M M^T`` on the score, in predictor and corrector;
* TDAS (Ma et al., "Target Distribution Aware Sampling", Sec. 4.3, Eq. 4-6): ``M z`` on
  the initial sample and the added noise only; the score is not preconditioned.

With no filters given, the filters are built from the model's data: 200 exact samples of
an analytic model (mapped to [0, 1] as the PDS statistics expect), and for TDAS a pilot
run of the plain PC sampler at the same grid (appendix A.2's estimate of the radial
filter from the frequency ratio of accelerated samples to data).  Learned models need
``filters=PATH`` (see ``solverzoo filters estimate``).
"""

from __future__ import annotations

import copy
import os

import torch

from ..models.base import AnalyticModel, Model
from .base import SolverInfo, register
from .score_sde import SCORE_SDE, PredictorCorrector

__all__ = ["PDS", "TDAS", "FILTER_KINDS", "STATISTIC_SAMPLES"]

FILTER_KINDS = ("freq+space", "freq", "space")
STATISTIC_SAMPLES = 200  # images behind the filter statistics, as in PDS and TDAS
FILTER_SEED = 2**31 - 1  # data/pilot samples for filters use their own seed, not the run's


def _data_images(model: Model, device, dtype, what: str) -> torch.Tensor:
    """200 exact data samples in [0, 1] (images in [-1, 1] are mapped by (x + 1) / 2)."""
    if not isinstance(model, AnalyticModel):
        raise ValueError(
            f"{what} needs filters for model {model.name!r}: pass filters=PATH (an .npz from "
            f"'solverzoo filters estimate' or PDS .npy statistics); only analytic models build their own"
        )
    if not model.is_image:
        raise ValueError(f"{what} filters act on images (C, H, W); model {model.name!r} has shape {model.shape}")
    x = model.sample_data(FILTER_SEED, range(STATISTIC_SAMPLES), device=device).to(dtype)
    return ((x + 1) / 2).clamp(0, 1)


def _check_kind(filters) -> None:
    if isinstance(filters, str) and filters not in FILTER_KINDS and filters != "tdas" and not os.path.exists(filters):
        raise ValueError(f"filters={filters!r} is neither a filter kind ({', '.join(FILTER_KINDS)}) nor an existing file")


def check_filters(solver, filters, model: Model) -> None:
    """Before any work: images only; filters estimated from data need an analytic model; a
    filter file or operator must fit the image shape."""
    from ..preconditioners import load_filters

    name = solver.info.name
    if not model.is_image:
        raise ValueError(f"{name}: filters act on images (C, H, W); model {model.name!r} has shape "
                         f"{tuple(model.shape)}")
    if isinstance(filters, str) and (filters in FILTER_KINDS or filters == "tdas"):
        if not isinstance(model, AnalyticModel):
            raise ValueError(f"{name} needs filters for model {model.name!r}: pass a filter file (.npz from "
                             f"'solverzoo filters estimate' / 'tdas-estimate', or PDS .npy statistics); only "
                             f"analytic models build their own")
    elif isinstance(filters, (str, os.PathLike)):
        load_filters(filters, model.shape)
    elif hasattr(filters, "check_shape"):
        filters.check_shape(tuple(model.shape))


def tdas_filters(model: Model, pilot, grid, device, dtype, kinds: str = "freq+space", radii=None, rates=None,
                 quantiles=(0.5, 0.65), softness: float = 5.0, pilot_samples: int = STATISTIC_SAMPLES):
    """TDAS's M for ``model`` (Sec. 4.3 and appendix A.2), and the A.2 estimate (or None).

    The space filter comes from the mean of 200 data images; the radial frequency filter
    from ``radii``/``rates`` or, when they are not given, from the ratio of the frequency
    statistics of a pilot run (``pilot``, the same sampler without filters, at ``grid``)
    to those of the data."""
    from ..preconditioners import tdas_estimate, tdas_preconditioner
    from ..sampling import sample

    data = _data_images(model, device, torch.float64, "tdas")
    estimate = None
    if "freq" in kinds and radii is None:
        steps = grid.steps if grid is not None else None
        if steps is None:
            raise RuntimeError("TDAS filters need the run's grid for their pilot run")
        x = sample(model, pilot, steps=steps, num_samples=pilot_samples, seed=FILTER_SEED,
                   batch_size=min(pilot_samples, 100), device=device, dtype=dtype).samples
        found = tdas_estimate(((x + 1) / 2).clamp(0, 1).to(torch.float64), data.cpu(), quantiles=quantiles)
        radii, rates, estimate = found.radii, found.rates, found.describe()
    operator = tdas_preconditioner(
        model.shape,
        radii if "freq" in kinds else (),
        rates if "freq" in kinds else (),
        mean_image=data.mean(0) if "space" in kinds else None,
        softness=softness,
    )
    return operator, estimate


def noise_filters(solver, spec, model: Model, device, dtype, grid):
    """``preconditioner="tdas"`` (TDAS filters estimated for this solver at this grid) or a
    filter file, for any solver that filters its noise (TDAS applies to every stochastic
    sampler because it only changes the noise)."""
    from ..preconditioners import load_filters

    if spec == "tdas":
        pilot = copy.copy(solver)
        pilot.preconditioner = None
        operator, solver.estimate = tdas_filters(model, pilot, grid, device, dtype)
        return operator
    return load_filters(spec, model.shape, kind="filter").preconditioner()


class _Filtered(PredictorCorrector):
    """PC with data-derived filters (``filters``): checked against the model before any work."""

    filters = None

    def check_model(self, model: Model) -> None:
        check_filters(self, self.filters if self.preconditioner is None else self.preconditioner, model)


@register
class PDS(_Filtered):
    """PDS (Ma et al. 2022, ECCV; Eq. 9-10): the PC sampler with M on the noise and
    M M^T on the score (``x_mean = (2 - a) x + G^2 M M^T score``, ``x = x_mean + G M z``;
    Langevin ``eps = 2 a (snr ||M z|| / ||M M^T score||)^2``).  Filters from data
    statistics: ``f = alpha / (m / max m + alpha - 1)`` (alpha = 5).  With identity filters
    it is the PC sampler bit for bit.  ``speed_up`` k: N = N0 / k steps, end time eps * k.
    """

    info = SolverInfo(
        name="pds", family="pds", kind="sde", order=1, calls_per_step=2,
        paper="Ma et al. 2022, Accelerating Score-based Generative Models with Preconditioned Diffusion "
              "Sampling (ECCV), Eq. 9-10; on " + SCORE_SDE,
        preconditioning=frozenset({"noise", "drift"}),
    )

    def __init__(self, filters="freq+space", alpha: float = 5.0, **options):
        _check_kind(filters)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0 (PDS uses 5; inf means no filtering), got {alpha}")
        self.filters, self.alpha = filters, float(alpha)
        super().__init__(**options)

    def prepare(self, model: Model, device, dtype, grid=None) -> None:
        from ..preconditioners import load_filters, pds_preconditioner, pds_statistics

        if self.preconditioner is None:
            if isinstance(self.filters, str) and self.filters in FILTER_KINDS:
                stats = pds_statistics(_data_images(model, device, torch.float64, "pds"))
                self.preconditioner = pds_preconditioner(
                    stats.freq if "freq" in self.filters else None,
                    stats.space if "space" in self.filters else None,
                    self.alpha,
                )
            elif isinstance(self.filters, (str, os.PathLike)):
                loaded = load_filters(self.filters, model.shape)
                self.preconditioner = loaded.preconditioner(self.alpha)
            else:
                self.preconditioner = self.filters
        super().prepare(model, device, dtype, grid)


@register
class TDAS(_Filtered):
    """TDAS (Ma et al., Target Distribution Aware Sampling; Sec. 4.3 Eq. 4-6, app. A.2):
    the PC sampler with the initial sample and every added noise filtered, ``M z``, and
    the score left alone.  Radial frequency filter: 1 inside ``radii[0]``, ``rates[j]``
    beyond ``radii[j]``; space filter from the softened mean image.  Without ``radii``
    the radial filter is estimated (app. A.2) from a pilot PC run at the same grid
    (``pilot_samples`` images, 200 in the paper) against the model's data.
    """

    info = SolverInfo(
        name="tdas", family="tdas", kind="sde", order=1, calls_per_step=2,
        paper="Ma et al., Target Distribution Aware Sampling for Fast Score-Based Generative Models, "
              "Sec. 4.3 Eq. 4-6 and appendix A.2; on " + SCORE_SDE,
        preconditioning=frozenset({"noise"}),
    )

    def __init__(self, filters="freq+space", radii: tuple[float, ...] | None = None,
                 rates: tuple[float, ...] | None = None, quantiles: tuple[float, ...] = (0.5, 0.65),
                 softness: float = 5.0, pilot_samples: int = STATISTIC_SAMPLES, **options):
        _check_kind(filters)
        if (radii is None) != (rates is None):
            raise ValueError("give both radii and rates (one rate per radius), or neither to estimate them")
        if radii is not None and any(r < 0 for r in radii):
            raise ValueError(f"TDAS radii must be >= 0, got {list(radii)}")
        self.filters, self.radii, self.rates = filters, radii, rates
        if int(pilot_samples) != pilot_samples or pilot_samples < 2:
            raise ValueError(f"pilot_samples must be an integer >= 2, got {pilot_samples}")
        self.quantiles, self.softness, self.pilot_samples = tuple(quantiles), float(softness), int(pilot_samples)
        super().__init__(**options)

    def prepare(self, model: Model, device, dtype, grid=None) -> None:
        from ..preconditioners import load_filters

        if self.preconditioner is None:
            if isinstance(self.filters, str) and self.filters in FILTER_KINDS:
                plain = PredictorCorrector(
                    snr=self.snr, n_corrector=self.n_corrector, corrector_norm=self.corrector_norm,
                    base_steps=self.base_steps, grid=self.grid_name, final=self.final,
                    grid_options=self.grid_options,
                )
                self.preconditioner, self.estimate = tdas_filters(
                    model, plain, grid, device, dtype, self.filters, self.radii, self.rates, self.quantiles,
                    self.softness, self.pilot_samples)
            elif isinstance(self.filters, (str, os.PathLike)):
                self.preconditioner = load_filters(self.filters, model.shape, kind="filter").preconditioner()
            else:
                self.preconditioner = self.filters
        super().prepare(model, device, dtype, grid)
