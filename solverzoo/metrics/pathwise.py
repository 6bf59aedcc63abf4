"""Pathwise error of an ODE solver: each sample against the reference solve from the same initial noise.

One RMS over all samples is dominated by the few trajectories that switch mixture component (a
sample that lands on another mode is off by the distance between modes), so the bench reports

* ``path_rms``: sqrt(mean over samples and coordinates of (x - x_ref)^2), as before;
* ``path_median`` / ``path_p90``: the median and 90th percentile over samples of the per-sample
  RMS error e_i = sqrt(mean_j (x_ij - x_ref,ij)^2);
* ``mode_switch``: on mixture models (those that give component posteriors), the fraction of
  samples whose most probable component at the smallest noise level differs from the reference's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .catalog import MetricInfo, declare

__all__ = ["path_errors", "components", "declared", "PATH_METRICS", "MIXTURE_METRICS"]

#: The pathwise metrics of every ODE solver's row.
PATH_METRICS = declare(
    MetricInfo("path_rms", "path_rms (ODE solvers: RMS distance to the reference solve from the same noise)",
               plot="path_rms"),
    MetricInfo("path_median", "path_median (median over samples of the per-sample RMS path error)"),
    MetricInfo("path_p90", "path_p90 (90th percentile of the per-sample RMS path error)"),
)
#: On mixture models, in addition.
MIXTURE_METRICS = declare(
    MetricInfo("mode_switch", "mode_switch (fraction of samples ending in another mixture component than the "
                              "reference solve)", digits=3),
)


def _is_mixture(model) -> bool:
    return hasattr(model, "responsibilities") or hasattr(model, "_posterior")


def declared(model) -> list[str]:
    """The names :func:`path_errors` returns for ``model``."""
    return [m.name for m in PATH_METRICS] + ([m.name for m in MIXTURE_METRICS] if _is_mixture(model) else [])


def components(model, x: Tensor) -> Tensor | None:
    """The most probable mixture component of each sample at the model's smallest noise level
    (argmax_k p(k | x)), or None when the model is not a mixture that gives its posteriors."""
    sigma = float(getattr(model.process, "sigma_min", 1e-3))
    device = getattr(model, "device", None) or "cpu"
    dtype = getattr(model, "dtype", None) or torch.float32
    out = []
    with torch.no_grad():
        for chunk in x.split(100):
            batch = chunk.to(device=device, dtype=dtype)
            sig = torch.full((len(batch),), sigma, device=batch.device, dtype=batch.dtype)
            if hasattr(model, "responsibilities"):
                logits = model.responsibilities(batch, sig)
            elif _is_mixture(model):
                logits = model._posterior(batch, sig)[0]
            else:
                return None
            out.append(logits.argmax(-1).cpu())
    return torch.cat(out)


def path_errors(x: Tensor, reference: Tensor, model=None, reference_components: Tensor | None = None) -> dict:
    """{path_rms, path_median, path_p90[, mode_switch]} of samples ``x`` against ``reference`` (the first
    len(reference) samples are compared).  ``reference_components``: :func:`components` of the
    reference, computed once per sweep (computed here when None and ``model`` is a mixture)."""
    x = x[: len(reference)].to(torch.float64).cpu()
    diff = (x - reference).flatten(1)
    per_sample = diff.pow(2).mean(1).sqrt()
    out = {"path_rms": float(diff.pow(2).mean().sqrt()), "path_median": float(per_sample.median()),
           "path_p90": float(torch.quantile(per_sample, 0.9))}
    if model is not None:
        ref = components(model, reference) if reference_components is None else reference_components
        got = components(model, x) if ref is not None else None
        if got is not None:
            out["mode_switch"] = float((got != ref).double().mean())
    return out
