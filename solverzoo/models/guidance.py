"""Class conditioning and classifier-free guidance through the one model interface.

A class-conditional model has ``num_classes = K > 0`` and takes one label per batch row:
``model.denoise(x_hat, sigma, labels)``, ``labels`` an int64 tensor ``(B,)`` with values in
``0 .. K-1``, or :data:`NULL_LABEL` (-1) for a row denoised unconditionally.  Without labels
(``denoise(x_hat, sigma)``) every row is unconditional, so a conditional model is also the
unconditional model of the same data.

Classifier-free guidance (Ho & Salimans 2022, Eq. 6, written for the denoiser; the weights sum
to one, so the eps, score and D forms are the same combination):

    D_w(x; sigma, c) = D(x; sigma) + w (D(x; sigma, c) - D(x; sigma)),

``w = 1`` is the conditional model, ``w = 0`` the unconditional one, ``w > 1`` guides (Ho &
Salimans' guidance weight is ``w - 1`` here; diffusers' ``guidance_scale`` is ``w``).
:class:`GuidedModel` is that combination as a model: every solver samples it through the same
counting wrapper, without knowing about guidance.

**NFE under guidance.**  ``D_w`` is evaluated in one batched network call on ``2B`` rows (the
``B`` conditional rows and the same ``B`` inputs with the null label) and counted as **one NFE**,
as in the guided-sampling literature (DPM-Solver++, Lu et al. 2022, Sec. 6, counts the steps of the
guided model; diffusers batches the two branches the same way).  Its cost is two network passes
per NFE; results record ``network_passes_per_nfe = 2``.

**Labels follow the sample index**, never the batch: sample ``i`` of seed ``S`` gets
``labels[i mod len(labels)]`` from a list (``"0,1,2"``: cycled), or, with ``"random"``, a label
drawn from a generator seeded by ``(S, i)`` -- the same at any batch size, batching or order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .base import NULL_LABEL, Model

__all__ = ["NULL_LABEL", "LABEL_STREAM", "GuidedModel", "Conditioning", "condition", "parse_labels",
           "label_accuracy", "NETWORK_PASSES_PER_NFE"]

#: the stream tag of the per-sample label draws of ``labels="random"`` (distinct from the noise streams)
LABEL_STREAM = 0x1ABE1
#: network passes per counted NFE under guidance (conditional + unconditional, one batched call)
NETWORK_PASSES_PER_NFE = 2


def num_classes(model) -> int:
    """K for a class-conditional model, 0 for an unconditional one."""
    return int(getattr(model, "num_classes", 0) or 0)


class GuidedModel(Model):
    """``D_w = D_u + w (D_c - D_u)`` of a class-conditional model (Ho & Salimans 2022, Eq. 6).

    One :meth:`denoise` makes one batched call of the wrapped model on ``2B`` rows (labels, then
    null labels), so it counts as one NFE; every other attribute (process, shape, exact moments,
    training data...) is the wrapped model's.
    """

    def __init__(self, model: Model, guidance: float):
        k = num_classes(model)
        if k < 1:
            raise ValueError(f"guidance needs a class-conditional model; {getattr(model, 'name', model)!r} has no "
                             f"labels (conditional models: gmm-image -m conditional=true, digits-cond-unet)")
        self.model = model
        self.guidance = float(guidance)
        self.num_classes = k
        self.process = model.process
        self.shape = model.shape
        self.name = model.name

    def __getattr__(self, name: str):  # data, default_feature, meta, data_mean, ... of the wrapped model
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    def to(self, device, dtype=None) -> GuidedModel:
        self.model = self.model.to(device, dtype)
        return self

    def denoise(self, x_hat: Tensor, sigma: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is None:
            raise ValueError("guided sampling needs one label per row")
        labels = labels.to(device=x_hat.device, dtype=torch.long)
        both = self.model.denoise(torch.cat([x_hat, x_hat]), torch.cat([sigma, sigma]),
                                  labels=torch.cat([labels, torch.full_like(labels, NULL_LABEL)]))
        d_cond, d_uncond = both.chunk(2)
        return d_uncond + self.guidance * (d_cond - d_uncond)

    def describe(self) -> dict:
        return {**self.model.describe(), "guidance": self.guidance}


def parse_labels(spec, classes: int) -> list[int] | str:
    """``"random"``, or the list of labels to cycle through: ``"0,1,2"``, ``"all"`` (0 .. K-1),
    an int, or a sequence of ints; each in 0 .. K-1."""
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "random":
            return "random"
        if text == "all":
            return list(range(classes))
        try:
            values = [int(p) for p in text.replace("[", "").replace("]", "").split(",") if p.strip()]
        except ValueError:
            raise ValueError(f"bad labels {spec!r}; give class numbers like 0,1,2 (cycled over the samples), "
                             f"'all' or 'random'") from None
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        values = [int(spec)]
    elif isinstance(spec, (Sequence, Tensor, np.ndarray)) and not isinstance(spec, bool):
        try:
            values = [int(v) for v in (spec.tolist() if hasattr(spec, "tolist") else spec)]
        except (TypeError, ValueError):
            raise ValueError(f"bad labels {spec!r}; give a list of class numbers, 'all' or 'random'") from None
    else:
        raise ValueError(f"bad labels {spec!r}; give class numbers like 0,1,2, 'all' or 'random'")
    if not values:
        raise ValueError("labels is empty; give class numbers like 0,1,2, 'all' or 'random'")
    bad = sorted({v for v in values if not 0 <= v < classes})
    if bad:
        raise ValueError(f"labels {', '.join(map(str, bad))} out of range: this model has {classes} classes "
                         f"(0..{classes - 1})")
    return values


class Conditioning:
    """Which label each sample gets, and the guidance weight (None: conditional sampling, w = 1)."""

    def __init__(self, classes: int, labels, guidance: float | None, seed: int):
        self.classes = int(classes)
        self.labels = parse_labels("all" if labels is None else labels, self.classes)
        self.guidance = guidance
        self.seed = int(seed)

    def labels_for(self, indices: Sequence[int]) -> Tensor:
        """int64 labels of the samples ``indices`` (CPU): a function of (seed, index) only."""
        if self.labels == "random":
            return torch.tensor([int(np.random.default_rng([self.seed, int(i), LABEL_STREAM]).integers(self.classes))
                                 for i in indices], dtype=torch.long)
        cycle = self.labels
        return torch.tensor([cycle[int(i) % len(cycle)] for i in indices], dtype=torch.long)

    def describe(self) -> dict:
        out = {"labels": self.labels if self.labels == "random" else ",".join(map(str, self.labels)),
               "num_classes": self.classes}
        if self.guidance is not None:
            out.update(guidance=self.guidance, nfe_counting="one batched conditional + unconditional call = 1 NFE",
                       network_passes_per_nfe=NETWORK_PASSES_PER_NFE)
        return out


def condition(model: Model, guidance: float | None = None, labels=None, seed: int = 0
              ) -> tuple[Model, Conditioning | None]:
    """The model to sample and its :class:`Conditioning` (None for unconditional sampling).

    ``guidance`` (a float, ``w >= 0``) wraps the model in :class:`GuidedModel`; ``labels``
    (``"0,1,2"``, ``"all"``, ``"random"``, ints; default ``"all"`` under guidance) chooses the
    class of each sample.  Labels alone sample the conditional model (``w = 1``, one pass).
    Guidance or labels on an unconditional model is an error.
    """
    if guidance is None and labels is None:
        return model, None
    classes = num_classes(model)
    what = "guidance" if guidance is not None else "labels"
    if classes < 1:
        raise ValueError(f"{what} needs a class-conditional model; {getattr(model, 'name', model)!r} has no labels "
                         f"(conditional models: gmm-image -m conditional=true, digits-cond-unet)")
    if guidance is not None:
        try:
            guidance = float(guidance)
        except (TypeError, ValueError):
            raise ValueError(f"guidance must be a number w >= 0, got {guidance!r}") from None
        if not math.isfinite(guidance) or guidance < 0:
            raise ValueError(f"guidance must be a finite number w >= 0 (1: conditional, 0: unconditional), "
                             f"got {guidance}")
    cond = Conditioning(classes, labels, guidance, seed)
    return (model if guidance is None else GuidedModel(model, guidance)), cond


def label_accuracy(samples: Tensor, labels: Tensor) -> float:
    """Fraction of 8 x 8 digit samples that the shipped digits classifier assigns to their label."""
    from ..metrics.fid import load_digits_classifier

    net = load_digits_classifier()
    with torch.no_grad():
        pred = net(samples.to(torch.float32).cpu()).argmax(1)
    return float((pred == labels.cpu()).float().mean())
