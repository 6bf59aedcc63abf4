"""Mode coverage on mixture models: does a sampler put the right mass on every component?

``mode_tv`` is the total-variation distance between the fraction of samples in each mixture component
(the most probable component at the model's smallest noise level, :func:`.pathwise.components`) and the
mixture weights w_k:

    mode_tv = 1/2 sum_k | #{i : k_i = k} / N - w_k |,

0 when the samples split over the components exactly as the data do, 1 when they all miss.  A sampler
that drops or over-fills modes (too little noise, too strong guidance, a collapsed ODE map) raises it.
Exact samples score the multinomial noise of N draws, about sqrt(K / (2 pi N)) for K equal weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .catalog import MetricInfo, declare_sample_metric
from .pathwise import components

__all__ = ["mode_tv", "MODE_TV"]


def _is_weighted_mixture(model) -> bool:
    return hasattr(model, "weights") and (hasattr(model, "responsibilities") or hasattr(model, "_posterior"))


def mode_tv(model, x: Tensor) -> float:
    """Total-variation distance between the samples' component frequencies and the mixture weights."""
    weights = torch.as_tensor(model.weights, dtype=torch.float64).cpu()
    counts = torch.bincount(components(model, x), minlength=len(weights)).to(torch.float64)
    return float(0.5 * (counts / counts.sum() - weights).abs().sum())


MODE_TV = declare_sample_metric(
    MetricInfo("mode_tv", "mode_tv (total variation between the samples' mixture-component frequencies and the "
                          "weights; exact samples: the multinomial noise of N draws)", digits=3),
    _is_weighted_mixture, mode_tv)
