"""Feature spaces of the learned-model metrics: a feature name -> its metric name and its map
from images in [-1, 1] to features.

=====================  ===================  =====================================================
feature                metric               features
=====================  ===================  =====================================================
``pixels``, ``pool:K`` ``fd_pixels`` ...    the pixels (or K x K average pools): the names and
                                            maps of :mod:`solverzoo.metrics.fd`
``digits_classifier``  ``fd_digits_         penultimate layer (64) of a small conv net trained to
                       classifier``         classify scikit-learn's digits
                                            (:mod:`solverzoo.models.classifier`, shipped)
``inception``          ``fid_inception``    clean-fid's Inception-v3 pool3 (2048), "clean" mode
                                            (:mod:`solverzoo.metrics.inception`; weights found
                                            offline, never downloaded)
``custom:MOD:FN``      ``fd_custom_FN``     ``FN()`` returns a clean-fid ``custom_feat_extractor``
                                            (a callable on float [0, 255] (B, 3, 299, 299) batches,
                                            after the same uint8 + clean resize as Inception)
=====================  ===================  =====================================================
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .fd import make_feature, metric_name, parse_feature
from .inception import InceptionFeatures, clean_resize_batch, resolve_inception

__all__ = ["FeatureExtractor", "parse_feature_name", "feature_metric_name", "build_extractor"]

_F64 = torch.float64
_ALIASES = {"digits": "digits_classifier", "inception_v3": "inception", "fid": "inception"}


def parse_feature_name(feature: str) -> tuple[str, object]:
    """A feature name -> (kind, argument): ``("linear", fd.parse_feature(name))`` for the
    pixel-space features, ``("digits_classifier", None)``, ``("inception", None)`` or
    ``("custom", (module, function))``."""
    name = _ALIASES.get(str(feature), str(feature))
    if name in ("digits_classifier", "inception"):
        return name, None
    if name.startswith("custom:"):
        module, _, fn = name[len("custom:"):].rpartition(":")
        if not module or not fn:
            raise ValueError(f"feature {feature!r}: expected custom:module:function")
        return "custom", (module, fn)
    try:
        return "linear", parse_feature(name)
    except ValueError:
        raise ValueError(f"unknown feature {feature!r}; use pixels, pool:K, digits_classifier, inception or "
                         f"custom:module:function") from None


def feature_metric_name(feature: str) -> str:
    """``fd_pixels``, ``fd_pool16``, ``fd_digits_classifier``, ``fid_inception``, ``fd_custom_<fn>``."""
    kind, arg = parse_feature_name(feature)
    if kind == "linear":
        return metric_name(feature)
    if kind == "custom":
        return "fd_custom_" + re.sub(r"\W+", "_", arg[1]).strip("_")
    return "fid_inception" if kind == "inception" else "fd_digits_classifier"


@dataclass
class FeatureExtractor:
    """Images in [-1, 1] (N, C, H, W) -> float64 features (N, d), in batches."""

    feature: str
    metric: str
    fn: Callable[[Tensor], Tensor]
    batch_size: int = 256
    linear: bool = False
    info: dict = field(default_factory=dict)

    def __call__(self, images: Tensor, progress: Callable[[int, int], None] | None = None) -> Tensor:
        """Features of ``images``; ``progress(done, total)`` after each batch (counted in images)."""
        out = []
        with torch.no_grad():
            for lo in range(0, len(images), self.batch_size):
                batch = images[lo:lo + self.batch_size]
                out.append(self.fn(batch).reshape(len(batch), -1).to(_F64).cpu())
                if progress is not None:
                    progress(lo + len(batch), len(images))
        return torch.cat(out) if out else torch.zeros(0, 0, dtype=_F64)


def _custom_fn(feature: str, target: tuple[str, str], device: torch.device):
    module, name = target
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
    kind, arg = parse_feature_name(feature)
    metric = feature_metric_name(feature)
    if kind == "linear":
        lin = make_feature(feature)
        return FeatureExtractor(feature, metric, lambda x: lin(x.to(_F64)).reshape(len(x), -1), batch_size,
                                linear=True)
    if kind == "digits_classifier":
        from ..models.classifier import CLASSIFIER_FILE, load_digits_classifier

        net = load_digits_classifier().to(device)

        def digits(x: Tensor) -> Tensor:
            if tuple(x.shape[1:]) != (1, 8, 8):
                raise ValueError(f"feature digits_classifier needs 1 x 8 x 8 images, got {tuple(x.shape[1:])}")
            return net.features(x.to(device, torch.float32))

        return FeatureExtractor(feature, metric, digits, batch_size, info={"file": CLASSIFIER_FILE,
                                                                           "device": str(device)})
    if kind == "inception":
        path = resolve_inception(inception)
        return FeatureExtractor(feature, metric, InceptionFeatures(path, device), min(batch_size, 64),
                                info={"inception": str(path), "mode": "clean", "device": str(device)})
    return FeatureExtractor(feature, metric, _custom_fn(feature, arg, device), min(batch_size, 64),
                            info={"mode": "clean"})
