"""What every metric of a bench row is, declared once: name, title, direction, and how the tables and
plots show it.  Rows carry ``metrics: {name: value}``; the tables, the CSV, the plots and ``evaluate``
iterate over the declarations, so a new metric is one module of :mod:`solverzoo.metrics`: the code
that computes it and its :class:`MetricInfo`, given to :func:`declare` (as :mod:`.pathwise` does), or,
for a metric of the samples alone, to :func:`declare_sample_metric` (as :mod:`.modes` does), which every
scorer then computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["MetricInfo", "METRICS", "declare", "metric_info", "describe_metrics", "SampleMetric", "SAMPLE_METRICS",
           "declare_sample_metric", "sample_metrics"]


@dataclass(frozen=True)
class MetricInfo:
    """One metric of a bench row.  ``plot``: the stem of its ``nfe_vs_<plot>.png`` picture (None: no
    picture); ``floor``: the results.json field holding its oracle floor, if any."""

    name: str
    title: str
    lower_is_better: bool = True
    plot: str | None = None
    floor: str | None = None
    digits: int = 4

    def as_dict(self) -> dict:
        return asdict(self)


#: Every metric a bench row may carry besides the primary one, in table order.
METRICS: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("fd", "Frechet distance (secondary: biased at N < d)", floor="fd_oracle_floor"),
    MetricInfo("fd_excess", "Frechet distance excess over its oracle floor", plot="fd"),
    MetricInfo("spectral_error", "spectral_error (mean |log| radial power ratio; 0 = the exact spectrum)",
               plot="spectral_error", floor="spectral_floor"),
    MetricInfo("hf_ratio", "hf_ratio (power above 0.25 cycles/pixel vs exact; 1 = exact, < 1 over-smooth)",
               lower_is_better=False, digits=3),
    MetricInfo("label_accuracy", "label_accuracy (the shipped digits classifier on each sample's requested "
                                 "label; 1 = all)", lower_is_better=False, digits=3),
)}


def declare(*infos: MetricInfo) -> tuple[MetricInfo, ...]:
    """Add metric declarations (a module of :mod:`solverzoo.metrics` declares the metrics it computes)."""
    for info in infos:
        METRICS[info.name] = info
    return infos


@dataclass(frozen=True)
class SampleMetric:
    """A metric of a sample set alone: ``compute(model, x) -> float`` on the samples ``x`` (N, *shape),
    for the models where ``applies(model)``.  Every scorer (the bench's rows, ``evaluate``, ``score``)
    adds it to ``metrics`` wherever it applies."""

    info: MetricInfo
    applies: Callable[[Any], bool]
    compute: Callable[[Any, Any], float]


#: The sample-set metrics, by name (filled by :func:`declare_sample_metric`).
SAMPLE_METRICS: dict[str, SampleMetric] = {}


def declare_sample_metric(info: MetricInfo, applies: Callable[[Any], bool],
                          compute: Callable[[Any, Any], float]) -> SampleMetric:
    """Declare a metric computed from the samples and the model (see :class:`SampleMetric`)."""
    declare(info)
    SAMPLE_METRICS[info.name] = metric = SampleMetric(info, applies, compute)
    return metric


def sample_metrics(model) -> list[SampleMetric]:
    """The sample-set metrics that apply to ``model``, in declaration order."""
    return [m for m in SAMPLE_METRICS.values() if m.applies(model)]


def metric_info(name: str) -> MetricInfo:
    """The declaration of ``name`` (an undeclared metric is shown under its own name)."""
    return METRICS.get(name) or MetricInfo(name, name)


def describe_metrics(names) -> dict[str, dict]:
    """{name: declaration} for results.json, in table order."""
    order = list(METRICS)
    ranked = sorted(dict.fromkeys(names), key=lambda n: order.index(n) if n in order else len(order))
    return {n: metric_info(n).as_dict() for n in ranked}
