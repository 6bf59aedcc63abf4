"""Sample-quality metrics: kernel distance in the whitened basis (analytic models), Frechet distance,
spectral error, and :func:`evaluate`, the bench's scale for any sample set."""

from . import modes, pathwise  # noqa: F401  (they declare their metrics in .catalog)
from .evaluate import Scorer, evaluate, make_scorer
from .fd import (
    ExactReference,
    FeatureStats,
    clear_caches,
    exact_reference,
    feature_dim,
    feature_moments,
    frechet_distance,
    make_feature,
    metric_name,
    oracle_floor,
    parse_feature,
)
from .mmd import KernelReference, kernel_reference, mmd2_unbiased, whitening_map

__all__ = [
    "KernelReference",
    "Scorer",
    "evaluate",
    "kernel_reference",
    "make_scorer",
    "mmd2_unbiased",
    "whitening_map",
    "ExactReference",
    "FeatureStats",
    "clear_caches",
    "exact_reference",
    "feature_dim",
    "feature_moments",
    "frechet_distance",
    "make_feature",
    "metric_name",
    "oracle_floor",
    "parse_feature",
]
