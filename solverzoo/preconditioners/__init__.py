"""Noise-shaping / preconditioning operators for PDS and TDAS samplers.

``noise(z) = M z`` and ``drift(v) = M M^T v`` on ``(B, C, H, W)`` batches, with
``M = F^-1 diag(f) F diag(s)`` (space filter first, then the frequency filter).

* :mod:`.base`  -- the protocol and the operators (Identity, SpaceFilter,
  FrequencyFilter, Composed) and ``dense_matrix`` for tests;
* :mod:`.pds`   -- PDS statistics, filters, and mask files (Ma et al. 2022, ECCV);
* :mod:`.tdas`  -- TDAS radial / mean-image filters and the appendix-A.2 estimator;
* :mod:`.build` -- the filters a run needs (``FilterSpec``), made from data, a file or an operator.
"""

from .base import (
    Composed,
    FrequencyFilter,
    Identity,
    Preconditioner,
    SpaceFilter,
    dct_matrix,
    dense_matrix,
    dft_flip,
)
from .pds import (
    FilterFile,
    PDSStatistics,
    load_filters,
    load_pds_preconditioner,
    pds_alpha_range,
    pds_filter,
    pds_preconditioner,
    pds_statistics,
    save_filters,
)
from .tdas import (
    TDASEstimate,
    frequency_power,
    frequency_radius,
    image_mean,
    tdas_estimate,
    tdas_frequency_filter,
    tdas_preconditioner,
    tdas_space_filter,
)

__all__ = [
    "Preconditioner",
    "Identity",
    "SpaceFilter",
    "FrequencyFilter",
    "Composed",
    "dense_matrix",
    "dct_matrix",
    "dft_flip",
    "PDSStatistics",
    "pds_statistics",
    "pds_filter",
    "pds_alpha_range",
    "pds_preconditioner",
    "FilterFile",
    "save_filters",
    "load_filters",
    "load_pds_preconditioner",
    "frequency_radius",
    "frequency_power",
    "image_mean",
    "tdas_frequency_filter",
    "tdas_space_filter",
    "tdas_preconditioner",
    "TDASEstimate",
    "tdas_estimate",
]
