"""The digits feature extractor: a small conv net trained on scikit-learn's 8 x 8 digits labels.

Its 64-d penultimate layer is the feature space of the ``fd_digits_classifier`` metric
(:mod:`solverzoo.metrics.features`), the learned-model analogue of Inception features for
images too small for Inception.  The trained weights ship as package data
(``solverzoo/checkpoints/digits_classifier.pt``, float16); ``solverzoo train-classifier``
rebuilds them with :func:`train_digits_classifier`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import load_digits
from ..io import atomic_write
from .learned import checkpoint_dir

__all__ = ["CLASSIFIER_FILE", "DigitsClassifier", "load_digits_classifier", "train_digits_classifier"]

CLASSIFIER_FILE = "digits_classifier.pt"


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
    atomic_write(out, lambda tmp: torch.save(payload, tmp))
    return payload["meta"]
