"""Sample-quality metrics against exact analytic references."""

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

__all__ = [
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
