"""Model registry: ``get_model("gmm-image", resolution=64, channels=1, process="vp")``."""

from __future__ import annotations

from typing import Callable

from ..processes import Process, get_process
from .base import AnalyticModel, CountingDenoiser, Model
from .gmm_2d import GMM2D
from ..registry import Registry
from .gmm_image import GMMImage

__all__ = [
    "Model",
    "AnalyticModel",
    "CountingDenoiser",
    "GMMImage",
    "GMM2D",
    "MODELS",
    "get_model",
    "list_models",
]


def _process(process: str | Process, process_options: dict | None) -> Process:
    if isinstance(process, Process):
        return process
    return get_process(process, **(process_options or {}))


def _gmm_image(
    resolution: int | None = None,
    channels: int = 3,
    *,
    height: int | None = None,
    width: int | None = None,
    process: str | Process = "ve",
    process_options: dict | None = None,
    **options,
) -> GMMImage:
    """GMMImage, default 3 x 32 x 32 under the score_sde VE process (sigma 0.01..50), the
    setting PDS/TDAS/score_sde samplers were designed for; the EDM-family solvers see
    only its sigma range.  ``resolution`` sets height = width."""
    height = height if height is not None else (resolution if resolution is not None else 32)
    width = width if width is not None else (resolution if resolution is not None else height)
    return GMMImage(channels=channels, height=height, width=width, process=_process(process, process_options), **options)


def _gmm_2d(process: str | Process = "edm", process_options: dict | None = None, **options) -> GMM2D:
    """GMM2D, default 8 Gaussians on a ring under EDM."""
    return GMM2D(process=_process(process, process_options), **options)


#: model factories by name; get_model also takes a diffusers folder, a .pt file or module:factory
MODELS: Registry[Callable[..., Model]] = Registry(
    "model", alternatives="or give a diffusers folder, a .pt checkpoint or module:factory")
MODELS.register("gmm-image", _gmm_image)
MODELS.register("gmm-2d", _gmm_2d)

try:  # the Gaussian reference model lives in its own module
    from .gaussian import GaussianModel as _GaussianModel

    def _gaussian(process: str | Process = "edm", process_options: dict | None = None, **options) -> Model:
        return _GaussianModel(process=_process(process, process_options), **options)

    MODELS.register("gaussian", _gaussian)
    __all__.append("GaussianModel")
    GaussianModel = _GaussianModel
except ImportError:  # pragma: no cover
    pass


def _digits_unet(**options) -> Model:
    """The shipped UNet trained on scikit-learn's 8 x 8 digits (EDM process; solverzoo train)."""
    from .learned import load_shipped

    return load_shipped("digits-unet", **options)


MODELS.register("digits-unet", _digits_unet)


def _patches_unet(**options) -> Model:
    """The shipped UNet trained on 3 x 32 x 32 patches of the photographs in scikit-learn and
    scikit-image (solverzoo.data.load_patches; EDM process; solverzoo train --data patches)."""
    from .learned import load_shipped

    return load_shipped("patches-unet", **options)


MODELS.register("patches-unet", _patches_unet)


def _digits_cond_unet(**options) -> Model:
    """The shipped class-conditional UNet on the digits (labels 0..9 and a learned null label, for
    classifier-free guidance: solverzoo.models.guidance; EDM process; solverzoo train --labels)."""
    from .learned import load_shipped

    return load_shipped("digits-cond-unet", **options)


MODELS.register("digits-cond-unet", _digits_cond_unet)


def _digits_flow_unet(shift: float = 1.0, **options) -> Model:
    """The shipped rectified-flow velocity UNet on the digits (flow-matching loss, logit-normal t;
    solverzoo train --precond flow), under the flow process with sampling shift ``shift`` (the
    native grid flow_shift; the network is the same whatever the shift)."""
    from .learned import load_shipped

    model = load_shipped("digits-flow-unet", **options)
    trained = model.process
    model.process = get_process("flow", t_min=trained.t_min, t_max=trained.t_max, shift=float(shift))
    return model


MODELS.register("digits-flow-unet", _digits_flow_unet)


def list_models() -> list[str]:
    return MODELS.names()


def get_model(name: str, **options) -> Model:
    """Build a registered model by name; ``process`` may be a name or a Process."""
    if isinstance(name, Model):
        return name
    try:
        factory = MODELS[name]
    except (KeyError, TypeError):
        from .adapters import load_model, looks_like_spec

        if looks_like_spec(name):  # a diffusers folder, a .pt file or module:factory
            return load_model(name, **options)
        raise MODELS.unknown(name) from None
    return factory(**options)
