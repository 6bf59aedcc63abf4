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

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..io import save_npz
from ..models.classifier import load_digits_classifier, train_digits_classifier
from .caching import file_fingerprint, load_cached, store_cached
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
    cache: str = "not cached"  # "hit" (read from the disk cache), "stored", or why it was not cached

    def distance_samples(self, samples: Tensor) -> float:
        return self.reference.distance_samples(self.extractor(samples))


FLOOR_SPLITS = 16  # random splits averaged per floor (one split's FD is noisy: std ~ 25% at N = 500 on digits)


def _floors(features: Tensor, n: int, repeats: int, seed: int,
            progress: Callable[[str, int, int], None] | None = None) -> tuple[list[float | None], float | None]:
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
            if progress is not None:
                progress("oracle floor splits", r * FLOOR_SPLITS + k + 1, repeats * FLOOR_SPLITS)
        floors.append(sum(split) / len(split))
        values += split
    mu = sum(values) / len(values)
    std = (sum((v - mu) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return floors, std


def data_reference(model, feature: str | None, num_samples: int, repeats: int = 1, seed: int = 0,
                   reference: str | None = None, inception: str | None = None,
                   device: str | torch.device = "cpu",
                   progress: Callable[[str, int, int], None] | None = None) -> DataReference:
    """Reference statistics and oracle floors for a learned model (see the module docstring).

    ``reference``: ``digits``, a folder / array of images, or an ``.npz`` from ``fid-ref``;
    default: the data the model was trained on (``model.data``).  From data (not an ``.npz``), the
    statistics, the floors and their spread are computed once and kept in the disk cache
    (:func:`reference_cache_key`; ``cache`` of the result says ``hit``, ``stored`` or why not).
    ``progress(stage, done, total)`` is told how the fixed costs advance."""
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
        floors, floor_std = (_floors(feats, num_samples, repeats, seed, progress) if feats is not None
                             else ([None] * repeats, None))
        count, source = ref["count"] or (len(feats) if feats is not None else 0), ref["source"]
        exact = ExactReference(ref["mu"], ref["sigma"], name=metric)
        known = None if feats is None else len(feats)  # the real images whose features there are
        cache = "not cached: statistics read from a file"
    else:
        stats, cache = _data_statistics(model, reference, extractor, num_samples, repeats, seed, progress)
        exact = ExactReference(stats["mu"], stats["sigma"], name=metric)
        floors, floor_std, count, source = stats["floors"], stats["floor_std"], stats["count"], str(reference)
        known = count
    if known is not None and known - num_samples < MIN_FLOOR_REFERENCE:
        floor_note = (f"no oracle floor: it needs at least N + {MIN_FLOOR_REFERENCE} real images "
                      f"(have {known}, N = {num_samples})")
    elif known is None:
        floor_note = "no oracle floor: the reference file holds statistics only, not features"
    else:
        floor_note = (f"oracle floor = FD of N = {num_samples} real images vs the statistics of the other "
                      f"{known - num_samples}, averaged over {FLOOR_SPLITS} seeded random splits (slightly "
                      f"conservative: a smaller reference); one split's FD has std {floor_std:.3g}, the sampling "
                      f"noise of any single fd at this N")
    note = (f"Frechet distance in {feature} feature space ({metric}) against the statistics of {count} real "
            f"images ({source}); {floor_note}; fd_excess = fd - oracle_floor")
    return DataReference(metric=metric, feature=feature, extractor=extractor, reference=exact, floors=floors,
                         count=count, source=source, note=note, cache=cache)


def reference_cache_key(reference: str, feature: str, extractor: FeatureExtractor, num_samples: int,
                        repeats: int, seed: int) -> dict | None:
    """What a data reference's statistics and floors depend on: the data (a named dataset: its name,
    the code that makes it and the versions of the packages its pictures come from; a path: every
    file's size and modification time), the feature map (its name; a network's weights file and
    device), N, the repeats, the seed, the floor recipe and the torch version.  None (no caching)
    for a ``custom:`` feature, whose code cannot be identified.  The model's weights are not part
    of it: every model sampling the same data shares the entry."""
    from importlib.metadata import PackageNotFoundError, version

    from ..data import DATASETS
    from .features import parse_feature_name

    kind, _ = parse_feature_name(feature)
    if kind == "custom":
        return None
    if str(reference) in DATASETS:
        versions = {}
        for package in ("scikit-learn", "scikit-image"):
            try:
                versions[package] = version(package)
            except PackageNotFoundError:
                versions[package] = None
        source = importlib.import_module("..data", __package__).__file__  # the code that makes the data
        code = hashlib.sha256(Path(source).read_bytes()).hexdigest()
        data = {"dataset": str(reference), "code": code, "packages": versions}
    elif Path(reference).exists():
        data = file_fingerprint(reference)
    else:
        return None
    feat: dict = {"feature": feature_metric_name(feature), "kind": kind}
    if kind == "inception":
        feat["weights"] = file_fingerprint(extractor.info["inception"])
    if kind == "digits_classifier":
        from ..models.classifier import _classifier_path

        feat["weights"] = file_fingerprint(_classifier_path())
    if kind in ("inception", "digits_classifier"):
        feat["device"] = str(extractor.info.get("device", "cpu")).split(":")[0]
    return {"what": "data reference", "data": data, "feature": feat, "num_samples": int(num_samples),
            "repeats": int(repeats), "seed": int(seed), "floor_splits": FLOOR_SPLITS,
            "min_floor_reference": MIN_FLOOR_REFERENCE, "torch": torch.__version__}


_NONE = float("nan")  # a floor that does not exist (too few images), as the cache stores it


def _data_statistics(model, reference: str, extractor: FeatureExtractor, num_samples: int, repeats: int, seed: int,
                     progress: Callable[[str, int, int], None] | None) -> tuple[dict, str]:
    """The mean, covariance, count, floors and floor spread of the real images ``reference`` in the
    extractor's feature space: from the disk cache when it holds them, else computed (and stored)."""
    key = reference_cache_key(reference, extractor.feature, extractor, num_samples, repeats, seed)
    names = ("mu", "sigma", "count", "shape", "floors", "floor_std")
    cached = load_cached("references", key, names) if key is not None else None
    if cached is not None and tuple(int(v) for v in cached["shape"]) == tuple(model.shape) \
            and len(cached["floors"]) == repeats:
        if progress is not None:
            progress(f"{extractor.metric} reference (cached)", 1, 1)
        std = float(cached["floor_std"])
        return {"mu": torch.from_numpy(cached["mu"]), "sigma": torch.from_numpy(cached["sigma"]),
                "count": int(cached["count"]), "floors": [None if np.isnan(f) else float(f) for f in cached["floors"]],
                "floor_std": None if np.isnan(std) else std}, "hit"
    from ..data import load_dataset

    if progress is not None:
        progress(f"reference data {reference}", 0, 1)
    images = load_dataset(reference)
    if tuple(images.shape[1:]) != tuple(model.shape):
        raise ValueError(f"reference data {reference!r} has images of shape {tuple(images.shape[1:])}, the model "
                         f"samples {tuple(model.shape)}")
    if progress is not None:
        progress(f"reference data {reference}", 1, 1)
    feats = extractor(images, progress=None if progress is None else
                      lambda done, total: progress(f"{extractor.metric} features", done, total))
    mean, cov = reference_statistics(feats)
    floors, floor_std = _floors(feats, num_samples, repeats, seed, progress)
    stats = {"mu": mean, "sigma": cov, "count": len(images), "floors": floors, "floor_std": floor_std}
    if key is None:
        return stats, "not cached: a custom feature"
    why = store_cached("references", key, {
        "mu": mean.numpy(), "sigma": cov.numpy(), "count": np.array(len(images)),
        "shape": np.array(tuple(images.shape[1:])),
        "floors": np.array([_NONE if f is None else f for f in floors], dtype=np.float64),
        "floor_std": np.array(_NONE if floor_std is None else floor_std, dtype=np.float64)})
    return stats, why or "stored"


def _is_stats_file(path: str | Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return "mu" in z.files and "sigma" in z.files
    except Exception:
        return False
