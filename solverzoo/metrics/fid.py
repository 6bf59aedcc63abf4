"""Frechet distances of learned models against data, in a named feature space.

A learned model has no exact moments: its bench reference is the mean and covariance of
real data in a feature space, and the metric name says which space:

=====================  ===================  =====================================================
feature                metric               features
=====================  ===================  =====================================================
``pixels``, ``pool:K`` ``fd_pixels`` ...    the pixels (or K x K average pools) themselves
``digits_classifier``  ``fd_digits_         penultimate layer (64) of a small conv net trained to
                       classifier``         classify scikit-learn's digits (shipped, no download)
``inception``          ``fid_inception``    clean-fid's Inception-v3 pool3 (2048), "clean" mode:
                                            uint8 images, PIL bicubic resize to 299 x 299 -- the
                                            weights file must be on disk (``--inception PATH`` or
                                            ``SOLVERZOO_INCEPTION``); it is never downloaded
``custom:MOD:FN``      ``fd_custom_FN``     ``FN()`` returns a clean-fid ``custom_feat_extractor``
                                            (a callable on float [0, 255] (B, 3, 299, 299) batches,
                                            after the same uint8 + clean resize as Inception)
=====================  ===================  =====================================================

Reference statistics come from a data set (``digits``, a folder of images, an array) or from
an ``.npz`` written by ``solverzoo fid-ref`` (``mu``, ``sigma``, ``feature``, ``count`` and, for
up to :data:`KEEP_FEATURES` images, the features themselves, which the oracle floor needs).

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

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fd import ExactReference, make_feature, metric_name, parse_feature

__all__ = [
    "DigitsClassifier",
    "FeatureExtractor",
    "feature_metric_name",
    "build_extractor",
    "resolve_inception",
    "INCEPTION_ENV",
    "INCEPTION_FILE",
    "DataReference",
    "data_reference",
    "save_reference",
    "load_reference",
    "reference_statistics",
    "train_digits_classifier",
    "clean_resize_batch",
    "KEEP_FEATURES",
]

INCEPTION_ENV = "SOLVERZOO_INCEPTION"
INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
CLASSIFIER_FILE = "digits_classifier.pt"
KEEP_FEATURES = 20_000  # fid-ref stores the features themselves up to this many images
MIN_FLOOR_REFERENCE = 500  # the floor's reference keeps at least this many real images
_F64 = torch.float64


# ----------------------------------------------------------------------------- names
def _kind(feature: str) -> str:
    if feature in ("digits_classifier", "digits"):
        return "digits_classifier"
    if feature in ("inception", "inception_v3", "fid"):
        return "inception"
    if str(feature).startswith("custom:"):
        return "custom"
    parse_feature(feature)  # raises for unknown names
    return "linear"


def feature_metric_name(feature: str) -> str:
    """``fd_pixels``, ``fd_pool16``, ``fd_digits_classifier``, ``fid_inception``, ``fd_custom_<fn>``."""
    try:
        kind = _kind(feature)
    except ValueError:
        raise ValueError(f"unknown feature {feature!r}; use pixels, pool:K, digits_classifier, inception or "
                         f"custom:module:function") from None
    if kind == "linear":
        return metric_name(feature)
    if kind == "digits_classifier":
        return "fd_digits_classifier"
    if kind == "inception":
        return "fid_inception"
    _, fn = _custom_target(feature)
    return "fd_custom_" + re.sub(r"\W+", "_", fn).strip("_")


def _custom_target(feature: str) -> tuple[str, str]:
    spec = feature[len("custom:"):]
    module, _, fn = spec.rpartition(":")
    if not module or not fn:
        raise ValueError(f"feature {feature!r}: expected custom:module:function")
    return module, fn


# ----------------------------------------------------------------------------- extractors
@dataclass
class FeatureExtractor:
    """Images in [-1, 1] (N, C, H, W) -> float64 features (N, d), in batches."""

    feature: str
    metric: str
    fn: Callable[[Tensor], Tensor]
    batch_size: int = 256
    linear: bool = False
    info: dict = field(default_factory=dict)

    def __call__(self, images: Tensor) -> Tensor:
        out = []
        with torch.no_grad():
            for lo in range(0, len(images), self.batch_size):
                batch = images[lo:lo + self.batch_size]
                out.append(self.fn(batch).reshape(len(batch), -1).to(_F64).cpu())
        return torch.cat(out) if out else torch.zeros(0, 0, dtype=_F64)


def resolve_inception(path: str | Path | None = None) -> Path:
    """The Inception weights file: ``path``, else ``$SOLVERZOO_INCEPTION``; it must exist.

    The error says where to put the file and how to get it; nothing is downloaded."""
    source = "--inception" if path else INCEPTION_ENV
    path = path or os.environ.get(INCEPTION_ENV)
    how = (f"Download {INCEPTION_FILE} (clean-fid / StyleGAN2-ADA's TorchScript Inception-v3, 91 MB) on a machine "
           f"with internet access: {INCEPTION_URL} ; copy it here and pass --inception PATH or set "
           f"{INCEPTION_ENV}=PATH. solverzoo never downloads it.")
    if not path:
        raise ValueError(f"fid_inception needs the Inception weights file and none was given. {how}")
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / INCEPTION_FILE
    if not p.is_file():
        raise ValueError(f"{source}: Inception weights not found at {p}. {how}")
    return p


def clean_resize_batch(images: Tensor) -> Tensor:
    """clean-fid's "clean" preprocessing of a batch in [-1, 1]: quantise to uint8 (as an image
    file stores it), grey -> RGB, PIL bicubic float resize to 299 x 299 (clean-fid
    ``build_resizer("clean")``).  Returns float32 (B, 3, 299, 299) in [0, 255]."""
    from cleanfid.resize import build_resizer

    from ..data import to_uint8

    resize = build_resizer("clean")
    u8 = to_uint8(images)
    if u8.shape[1] == 1:
        u8 = u8.expand(-1, 3, -1, -1)
    if u8.shape[1] != 3:
        raise ValueError(f"clean-fid features need 1- or 3-channel images, got {u8.shape[1]} channels")
    arr = u8.permute(0, 2, 3, 1).numpy()
    out = np.stack([resize(a) for a in arr]).astype(np.float32)  # (B, 299, 299, 3)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _inception_fn(path: Path, device: torch.device):
    try:
        base = torch.jit.load(str(path), map_location=device).eval()
    except Exception as err:
        raise ValueError(f"{path}: not a loadable TorchScript Inception file ({type(err).__name__}: {err})") from None

    def fn(images: Tensor) -> Tensor:  # clean-fid InceptionV3W.forward, resize_inside=False
        x = clean_resize_batch(images).to(device)
        return base.layers.forward((x - 128) / 128).reshape(len(x), 2048)

    return fn


def _custom_fn(feature: str, device: torch.device):
    module, name = _custom_target(feature)
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"feature {feature!r}: cannot import {module!r} ({err})") from None
    factory = getattr(mod, name, None)
    if factory is None:
        raise ValueError(f"feature {feature!r}: module {module!r} has no attribute {name!r}")
    extractor = factory()
    if not callable(extractor):
        raise ValueError(f"feature {feature!r}: {name}() must return a callable feature extractor")
    resize = getattr(extractor, "clean_resize", True)

    def fn(images: Tensor) -> Tensor:
        x = clean_resize_batch(images) if resize else (images.float() + 1) * 127.5
        return torch.as_tensor(extractor(x.to(device))).reshape(len(x), -1)

    return fn


def build_extractor(feature: str, inception: str | Path | None = None, device: str | torch.device = "cpu",
                    batch_size: int = 256) -> FeatureExtractor:
    """The feature map of a metric (see the module docstring); files are checked here, before
    any sampling."""
    device = torch.device(device)
    kind = _kind(feature)
    metric = feature_metric_name(feature)
    if kind == "linear":
        lin = make_feature(feature)
        return FeatureExtractor(feature, metric, lambda x: lin(x.to(_F64)).reshape(len(x), -1), batch_size,
                                linear=True)
    if kind == "digits_classifier":
        net = load_digits_classifier().to(device)

        def digits(x: Tensor) -> Tensor:
            if tuple(x.shape[1:]) != (1, 8, 8):
                raise ValueError(f"feature digits_classifier needs 1 x 8 x 8 images, got {tuple(x.shape[1:])}")
            return net.features(x.to(device, torch.float32))

        return FeatureExtractor(feature, metric, digits, batch_size, info={"file": CLASSIFIER_FILE})
    if kind == "inception":
        path = resolve_inception(inception)
        return FeatureExtractor(feature, metric, _inception_fn(path, device), min(batch_size, 64),
                                info={"inception": str(path), "mode": "clean"})
    return FeatureExtractor(feature, metric, _custom_fn(feature, device), min(batch_size, 64),
                            info={"mode": "clean"})


# ----------------------------------------------------------------------------- digits classifier
class DigitsClassifier(nn.Module):
    """A small conv net on 1 x 8 x 8 digits in [-1, 1]; ``features`` is its 64-d penultimate layer."""

    def __init__(self, width: int = 32, features: int = 64, classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),  # 4 x 4
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),  # 2 x 2
            nn.Flatten(), nn.Linear(8 * width, features), nn.SiLU(),
        )
        self.head = nn.Linear(features, classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def _classifier_path() -> Path:
    from ..models.learned import checkpoint_dir

    return checkpoint_dir() / CLASSIFIER_FILE


_CLASSIFIER: DigitsClassifier | None = None


def load_digits_classifier(path: str | Path | None = None) -> DigitsClassifier:
    """The shipped digits classifier (package data), in eval mode."""
    global _CLASSIFIER
    if path is None and _CLASSIFIER is not None:
        return _CLASSIFIER
    p = Path(path) if path is not None else _classifier_path()
    if not p.is_file():
        raise ValueError(f"the digits feature extractor {p} is missing; rebuild it with 'solverzoo train-classifier'")
    payload = torch.load(p, map_location="cpu", weights_only=True)
    net = DigitsClassifier(**payload.get("config", {}))
    net.load_state_dict({k: v.float() for k, v in payload["state_dict"].items()})
    net.eval().requires_grad_(False)
    if path is None:
        _CLASSIFIER = net
    return net


def train_digits_classifier(out: str | Path, epochs: int = 40, seed: int = 0, holdout: int = 297,
                            on_epoch: Callable[[int, float], None] | None = None) -> dict:
    """Train :class:`DigitsClassifier` on the digits (random +-1 pixel shifts and light Gaussian
    noise as augmentation, Adam, cross-entropy), holding out ``holdout`` images (a seeded split) to
    report the accuracy, and save it (float16 weights) to ``out``."""
    from ..data import load_digits

    x, y = load_digits(with_labels=True)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen)
    test, train_idx = perm[:holdout], perm[holdout:]
    torch.manual_seed(seed)
    net = DigitsClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = x[train_idx], y[train_idx]
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for lo in range(0, len(xt), 64):
            idx = order[lo:lo + 64]
            xb = F.pad(xt[idx], (1, 1, 1, 1), value=-1.0)
            dx, dy = torch.randint(0, 3, (2,), generator=gen).tolist()
            xb = xb[:, :, dy:dy + 8, dx:dx + 8]
            xb = xb + 0.1 * torch.rand(len(xb), 1, 1, 1, generator=gen) * torch.randn(xb.shape, generator=gen)
            loss = F.cross_entropy(net(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        if on_epoch is not None:
            on_epoch(epoch + 1, total / len(xt))
    net.eval()
    with torch.no_grad():
        acc = float((net(x[test]).argmax(1) == y[test]).float().mean()) if holdout else float("nan")
        train_acc = float((net(xt).argmax(1) == yt).float().mean())
    payload = {"config": {"width": 32, "features": 64, "classes": 10},
               "state_dict": {k: v.half() for k, v in net.state_dict().items()},
               "meta": {"epochs": epochs, "seed": seed, "holdout": holdout, "holdout_accuracy": acc,
                        "train_accuracy": train_acc}}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, out)
    return payload["meta"]


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
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **payload)
    os.replace(tmp, path)
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
                         f"a folder of images, or 'digits')")
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
