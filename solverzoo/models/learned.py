"""Learned denoisers behind the one model interface, and solverzoo's own checkpoints.

:class:`DenoiserModel` wraps any network that computes ``D(x_hat, sigma)`` (the EDM /
k-diffusion convention: unscaled input, per-sample sigma of shape ``(B,)``, returns the
denoised image) together with the process it was trained under and the sample shape.
The network runs in its own dtype (float32 normally) under ``torch.no_grad``; the solver
state keeps its dtype (float64 runs cast in and out, as EDM's sampler does).

Checkpoint format (``torch.save`` of a dict, loadable with ``weights_only=True``)::

    {"format": "solverzoo.unet/1", "unet": UNetConfig dict, "precond": PrecondConfig dict,
     "shape": [C, H, W], "state_dict": the denoiser's (EMA) weights, float32 or float16,
     "meta": {...}}                # data, iterations, training options, default feature

A TorchScript file of a denoiser (``torch.jit.trace(Precond)``) carries the same metadata
in an extra file ``solverzoo.json`` (:func:`save_torchscript`).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..io import atomic_write
from ..processes import Process, get_process
from .base import Model
from .unet import Precond, PrecondConfig, UNet, UNetConfig, count_parameters

__all__ = [
    "DenoiserModel",
    "CHECKPOINT_FORMAT",
    "build_denoiser",
    "save_checkpoint",
    "load_checkpoint",
    "save_torchscript",
    "load_torchscript",
    "load_solverzoo_file",
    "checkpoint_dir",
    "shipped_checkpoint",
    "SHIPPED",
    "SHIPPED_DEFAULTS",
]

CHECKPOINT_FORMAT = "solverzoo.unet/1"
TORCHSCRIPT_META = "solverzoo.json"

#: shipped checkpoints (package data under solverzoo/checkpoints/): model name -> file
SHIPPED = {"digits-unet": "digits_unet.pt", "patches-unet": "patches_unet.pt",
           "digits-cond-unet": "digits_cond_unet.pt", "digits-flow-unet": "digits_flow_unet.pt"}
#: what a shipped model's checkpoint may leave unset: its data (the bench's FD reference and the
#: PDS/TDAS statistics, solverzoo.data) and its default feature space (solverzoo.metrics.features)
SHIPPED_DEFAULTS = {
    "digits-unet": {"data": "digits", "default_feature": "digits_classifier"},
    "digits-flow-unet": {"data": "digits", "default_feature": "digits_classifier"},
    # fd_pool8 (8 x 8 average pools, 192-d, N = 500 > d): Inception features cost ~0.7 s per image on
    # a busy CPU core, too slow for a default; --feature inception with a fid-ref reference on a GPU
    "patches-unet": {"data": "patches", "default_feature": "pool:8"},
}
#: how to make a shipped checkpoint that is not there
SHIPPED_RECIPES = {
    "digits-flow-unet": "solverzoo train --out runs/flow --precond flow --iterations 4000 --threads 1 "
                        "--checkpoint-every 250 --export solverzoo/checkpoints/digits_flow_unet.pt",
    "patches-unet": "solverzoo train --data patches --out runs/patches --precond edm --iterations 20000 "
                    "--batch-size 64 --channels 24 --channel-mult 1,2,2,2 --ema-halflife-kimg 10 "
                    "--checkpoint-every 100 --threads 1 --heldout 1024 --heldout-every 200 --until-flattened "
                    "--export solverzoo/checkpoints/patches_unet.pt",
}


class DenoiserModel(Model):
    """A network ``D(x_hat, sigma)`` as a solverzoo model.

    Args:
        net: a module or callable ``net(x_hat, sigma) -> denoised`` with ``sigma`` of shape (B,).
        process: the process the network was trained under (a name or a Process).
        shape: the shape of one sample, e.g. (1, 8, 8).
        name: the model name reported in results.
        data: the data the network was trained on (``"digits"``, a path) when known: the bench
            builds its reference statistics from it.
        default_feature: the bench's feature space when none is given (e.g. ``digits_classifier``).
        meta: anything worth recording in results (training options, source path...).
    """

    def __init__(self, net, process: str | Process, shape, name: str = "denoiser", data: str | None = None,
                 default_feature: str | None = None, meta: dict | None = None):
        if not callable(net):
            raise ValueError(f"model {name!r}: the denoiser must be callable as net(x, sigma), "
                             f"got {type(net).__name__}")
        self.net = net
        self.process = get_process(process) if isinstance(process, str) else process
        self.shape = tuple(int(n) for n in shape)
        if not self.shape or any(n < 1 for n in self.shape):
            raise ValueError(f"model {name!r}: invalid sample shape {self.shape}")
        self.name = name
        self.data = data
        self.default_feature = default_feature
        self.meta = dict(meta or {})
        self.num_classes = int(getattr(net, "num_classes", 0) or 0)  # > 0: net(x, sigma, labels)
        self.keep_grad = False  # True: autograd through the network (solverzoo.wrap_denoiser); else no_grad
        self.extra_args: dict = {}  # keyword arguments of every network call (solverzoo.solve(extra_args=...))
        if isinstance(net, nn.Module):
            net.eval()

    @property
    def net_dtype(self) -> torch.dtype | None:
        """The dtype of the network's parameters; None for a network without any (a plain function):
        it is called in the dtype of the run."""
        if isinstance(self.net, nn.Module):
            for p in self.net.parameters():
                return p.dtype
        return None

    def to(self, device, dtype=None) -> DenoiserModel:
        if isinstance(self.net, (nn.Module, torch.jit.ScriptModule)):
            self.net.to(device)
        return self

    def denoise(self, x_hat: Tensor, sigma: Tensor, labels: Tensor | None = None) -> Tensor:
        dtype = self.net_dtype or x_hat.dtype
        args = (x_hat.to(dtype), sigma.to(device=x_hat.device, dtype=dtype)) + (() if labels is None else (labels,))
        with torch.set_grad_enabled(self.keep_grad and torch.is_grad_enabled()):
            out = self.net(*args, **self.extra_args)
        return out.to(x_hat.dtype)

    def describe(self) -> dict:
        out = super().describe()
        if isinstance(self.net, nn.Module):
            out["parameters"] = count_parameters(self.net)
        if self.data is not None:
            out["data"] = self.data
        if self.meta:
            out["meta"] = json.loads(json.dumps(self.meta, default=str))
        return out


# ----------------------------------------------------------------------------- own checkpoints
def build_denoiser(unet: dict | UNetConfig, precond: dict | PrecondConfig) -> Precond:
    """A fresh (randomly initialised) :class:`Precond` from the two configs."""
    ucfg = unet if isinstance(unet, UNetConfig) else UNetConfig(**unet)
    pcfg = precond if isinstance(precond, PrecondConfig) else PrecondConfig(**precond)
    return Precond(UNet(ucfg), pcfg)


def save_checkpoint(path: str | Path, denoiser: Precond, meta: dict | None = None, half: bool = False) -> Path:
    """Write a denoiser as a solverzoo checkpoint (atomic: temp file + rename).

    ``half=True`` stores the weights as float16 (half the size; they are cast back to
    float32 on load, so the loaded model is the rounded one)."""
    path = Path(path)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in denoiser.state_dict().items()}
    c = denoiser.net.config
    payload = {
        "format": CHECKPOINT_FORMAT,
        "unet": c.as_dict(),
        "precond": denoiser.pconfig.as_dict(),
        "shape": [c.in_channels, c.resolution, c.resolution],
        "state_dict": state,
        "meta": json.loads(json.dumps(meta or {}, default=str)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _read_checkpoint(path: Path) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a solverzoo checkpoint (a dict), got {type(payload).__name__}")
    return payload


def _denoiser_from_payload(payload: dict, path: Path) -> tuple[Precond, dict]:
    if payload.get("format") != CHECKPOINT_FORMAT:
        keys = ", ".join(sorted(map(str, payload))[:8])
        raise ValueError(f"{path}: not a solverzoo checkpoint (format {payload.get('format')!r}, keys {keys}); "
                         f"expected format {CHECKPOINT_FORMAT!r} as written by 'solverzoo train'")
    try:
        denoiser = build_denoiser(payload["unet"], payload["precond"])
        state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        denoiser.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as err:
        raise ValueError(f"{path}: checkpoint does not match its configuration ({type(err).__name__}: {err})") from None
    return denoiser.eval().requires_grad_(False), dict(payload.get("meta") or {})


def load_checkpoint(path: str | Path, name: str | None = None) -> DenoiserModel:
    """A solverzoo checkpoint (``solverzoo train``) as a model."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    payload = _read_checkpoint(path)
    denoiser, meta = _denoiser_from_payload(payload, path)
    meta.setdefault("source", str(path))
    return DenoiserModel(denoiser, denoiser.process(), payload["shape"], name=name or meta.get("name", path.stem),
                         data=meta.get("data"), default_feature=meta.get("default_feature"), meta=meta)


def save_torchscript(path: str | Path, denoiser: Precond, meta: dict | None = None, batch: int = 2) -> Path:
    """Trace a denoiser to TorchScript, with the process and shape in ``solverzoo.json``."""
    path = Path(path)
    c = denoiser.net.config
    shape = [c.in_channels, c.resolution, c.resolution]
    denoiser = denoiser.eval()
    example = (torch.zeros(batch, *shape), torch.ones(batch))
    with torch.no_grad():
        traced = torch.jit.trace(denoiser, example, check_trace=False)
    name, popts = denoiser._process_name, denoiser._process_options
    info = {"format": "solverzoo.torchscript/1", "shape": shape, "process": {"name": name, "options": popts},
            "meta": json.loads(json.dumps(meta or {}, default=str))}
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: torch.jit.save(traced, str(tmp),
                                                         _extra_files={TORCHSCRIPT_META: json.dumps(info)}))


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with a ``code/`` folder (torch.save zips have none)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n or n.startswith("code/") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_torchscript(path: str | Path, name: str | None = None, shape=None, process: str | Process | None = None,
                     process_options: dict | None = None) -> DenoiserModel:
    """A TorchScript denoiser ``D(x, sigma)``.  Its process and shape come from the
    ``solverzoo.json`` extra file (written by :func:`save_torchscript`) or from the
    ``shape`` / ``process`` arguments (required for other TorchScript files)."""
    path = Path(path)
    extra = {TORCHSCRIPT_META: ""}
    try:
        net = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as err:
        raise ValueError(f"{path}: not a loadable TorchScript file ({type(err).__name__}: {err})") from None
    info = json.loads(extra[TORCHSCRIPT_META]) if extra[TORCHSCRIPT_META] else {}
    meta = dict(info.get("meta") or {})
    meta.setdefault("source", str(path))
    shape = shape if shape is not None else info.get("shape")
    if shape is None:
        raise ValueError(f"{path}: a TorchScript file without solverzoo metadata; give the sample shape "
                         f"(-m shape=[C,H,W]) and the process (-m process=edm)")
    if process is None:
        p = info.get("process")
        if p is None:
            raise ValueError(f"{path}: a TorchScript file without solverzoo metadata; "
                             f"give the process (-m process=edm)")
        proc = get_process(p["name"], **(p.get("options") or {}))
    else:
        proc = get_process(process, **(process_options or {}))
    return DenoiserModel(net, proc, shape, name=name or meta.get("name", path.stem), data=meta.get("data"),
                         default_feature=meta.get("default_feature"), meta=meta)


def load_solverzoo_file(path: str | Path, **options) -> DenoiserModel:
    """A ``.pt`` file written by solverzoo: TorchScript or checkpoint, told apart by content."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if is_torchscript(path):
        return load_torchscript(path, **options)
    unknown = sorted(set(options) - {"name"})
    if unknown:
        raise ValueError(f"{path}: a solverzoo checkpoint takes no options {', '.join(unknown)} "
                         f"(its process and shape are stored in it)")
    return load_checkpoint(path, **options)


# ----------------------------------------------------------------------------- shipped models
def checkpoint_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "checkpoints"


def shipped_checkpoint(name: str) -> Path:
    path = checkpoint_dir() / SHIPPED[name]
    if not path.is_file():
        recipe = SHIPPED_RECIPES.get(name, "solverzoo train --out DIR")
        raise ValueError(f"the shipped checkpoint of {name!r} is not there ({path}); make it with '{recipe}' "
                         f"(or reinstall solverzoo), or load a trained checkpoint with --model DIR/model.pt")
    return path


def load_shipped(name: str, **options: Any) -> DenoiserModel:
    if options:
        raise ValueError(f"model {name!r} takes no options (got {', '.join(sorted(options))}); "
                         f"it is a trained network with a fixed process and shape")
    model = load_checkpoint(shipped_checkpoint(name), name=name)
    defaults = SHIPPED_DEFAULTS.get(name, {})
    model.data = model.data or defaults.get("data")
    model.default_feature = model.default_feature or defaults.get("default_feature")
    return model
