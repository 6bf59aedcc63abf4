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


def _check_image(solver, model: Model) -> None:
    """Images only; a filter file or operator must fit the image shape (checked before any work)."""
    from ..preconditioners import load_filters

    if not model.is_image:
        raise ValueError(f"{solver.info.name} filters act on images (C, H, W); model {model.name!r} has shape "
                         f"{tuple(model.shape)}: use pc for it")
    if isinstance(solver.filters, (str, os.PathLike)) and solver.filters not in FILTER_KINDS:
        load_filters(solver.filters, model.shape)
    elif hasattr(solver.filters, "check_shape"):
        solver.filters.check_shape(tuple(model.shape))


def _check_kind(filters) -> None:
    if isinstance(filters, str) and filters not in FILTER_KINDS and not os.path.exists(filters):
        raise ValueError(f"filters={filters!r} is neither a filter kind ({', '.join(FILTER_KINDS)}) nor an existing file")


@register
class PDS(PredictorCorrector):
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

    check_model = _check_image

    def prepare(self, model: Model, device, dtype) -> None:
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
        super().prepare(model, device, dtype)


@register
class TDAS(PredictorCorrector):
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
        self._steps: int | None = None
        super().__init__(**options)

    def make_grid(self, process, steps: int):
        self._steps = steps  # the pilot run for the A.2 estimate uses the same grid
        return super().make_grid(process, steps)

    check_model = _check_image

    def prepare(self, model: Model, device, dtype) -> None:
        from ..preconditioners import load_filters, tdas_estimate, tdas_preconditioner

        if self.preconditioner is None:
            if isinstance(self.filters, str) and self.filters in FILTER_KINDS:
                data = _data_images(model, device, torch.float64, "tdas")
                radii, rates = self.radii, self.rates
                if "freq" in self.filters and radii is None:
                    radii, rates = self._estimate(model, device, dtype, data, tdas_estimate)
                self.preconditioner = tdas_preconditioner(
                    model.shape,
                    radii if "freq" in self.filters else (),
                    rates if "freq" in self.filters else (),
                    mean_image=data.mean(0) if "space" in self.filters else None,
                    softness=self.softness,
                )
            elif isinstance(self.filters, (str, os.PathLike)):
                self.preconditioner = load_filters(self.filters, model.shape, kind="filter").preconditioner()
            else:
                self.preconditioner = self.filters
        super().prepare(model, device, dtype)

    def _estimate(self, model, device, dtype, data, tdas_estimate):
        """Appendix A.2: radii and rates from a pilot PC run at this grid against the data."""
        from ..sampling import sample

        if self._steps is None:
            raise RuntimeError("tdas: make_grid must run before prepare")
        plain = PredictorCorrector(
            snr=self.snr, n_corrector=self.n_corrector, corrector_norm=self.corrector_norm,
            base_steps=self.base_steps, grid=self.grid_name, final=self.final, grid_options=self.grid_options,
        )
        pilot = sample(model, plain, steps=self._steps, num_samples=self.pilot_samples, seed=FILTER_SEED,
                       batch_size=min(self.pilot_samples, 100), device=device, dtype=dtype).samples
        estimate = tdas_estimate(((pilot + 1) / 2).clamp(0, 1).to(torch.float64), data.cpu(),
                                 quantiles=self.quantiles)
        self.estimate = estimate.describe()
        return estimate.radii, estimate.rates
