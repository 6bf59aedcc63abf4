"""Frechet distances of learned models against real data, in a named feature space.

A learned model has no exact moments: its bench reference is the mean and covariance of
real data in a feature space (:mod:`solverzoo.metrics.features`: ``pixels``, ``pool:K``,
``digits_classifier``, ``inception`` -> ``fid_inception``, ``custom:MOD:FN``); the metric
name says which space.  This module builds those references:

Reference statistics come from a data set (``digits``, ``patches``, a folder of images, an
array) or from an ``.npz`` written by ``solverzoo fid-ref`` (``mu``, ``sigma``, ``feature``,
``count`` and, for up to :data:`KEEP_FEATURES` images, the features themselves, which the
oracle floor needs).

The oracle floor of a data reference (:func:`data_reference`) is the same estimator applied to
N real images: a seeded random split of the real images into N "samples" and the remaining
images, FD(N real images, statistics of the *other* images), averaged over FLOOR_SPLITS splits
per repeat.  The samples are then independent of their reference, as a perfect sampler's would
be; the floor's reference has M - N images instead of M, so the floor is slightly conservative
(a bit high).  The model's samples are compared against the statistics of all M images.

One split's FD is a noisy number (on the digits at N = 500 its standard deviation is about a
quarter of its mean), and so is every single fd the bench reports: the note in the results
gives that standard deviation; use ``--repeats`` (disjoint seed ranges) to average it down.
A sample set can score below the floor by that noise alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..io import save_npz
from ..models.classifier import load_digits_classifier, train_digits_classifier
from .fd import ExactReference
from .features import FeatureExtractor, build_extractor, feature_metric_name
from .inception import INCEPTION_ENV, INCEPTION_FILE, clean_resize_batch, resolve_inception

__all__ = [
    "DataReference",
    "data_reference",
    "save_reference",
    "load_reference",
    "reference_statistics",
    "KEEP_FEATURES",
    # the feature spaces and their networks, re-exported for the commands that build references
    "FeatureExtractor",
    "feature_metric_name",
    "build_extractor",
    "resolve_inception",
    "clean_resize_batch",
    "INCEPTION_ENV",
    "INCEPTION_FILE",
    "load_digits_classifier",
    "train_digits_classifier",
]

KEEP_FEATURES = 20_000  # fid-ref stores the features themselves up to this many images
MIN_FLOOR_REFERENCE = 500  # the floor's reference keeps at least this many real images
_F64 = torch.float64


# ----------------------------------------------------------------------------- references
def reference_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance (float64) of features (N, d)."""
    f = features.to(_F64)
    mean = f.mean(0)
    fc = f - mean
    return mean, fc.T @ fc / (len(f) - 1)


def save_reference(path: str | Path, features: Tensor, feature: str, source: str, extra: dict | None = None) -> dict:
    """An ``.npz`` with mu, sigma, the feature name, the count and (up to KEEP_FEATURES) the features."""
    mean, cov = reference_statistics(features)
    payload = {"mu": mean.numpy(), "sigma": cov.numpy(), "feature": np.array(feature),
               "metric": np.array(feature_metric_name(feature)), "count": np.array(len(features)),
               "source": np.array(str(source))}
    if len(features) <= KEEP_FEATURES:
        payload["features"] = features.to(torch.float32).numpy()
    for k, v in (extra or {}).items():
        payload[k] = np.array(v)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(path, **payload)
    return {"count": len(features), "dim": int(mean.numel()), "metric": feature_metric_name(feature)}


def load_reference(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--reference {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as err:
        raise ValueError(f"--reference {path}: not a readable .npz ({type(err).__name__}: {err})") from None
    if "mu" not in data or "sigma" not in data:
        raise ValueError(f"--reference {path}: expected the arrays mu and sigma (as written by 'solverzoo fid-ref')")
    out = {"mu": torch.from_numpy(data["mu"]).to(_F64), "sigma": torch.from_numpy(data["sigma"]).to(_F64),
           "feature": str(data["feature"]) if "feature" in data else None,
           "count": int(data["count"]) if "count" in data else None,
           "features": torch.from_numpy(data["features"]).to(_F64) if "features" in data else None,
           "source": str(data["source"]) if "source" in data else str(path)}
    return out


@dataclass
class DataReference:
    """What the bench needs for a model without exact moments."""

    metric: str
    feature: str
    extractor: FeatureExtractor
    reference: ExactReference
    floors: list[float | None]
    count: int
    source: str
    note: str

    def distance_samples(self, samples: Tensor) -> float:
        return self.reference.distance_samples(self.extractor(samples))


FLOOR_SPLITS = 16  # random splits averaged per floor (one split's FD is noisy: std ~ 25% at N = 500 on digits)


def _floors(features: Tensor, n: int, repeats: int, seed: int) -> tuple[list[float | None], float | None]:
    """Oracle floor per repeat: the mean over FLOOR_SPLITS seeded random splits of FD(N real images,
    statistics of the other real images); and the standard deviation of one split's FD (the
    sampling noise of the estimator at this N)."""
    m = len(features)
    if m - n < MIN_FLOOR_REFERENCE:
        return [None] * repeats, None
    floors, values = [], []
    for r in range(repeats):
        split = []
        for k in range(FLOOR_SPLITS):
            gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, r, k, 7]).generate_state(1)[0]))
            perm = torch.randperm(m, generator=gen)
            held, rest = features[perm[:n]], features[perm[n:]]
            mean, cov = reference_statistics(rest)
            split.append(ExactReference(mean, cov).distance_samples(held))
        floors.append(sum(split) / len(split))
        values += split
    mu = sum(values) / len(values)
    std = (sum((v - mu) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return floors, std


def data_reference(model, feature: str | None, num_samples: int, repeats: int = 1, seed: int = 0,
                   reference: str | None = None, inception: str | None = None,
                   device: str | torch.device = "cpu") -> DataReference:
    """Reference statistics and oracle floors for a learned model (see the module docstring).

    ``reference``: ``digits``, a folder / array of images, or an ``.npz`` from ``fid-ref``;
    default: the data the model was trained on (``model.data``)."""
    feature = feature or getattr(model, "default_feature", None) or "pixels"
    metric = feature_metric_name(feature)
    reference = reference or getattr(model, "data", None)
    if reference is None:
        raise ValueError(f"model {getattr(model, 'name', '?')!r} has no exact moments and no known training data; "
                         f"give reference statistics or data with --reference (an .npz from 'solverzoo fid-ref', "
                         f"a folder of images, or a named dataset: digits, patches)")
    extractor = build_extractor(feature, inception=inception, device=device)
    if str(reference).endswith(".npz") and Path(reference).is_file() and _is_stats_file(reference):
        ref = load_reference(reference)
        if ref["feature"] is not None and feature_metric_name(ref["feature"]) != metric:
            raise ValueError(f"--reference {reference} holds {feature_metric_name(ref['feature'])} statistics, "
                             f"but the bench metric is {metric}; make it with 'solverzoo fid-ref --feature {feature}'")
        if ref["mu"].numel() != ref["sigma"].shape[0]:
            raise ValueError(f"--reference {reference}: mu and sigma do not match")
        feats = ref["features"]
        floors, floor_std = _floors(feats, num_samples, repeats, seed) if feats is not None else ([None] * repeats, None)
        count, source = ref["count"] or (len(feats) if feats is not None else 0), ref["source"]
        exact = ExactReference(ref["mu"], ref["sigma"], name=metric)
    else:
        from ..data import load_dataset

        images = load_dataset(reference)
        if tuple(images.shape[1:]) != tuple(model.shape):
            raise ValueError(f"reference data {reference!r} has images of shape {tuple(images.shape[1:])}, the model "
                             f"samples {tuple(model.shape)}")
        feats = extractor(images)
        mean, cov = reference_statistics(feats)
        exact = ExactReference(mean, cov, name=metric)
        floors, floor_std = _floors(feats, num_samples, repeats, seed)
        count, source = len(images), str(reference)
    if feats is not None and len(feats) - num_samples < MIN_FLOOR_REFERENCE:
        floor_note = (f"no oracle floor: it needs at least N + {MIN_FLOOR_REFERENCE} real images "
                      f"(have {len(feats)}, N = {num_samples})")
    elif feats is None:
        floor_note = "no oracle floor: the reference file holds statistics only, not features"
    else:
        floor_note = (f"oracle floor = FD of N = {num_samples} real images vs the statistics of the other "
                      f"{len(feats) - num_samples}, averaged over {FLOOR_SPLITS} seeded random splits (slightly "
                      f"conservative: a smaller reference); one split's FD has std {floor_std:.3g}, the sampling "
                      f"noise of any single fd at this N")
    note = (f"Frechet distance in {feature} feature space ({metric}) against the statistics of {count} real "
            f"images ({source}); {floor_note}; fd_excess = fd - oracle_floor")
    return DataReference(metric=metric, feature=feature, extractor=extractor, reference=exact, floors=floors,
                         count=count, source=source, note=note)


def _is_stats_file(path: str | Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return "mu" in z.files and "sigma" in z.files
    except Exception:
        return False
