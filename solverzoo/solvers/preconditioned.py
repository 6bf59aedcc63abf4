"""Preconditioned predictor-corrector samplers: PDS and TDAS, the score_sde PC sampler
(:class:`~solverzoo.solvers.score_sde.PredictorCorrector`) with a linear operator
``M = F^-1 diag(f) F diag(s)`` (space filter, then frequency filter):

* PDS (Ma et al. 2022, ECCV, Eq. 9-10 with S = 0): ``M z`` on every Gaussian draw (the initial sample
  included) and ``M M^T`` on the score, in predictor and corrector;
* TDAS (Ma et al., "Target Distribution Aware Sampling", Sec. 4.3, Eq. 4-6): ``M z`` on the initial
  sample and the added noise only.

The solvers declare their filters (:meth:`filter_spec`); ``solverzoo.sampling.build_filters`` builds
them for each run (:mod:`solverzoo.preconditioners.build`): from 200 images of the model's data (exact
samples of an analytic model, a seeded draw from a learned model's training data), a filter file, or
an operator; TDAS's radial filter from a pilot run of the plain PC sampler (appendix A.2).
"""

from __future__ import annotations

from ..preconditioners.build import FILTER_KINDS, FILTER_SEED, STATISTIC_SAMPLES, FilterSpec, check_source
from .base import SolverInfo, declared_options, register
from .score_sde import SCORE_SDE, PredictorCorrector

__all__ = ["PDS", "TDAS", "FILTER_KINDS", "FILTER_SEED", "STATISTIC_SAMPLES"]


@register
class PDS(PredictorCorrector):
    """PDS (Ma et al. 2022, ECCV; Eq. 9-10): the PC sampler with M on the noise and
    M M^T on the score (``x_mean = (2 - a) x + G^2 M M^T score``, ``x = x_mean + G M z``;
    Langevin ``eps = 2 a (snr ||M z|| / ||M M^T score||)^2``).  Filters from data
    statistics: ``f = alpha / (m / max m + alpha - 1)`` (alpha = 5).  With identity filters
    it is the PC sampler bit for bit.  ``speed_up`` k: N = int(N0 / k) steps, end time eps N0 / N
    (eps k with ``discretize="official"``, which also takes G^2 from the official discrete sigma
    table and reproduces fudan-zvg/PDS's sampling loop to rounding; see ``PredictorCorrector``).
    """

    info = SolverInfo(
        name="pds", family="pds", kind="sde", order=1, calls_per_step=2,
        paper="Ma et al. 2022, Accelerating Score-based Generative Models with Preconditioned Diffusion "
              "Sampling (ECCV), Eq. 9-10; on " + SCORE_SDE,
        preconditioning=frozenset({"noise", "drift"}),
    )

    def __init__(self, filters="freq+space", alpha: float = 5.0, **options):
        check_source(filters)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0 (PDS uses 5; inf means no filtering), got {alpha}")
        self.filters, self.alpha = filters, float(alpha)
        super().__init__(**options)

    def filter_spec(self) -> FilterSpec:
        return FilterSpec(self.info.name, "pds", self.filters if self.preconditioner is None else self.preconditioner,
                          alpha=self.alpha)


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
        check_source(filters)
        if (radii is None) != (rates is None):
            raise ValueError("give both radii and rates (one rate per radius), or neither to estimate them")
        if radii is not None and any(r < 0 for r in radii):
            raise ValueError(f"TDAS radii must be >= 0, got {list(radii)}")
        if int(pilot_samples) != pilot_samples or pilot_samples < 2:
            raise ValueError(f"pilot_samples must be an integer >= 2, got {pilot_samples}")
        self.filters = filters
        self.radii = None if radii is None else tuple(radii)
        self.rates = None if rates is None else tuple(rates)
        self.quantiles, self.softness, self.pilot_samples = tuple(quantiles), float(softness), int(pilot_samples)
        super().__init__(**options)

    def filter_spec(self) -> FilterSpec:
        """TDAS filters; the pilot for the A.2 estimate is the plain PC sampler with these PC options."""
        plain = {name: value for name, value in self.option_values().items()
                 if name in declared_options(PredictorCorrector)[0] and name != "preconditioner"}
        return FilterSpec(self.info.name, "tdas", self.filters if self.preconditioner is None else self.preconditioner,
                          radii=self.radii, rates=self.rates, quantiles=self.quantiles, softness=self.softness,
                          pilot_samples=self.pilot_samples, pilot=PredictorCorrector(**plain))
