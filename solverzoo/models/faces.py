"""Procedural "aligned face" images: the component means of gmm-image.

Each face is painted with anti-aliased signed-distance shapes (background, neck, clothing, hair,
side-lit head, fringe, eyes, brows, nose shadow, mouth) in normalised coordinates, so the layout is
the same at every resolution; component ``k`` draws its jitter from ``numpy.random.default_rng([seed, 7919, k])``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["face_means"]


def _soft_mask(sdf: np.ndarray, softness: float) -> np.ndarray:
    """Anti-aliased inside-mask from a signed distance (negative inside)."""
    return 1.0 / (1.0 + np.exp(np.clip(sdf / softness, -60, 60)))


def _paint(img: np.ndarray, colour, mask: np.ndarray) -> None:
    """Alpha-composite ``colour`` over ``img`` in place: img <- img + mask (colour - img)."""
    img -= mask * (img - colour)


def _ellipse_sdf(u, v, cu, cv, a, b):
    r = np.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2)
    return (r - 1.0) * min(a, b)


_SKIN_LIGHT = np.array([0.96, 0.80, 0.69])
_SKIN_DARK = np.array([0.36, 0.23, 0.16])
_HAIR = np.array(
    [
        [0.08, 0.06, 0.05],  # black
        [0.30, 0.19, 0.10],  # brown
        [0.55, 0.38, 0.20],  # light brown
        [0.85, 0.72, 0.45],  # blonde
        [0.55, 0.20, 0.08],  # red
        [0.70, 0.70, 0.70],  # grey
    ]
)


def face_means(channels: int, height: int, width: int, num_components: int, seed: int = 0) -> Tensor:
    """Procedural "aligned face" images, ``(K, C, H, W)`` float64 in [-1, 1].

    Everything is drawn in normalised coordinates ``u, v in [-1, 1]`` (x to the right,
    y down), so the layout is the same at every resolution; component ``k`` takes its
    jitter (head size and position, skin tone, hair colour and hairline, eye spacing,
    mouth, clothing, background) from ``numpy.random.default_rng([seed, k])``.
    """
    v = (np.arange(height) + 0.5) / height * 2 - 1
    u = (np.arange(width) + 0.5) / width * 2 - 1
    v, u = np.meshgrid(v, u, indexing="ij")
    soft = 0.6 / min(height, width)  # edges ~1.3 pixels wide (a pixel is 2/size)
    out = np.empty((num_components, 3, height, width))
    for k in range(num_components):
        rng = np.random.default_rng([int(seed), 7919, k])
        j = rng.uniform  # j(-s, s): a jitter of at most s
        # background: a muted colour with a vertical gradient
        bg = rng.uniform(0.15, 0.85, size=3)
        bg = 0.6 * bg + 0.4 * bg.mean()
        img = bg[:, None, None] * (1.0 + 0.25 * j(-1.0, 1.0) * v[None])
        # head geometry
        cu, cv = j(-0.06, 0.06), 0.02 + j(-0.06, 0.06)
        a, b = 0.46 * (1 + j(-0.08, 0.08)), 0.60 * (1 + j(-0.06, 0.06))
        # neck, then clothing / shoulders
        skin = np.clip(_SKIN_LIGHT + rng.uniform(0, 1) * (_SKIN_DARK - _SKIN_LIGHT) + rng.normal(0, 0.02, size=3), 0, 1)
        neck_sdf = np.maximum(np.abs(u - cu) - 0.2 * a / 0.46, -(v - cv - 0.3))
        m = _soft_mask(neck_sdf, soft)
        _paint(img, (0.8 * skin)[:, None, None], m)
        cloth = rng.uniform(0.05, 0.9, size=3)
        m = _soft_mask(_ellipse_sdf(u, v, cu, 1.3, 0.9 + j(-0.08, 0.08), 0.5), soft)
        _paint(img, cloth[:, None, None], m)
        # hair behind and around the head
        hair = np.clip(_HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 0.03, size=3), 0, 1)
        hair_len = rng.uniform(0.0, 0.5)
        hair_sdf = _ellipse_sdf(u, v, cu, cv - 0.06, a * 1.14, b * 1.02)
        hair_sdf = np.maximum(hair_sdf, v - (cv + hair_len))  # cut the hair at its length
        m = _soft_mask(hair_sdf, soft)
        _paint(img, hair[:, None, None], m)
        # face, side-lit
        shade = 1.0 - 0.12 * (u - cu) / a + 0.05 * (v - cv) / b
        m = _soft_mask(_ellipse_sdf(u, v, cu, cv, a, b), soft)
        _paint(img, skin[:, None, None] * shade[None], m)
        # fringe: hair over the top of the face, above a wavy hairline
        hairline = cv - b * (0.45 + j(-0.12, 0.12)) + 0.04 * np.sin(6 * (u - cu) / a + j(-3.0, 3.0))
        m = _soft_mask(_ellipse_sdf(u, v, cu, cv - 0.06, a * 1.14, b * 1.02), soft)
        m = m * _soft_mask(v - hairline, soft)
        _paint(img, hair[:, None, None], m)
        # eyes: sclera, iris, brows
        eye_dx, eye_v = a * (0.40 + j(-0.05, 0.05)), cv - b * (0.08 + j(-0.04, 0.04))
        iris_colours = [[0.25, 0.15, 0.08], [0.2, 0.35, 0.55], [0.25, 0.4, 0.25]]
        iris = np.clip(rng.choice(iris_colours) + rng.normal(0, 0.03, 3), 0, 1)
        for side in (-1.0, 1.0):
            eu = cu + side * eye_dx
            m = _soft_mask(_ellipse_sdf(u, v, eu, eye_v, a * 0.2, b * 0.07), soft)
            _paint(img, np.array([0.92, 0.9, 0.88])[:, None, None], m)
            m = _soft_mask(_ellipse_sdf(u, v, eu, eye_v, a * 0.08, b * 0.065), soft)
            _paint(img, iris[:, None, None], m)
            m = _soft_mask(_ellipse_sdf(u, v, eu, eye_v, a * 0.035, b * 0.03), soft)
            _paint(img, 0.03, m)
            m = _soft_mask(_ellipse_sdf(u, v, eu, eye_v - b * 0.16, a * 0.24, b * 0.035), soft)
            _paint(img, (0.8 * hair)[:, None, None], m)
        # nose shadow and mouth
        m = 0.6 * _soft_mask(_ellipse_sdf(u, v, cu + 0.02, cv + b * 0.22, a * 0.07, b * 0.12), soft)
        _paint(img, (0.8 * skin)[:, None, None], m)
        lips = 0.5 * skin + 0.5 * np.array([0.75, 0.25, 0.28]) + rng.normal(0, 0.03, 3)
        mw, mh = a * (0.32 + j(-0.08, 0.08)), b * (0.06 + j(-0.02, 0.02))
        m = _soft_mask(_ellipse_sdf(u, v, cu, cv + b * (0.5 + j(-0.05, 0.05)), mw, mh), soft)
        _paint(img, np.clip(lips, 0, 1)[:, None, None], m)
        out[k] = np.clip(img, 0.0, 1.0)
    out = torch.from_numpy(out * 2.0 - 1.0)
    if channels == 1:
        out = (out * torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)[:, None, None]).sum(1, keepdim=True)
    elif channels != 3:
        raise ValueError(f"GMMImage supports 1 or 3 channels, got {channels}")
    return out.contiguous()
