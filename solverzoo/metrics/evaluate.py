"""One scale for every sample set: the bench's metric, for any samples.

``evaluate(model, samples)`` scores samples however they were made (solverzoo,
k-diffusion, diffusers, a user's code) exactly as ``solverzoo bench`` scores a cell:

* **analytic models** (exact score and exact samples): the primary metric is
  ``mmd_whitened`` (:mod:`solverzoo.metrics.mmd`: unbiased MMD^2 x 1000, Gaussian kernel, in
  the model's whitened basis, against exact samples); its oracle floor is 0 at every N
  (the estimator is unbiased) and its excess is the value.  Secondaries: the Frechet
  distance against the exact moments (``fd_pixels`` up to 3 x 32 x 32, else ``fd_pool16``)
  with its own finite-N oracle floor, and for image models ``spectral_error`` / ``hf_ratio``.
  ``feature="pixels"`` or ``"pool:K"`` makes that FD the primary metric instead (as before).
* **learned models**: the Frechet distance in a feature space against real data
  (:mod:`solverzoo.metrics.fid`), its oracle floor at this N, and a bootstrap standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .catalog import sample_metrics
from .fd import exact_reference, make_feature, metric_name
from .mmd import kernel_reference
from .spectrum import exact_radial_power, spectral_scores

__all__ = ["evaluate", "Scorer", "make_scorer", "WHITENED", "PRIMARY_ANALYTIC", "BOOTSTRAP_ROUNDS"]

#: The default feature of analytic models: the kernel distance in the whitened basis.
WHITENED = "whitened"
PRIMARY_ANALYTIC = "mmd_whitened"
#: Largest dimension scored by pixel FD as a secondary (above: pool:16 features).
PIXEL_FD_MAX_DIM = 3 * 32 * 32
#: Bootstrap rounds for the standard deviation of a Frechet distance (learned models).
BOOTSTRAP_ROUNDS = 20

_F64 = torch.float64


def _secondary_feature(model) -> str:
    shape = tuple(model.shape)
    if int(np.prod(shape)) <= PIXEL_FD_MAX_DIM or len(shape) != 3:
        return "pixels"
    return "pool:16"


def _as_tensor(samples) -> Tensor:
    if isinstance(samples, np.ndarray):
        samples = torch.from_numpy(np.ascontiguousarray(samples))
    return torch.as_tensor(samples).detach().cpu()


@dataclass
class Scorer:
    """The metric of one (model, feature, N): reference statistics built once, then ``score``
    per sample set.  ``fd_floor`` is the FD of N exact/held-out samples (the FD oracle floor);
    ``oracle_floor`` is the primary metric's floor."""

    model: Any
    feature: str
    num_samples: int
    seed: int = 0
    metric: str = ""
    oracle_floor: float | None = None
    fd_metric: str | None = None
    fd_floor: float | None = None
    note: str = ""
    spectral_floor: dict | None = None
    _kernel: Any = None
    _fd_reference: Any = None
    _fd_feature: Any = None
    _spectrum: Tensor | None = None
    _data: Any = None
    extra: dict = field(default_factory=dict)

    def score(self, samples) -> dict:
        """{metric, value, uncertainty, oracle_floor, excess, secondaries} of a sample set."""
        x = _as_tensor(samples)
        shape = tuple(self.model.shape)
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"samples of shape {tuple(x.shape)} do not match the model's sample shape "
                             f"(N, {', '.join(map(str, shape))})")
        if len(x) < 2:
            raise ValueError(f"need at least 2 samples, got {len(x)}")
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x.flatten(1))).any(1).sum())
            raise ValueError(f"{bad} of {len(x)} samples are not finite")
        secondaries: dict[str, float | None] = {}
        fd = None
        if self._fd_reference is not None:
            fd = self._fd_reference.distance_samples(self._fd_feature(x.to(_F64)))
            secondaries[self.fd_metric] = fd
            secondaries[f"{self.fd_metric}_excess"] = None if self.fd_floor is None else fd - self.fd_floor
        if self._spectrum is not None:
            secondaries.update(spectral_scores(x, self._spectrum))
        if self._kernel is not None:
            k = self._kernel.score(x)
            value, uncertainty = k.value, k.std
        elif self._data is not None:  # learned model: FD is primary, bootstrap std
            feats = self._data.extractor(x)
            value = self._data.reference.distance_samples(feats)
            uncertainty = _bootstrap_std(self._data.reference, feats, self.seed)
        else:  # analytic model, FD primary
            value = fd
            uncertainty = _bootstrap_std(self._fd_reference, self._fd_feature(x.to(_F64)), self.seed)
        floor = self.oracle_floor
        fd_value = fd if self.fd_metric else value
        fd_floor = self.fd_floor if self.fd_metric else floor
        metrics = {"fd": fd_value, "fd_excess": None if fd_floor is None or fd_value is None else fd_value - fd_floor}
        if self._spectrum is not None:
            metrics.update({k: secondaries[k] for k in ("spectral_error", "hf_ratio")})
        metrics.update({m.info.name: m.compute(self.model, x) for m in sample_metrics(self.model)})
        metrics = {k: v for k, v in metrics.items() if k in self.declared()}
        return {"metric": self.metric, "value": value, "uncertainty": uncertainty, "oracle_floor": floor,
                "excess": None if floor is None else value - floor, "num_samples": len(x),
                "secondaries": secondaries, "metrics": metrics}

    def declared(self) -> list[str]:
        """The metrics :meth:`score` returns under "metrics" besides the primary value (names declared in
        :mod:`solverzoo.metrics.catalog`)."""
        fd = [] if self.fd_metric in (None, self.metric) else ["fd", "fd_excess"]  # an FD primary is the value
        return (fd + (["spectral_error", "hf_ratio"] if self._spectrum is not None else [])
                + [m.info.name for m in sample_metrics(self.model)])


def _bootstrap_std(reference, feats: Tensor, seed: int, rounds: int = BOOTSTRAP_ROUNDS) -> float:
    """Standard deviation of the Frechet distance over bootstrap resamples of the samples."""
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 5150]).generate_state(1)[0]))
    n = len(feats)
    vals = [reference.distance_samples(feats[torch.randint(n, (n,), generator=gen)]) for _ in range(rounds)]
    mean = sum(vals) / rounds
    return math.sqrt(sum((v - mean) ** 2 for v in vals) / (rounds - 1))


def make_scorer(model, feature: str | None = None, num_samples: int = 500, seed: int = 0, repeat: int = 0,
                reference: str | None = None, inception: str | None = None, device="cpu",
                progress: Callable[[str, int, int], None] | None = None) -> Scorer:
    """The Scorer a bench cell of ``num_samples`` samples uses (floors at that N, seed range ``repeat``).
    ``progress(stage, done, total)``: how a learned model's reference (a fixed cost) advances."""
    from ..models.base import AnalyticModel

    n = int(num_samples)
    if isinstance(model, AnalyticModel):
        primary = feature in (None, WHITENED, PRIMARY_ANALYTIC)
        fd_feature_name = _secondary_feature(model) if primary else feature
        fd_metric = metric_name(fd_feature_name)
        fd_ref = exact_reference(model, fd_feature_name)
        fmap = make_feature(fd_feature_name)
        fd_feature = lambda x: fmap(x).reshape(len(x), -1)  # noqa: E731
        data = model.sample_data(seed, range(repeat * n, (repeat + 1) * n))
        fd_floor = fd_ref.distance_samples(fd_feature(data.to(_F64)))
        spectrum = exact_radial_power(model) if hasattr(model, "power_spectrum") else None
        spectral_floor = spectral_scores(data, spectrum) if spectrum is not None else None
        if primary:
            kernel = kernel_reference(model)
            note = (f"{PRIMARY_ANALYTIC}: 1000 x unbiased MMD^2 (Gaussian kernel, "
                    f"bandwidth^2 = mean squared distance of the reference) between the samples "
                    f"and {len(kernel.y)} exact samples, in the model's whitened basis Sigma^-1/2 (x - mean); "
                    f"unbiased, so the oracle floor is 0 at every N and excess = value; uncertainty = first-order "
                    f"std of the U-statistic. Secondary {fd_metric}: Frechet distance against the exact moments "
                    f"(biased at N < d: its oracle floor at this N is {fd_floor:.4g}).")
            return Scorer(model, WHITENED, n, seed, PRIMARY_ANALYTIC, 0.0, fd_metric, fd_floor, note, spectral_floor,
                          _kernel=kernel, _fd_reference=fd_ref, _fd_feature=fd_feature, _spectrum=spectrum)
        note = (f"Frechet distance in {feature} space against the model's exact moments (not Inception FID); "
                f"oracle floor = the same estimator on N exact samples; excess = value - oracle_floor; "
                f"uncertainty = bootstrap std ({BOOTSTRAP_ROUNDS} rounds)")
        return Scorer(model, feature, n, seed, fd_metric, fd_floor, fd_metric, fd_floor, note, spectral_floor,
                      _fd_reference=fd_ref, _fd_feature=fd_feature, _spectrum=spectrum)
    from .fid import data_reference

    dref = data_reference(model, feature, n, repeat + 1, seed, reference=reference, inception=inception,
                          device=device, progress=progress)
    floor = dref.floors[repeat]
    return Scorer(model, dref.feature, n, seed, dref.metric, floor, None, None,
                  dref.note + f"; uncertainty = bootstrap std ({BOOTSTRAP_ROUNDS} rounds)", None, _data=dref)


def evaluate(model, samples, feature: str | None = None, *, reference: str | None = None, seed: int = 0) -> dict:
    """Score ``samples`` (N, *model.shape) on the bench's scale.

    Returns ``{"metric", "value", "uncertainty", "oracle_floor", "excess", "num_samples",
    "secondaries", "metrics"}`` (``metrics``: the bench row's metrics, declared in
    :mod:`solverzoo.metrics.catalog`): ``oracle_floor`` is what exact samples score at this N (0 for the
    unbiased ``mmd_whitened``), ``secondaries`` the other metrics (e.g. ``fd_pixels`` and its
    excess, ``spectral_error``, ``hf_ratio``).  ``model`` is a model or a registered name.
    """
    if isinstance(model, str):
        from ..models import get_model

        model = get_model(model)
    x = _as_tensor(samples)
    if x.ndim < 2:
        raise ValueError(f"samples must be a batch (N, {', '.join(map(str, model.shape))}), got shape {tuple(x.shape)}")
    return make_scorer(model, feature, len(x), seed, reference=reference).score(x)
