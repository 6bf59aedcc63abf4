"""Adapters: trained networks from other code bases behind the one model interface.

Everything loads from a local path; nothing is downloaded (diffusers runs with
``local_files_only=True`` and ``HF_HUB_OFFLINE=1``).

* diffusers ``UNet2DModel`` folders (:func:`load_diffusers`):

  - DDPM-type models (google/ddpm-* layout; any scheduler with ``alphas_cumprod``: DDPM,
    DDIM, PNDM...): a VP process with the scheduler's discrete betas
    (:class:`DiscreteVPProcess`, sigma_k = sqrt((1 - abar_k) / abar_k)) and, for
    epsilon prediction,

        D(x_hat; sigma) = x_hat - sigma eps(s x_hat, t(sigma)),   s = 1 / sqrt(1 + sigma^2),

    with t(sigma) the fractional timestep index found by linear interpolation of log sigma
    between the two neighbouring discrete sigmas (k-diffusion's ``DiscreteEpsDDPMDenoiser``
    / ``DiscreteSchedule.sigma_to_t``).  ``sample`` and ``v_prediction`` schedulers are
    converted too (D = output; D = s^2 x_hat - s sigma v).
  - flow-matching models (``FlowMatchEulerDiscreteScheduler``, the SD3 / Flux scheduler): a
    UNet2DModel predicting the rectified-flow velocity v = n - x0 at x_t = (1 - t) x0 + t n with
    timestep 1000 t, under :class:`~solverzoo.processes.FlowProcess` with the scheduler's shift
    (or its resolution-dependent shift): D = x_t - t v (:class:`FlowNetworkModel`).
  - score_sde NCSN++ VE models (google/ncsnpp-* layout, ``ScoreSdeVeScheduler``, a UNet with
    ``time_embedding_type="fourier"``): the UNet takes sigma as its timestep and returns the
    score, so D(x_hat; sigma) = x_hat + sigma^2 score(x_hat, sigma), under
    VEProcess(sigma_min, sigma_max, t_min=sampling_eps) of the scheduler.

* EDM / k-diffusion style denoisers D(x, sigma) (:func:`load_entry_point`): a
  ``module:factory`` (or ``path/to/file.py:factory``) whose factory returns a solverzoo
  :class:`~solverzoo.models.base.Model`, or a module / callable ``net(x, sigma)``.  The process
  and shape come from the options (``process=``, ``process_options=``, ``shape=``) or from the
  network's attributes (EDM's ``img_channels``, ``img_resolution``, ``sigma_min``, ``sigma_max``);
  the default process is EDM over the network's sigma range.

* rectified-flow networks ``net(x_t, t)`` (option ``flow_prediction=velocity|sample|epsilon``, with
  ``time_scale``: the network's time input is ``time_scale * t``): :class:`FlowNetworkModel` under
  the ``flow`` process (:func:`flow_denoised` gives D from each kind of output).

* solverzoo's own networks: a checkpoint or TorchScript file (``solverzoo.models.learned``).

:func:`load_model` picks the adapter from the spec; bad input (a path that does not exist,
a config of the wrong kind, a factory that returns something unusable) is a ``ValueError``
raised before any sampling.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..processes import DiscreteVPProcess, FlowProcess, Process, VEProcess, flow_dynamic_shift_mu, get_process
from .base import Model
from .learned import DenoiserModel, load_solverzoo_file

__all__ = [
    "DiscreteVPProcess",
    "DiffusersEpsModel",
    "DiffusersScoreVEModel",
    "PREDICTION_TYPES",
    "ddpm_denoised",
    "FlowNetworkModel",
    "FLOW_PREDICTIONS",
    "flow_denoised",
    "flow_process_from_scheduler",
    "load_diffusers",
    "load_entry_point",
    "load_model",
    "looks_like_spec",
]

_F64 = torch.float64


# ----------------------------------------------------------------------------- diffusers
@contextlib.contextmanager
def _offline():
    """HF_HUB_OFFLINE=1 while diffusers reads a folder: a local load can never fetch."""
    old = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "DIFFUSERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["DIFFUSERS_OFFLINE"] = "1"
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _read_json(path: Path) -> dict:
    try:
        with open(path) as fh:
            out = json.load(fh)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(out, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return out


def _diffusers_layout(path: Path) -> tuple[Path, Path | None]:
    """(folder holding the UNet's config.json, scheduler config file or None)."""
    unet_dir = path / "unet" if (path / "unet" / "config.json").is_file() else path
    if not (unet_dir / "config.json").is_file():
        raise ValueError(f"{path}: no diffusers model here (expected unet/config.json or config.json beside the "
                         f"weights, as in the google/ddpm-* and google/ncsnpp-* folders)")
    for candidate in (path / "scheduler" / "scheduler_config.json", path / "scheduler_config.json"):
        if candidate.is_file():
            return unet_dir, candidate
    return unet_dir, None


class _DiffusersModel(Model):
    unet: nn.Module
    keep_grad = False  # True: autograd through the network (solverzoo.solve(grad=True)); else no_grad

    def to(self, device, dtype=None):
        self.unet.to(device)
        return self

    @property
    def net_dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def describe(self) -> dict:
        return {**super().describe(), "source": self.source, "kind": self.kind,
                "parameters": sum(p.numel() for p in self.unet.parameters())}


#: what a DDPM-type network predicts (diffusers' ``prediction_type``)
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def ddpm_denoised(prediction_type: str, x_hat: Tensor, sigma: Tensor, output: Tensor) -> Tensor:
    """D(x_hat; sigma) from a DDPM-type network's ``output`` at ``s x_hat`` (see the module docstring),
    computed in float64 and returned in ``x_hat``'s dtype; ``sigma`` has shape (B,).  An output with
    twice the channels (learned variance, improved DDPM) contributes its mean part."""
    sig = sigma.to(_F64).reshape(-1, *([1] * (x_hat.ndim - 1)))
    s = 1 / torch.sqrt(1 + sig**2)
    out = output.to(_F64)
    if out.shape[1] == 2 * x_hat.shape[1]:  # learned variance (improved DDPM): keep the mean part
        out = out[:, : x_hat.shape[1]]
    x = x_hat.to(_F64)
    if prediction_type == "epsilon":
        d = x - sig * out
    elif prediction_type == "sample":
        d = out
    elif prediction_type == "v_prediction":  # v = alpha eps - sigma_vp x0 with alpha = s, sigma_vp = s sigma
        d = s**2 * x - s * sig * out
    else:
        raise ValueError(f"unsupported prediction_type {prediction_type!r} ({', '.join(PREDICTION_TYPES)})")
    return d.to(x_hat.dtype)


class DiffusersEpsModel(_DiffusersModel):
    """A diffusers DDPM-type UNet under its discrete VP schedule (see the module docstring)."""

    kind = "diffusers-ddpm"

    def __init__(self, unet: nn.Module, process: DiscreteVPProcess, shape, prediction_type: str = "epsilon",
                 name: str = "diffusers-ddpm", source: str = "", quantize: bool = False):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unsupported prediction_type {prediction_type!r} ({', '.join(PREDICTION_TYPES)})")
        self.unet, self.process, self.shape = unet.eval(), process, tuple(shape)
        self.prediction_type, self.name, self.source, self.quantize = prediction_type, name, source, quantize
        self.data = None
        self.default_feature = None

    def timestep(self, sigma: Tensor) -> Tensor:
        """Fractional timestep index of each sigma (rounded to the nearest index with ``quantize``)."""
        t = self.process.t_of_sigma(sigma.detach().to("cpu", _F64))
        return t.round() if self.quantize else t

    def denoise(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        dtype = self.net_dtype
        sig = sigma.to(_F64).reshape(-1, *([1] * (x_hat.ndim - 1)))
        s = 1 / torch.sqrt(1 + sig**2)
        t = self.timestep(sigma).to(device=x_hat.device, dtype=dtype)
        with torch.set_grad_enabled(self.keep_grad and torch.is_grad_enabled()):
            out = self.unet((s * x_hat).to(dtype), t).sample
        return ddpm_denoised(self.prediction_type, x_hat, sigma, out)

    def describe(self) -> dict:
        return {**super().describe(), "prediction_type": self.prediction_type}


class DiffusersScoreVEModel(_DiffusersModel):
    """A diffusers NCSN++ (score_sde VE) UNet: D = x_hat + sigma^2 score(x_hat, sigma)."""

    kind = "diffusers-ncsnpp"

    def __init__(self, unet: nn.Module, process: VEProcess, shape, name: str = "diffusers-ncsnpp", source: str = ""):
        self.unet, self.process, self.shape, self.name, self.source = unet.eval(), process, tuple(shape), name, source
        self.data = None
        self.default_feature = None

    def denoise(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        dtype = self.net_dtype
        with torch.set_grad_enabled(self.keep_grad and torch.is_grad_enabled()):
            score = self.unet(x_hat.to(dtype), sigma.to(device=x_hat.device, dtype=dtype)).sample
        sig = sigma.to(x_hat.dtype).reshape(-1, *([1] * (x_hat.ndim - 1)))
        return x_hat + sig**2 * score.to(x_hat.dtype)


# ----------------------------------------------------------------------------- rectified flow
#: what a flow network predicts: the velocity v = n - x0, the data x0 ("sample") or the noise n
FLOW_PREDICTIONS = ("velocity", "sample", "epsilon")


def flow_denoised(output: Tensor, x_hat: Tensor, sigma: Tensor, prediction: str = "velocity") -> Tensor:
    """D(x_hat; sigma) from a rectified-flow network's output at x_t = (1 - t) x0 + t n
    (solverzoo.processes.FlowProcess: t = sigma / (1 + sigma), x_t = (1 - t) x_hat):

        velocity v = n - x0:  D = x_t - t v   (x_t - t (n - x0) = (1 - t) x0 + t n - t n + t x0 = x0)
        sample x0:            D = output
        epsilon n:            D = x_hat - sigma n   (x_hat = x_t / (1 - t) = x0 + sigma n)

    ``sigma`` has shape (B,); the arithmetic is done in ``x_hat``'s dtype."""
    if prediction not in FLOW_PREDICTIONS:
        raise ValueError(f"unknown flow prediction {prediction!r}; choose one of {', '.join(FLOW_PREDICTIONS)}")
    sig = sigma.to(device=x_hat.device, dtype=x_hat.dtype).reshape(-1, *([1] * (x_hat.ndim - 1)))
    out = output.to(x_hat.dtype)
    if prediction == "sample":
        return out
    if prediction == "epsilon":
        return x_hat - sig * out
    t = sig / (1 + sig)
    return x_hat / (1 + sig) - t * out


class FlowNetworkModel(Model):
    """A rectified-flow network ``net(x_t, time_scale * t)`` (returning the prediction, or an object
    with ``.sample`` as diffusers' UNets do) as a solverzoo model: the solver's (x_hat, sigma) become
    t = sigma / (1 + sigma), x_t = (1 - t) x_hat, and the output becomes D by :func:`flow_denoised`."""

    kind = "flow"
    keep_grad = False  # True: autograd through the network (solverzoo.solve(grad=True)); else no_grad

    def __init__(self, net, process: FlowProcess, shape, prediction: str = "velocity", time_scale: float = 1.0,
                 name: str = "flow", source: str = "", data: str | None = None, default_feature: str | None = None,
                 meta: dict | None = None):
        if not callable(net):
            raise ValueError(f"model {name!r}: the flow network must be callable as net(x_t, t)")
        if not isinstance(process, FlowProcess):
            raise ValueError(f"model {name!r}: a flow network needs the flow process, got {process.name!r}")
        if prediction not in FLOW_PREDICTIONS:
            raise ValueError(f"model {name!r}: unknown flow prediction {prediction!r}; choose one of "
                             f"{', '.join(FLOW_PREDICTIONS)}")
        self.net, self.process, self.shape = net, process, tuple(int(n) for n in shape)
        self.prediction, self.time_scale = prediction, float(time_scale)
        self.name, self.source, self.data, self.default_feature = name, source, data, default_feature
        self.meta = dict(meta or {})
        if isinstance(net, nn.Module):
            net.eval()

    @property
    def net_dtype(self) -> torch.dtype:
        if isinstance(self.net, nn.Module):
            for p in self.net.parameters():
                return p.dtype
        return torch.float32

    def to(self, device, dtype=None):
        if isinstance(self.net, nn.Module):
            self.net.to(device)
        return self

    def denoise(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        dtype = self.net_dtype
        x = x_hat.to(_F64)
        sig = sigma.to(device=x_hat.device, dtype=_F64)
        t = sig / (1 + sig)
        x_t = x / (1 + sig.reshape(-1, *([1] * (x.ndim - 1))))
        with torch.set_grad_enabled(self.keep_grad and torch.is_grad_enabled()):
            out = self.net(x_t.to(dtype), (self.time_scale * t).to(dtype))
        out = getattr(out, "sample", out)
        return flow_denoised(out, x, sig, self.prediction).to(x_hat.dtype)

    def describe(self) -> dict:
        out = {**super().describe(), "kind": self.kind, "prediction": self.prediction, "time_scale": self.time_scale}
        if self.source:
            out["source"] = self.source
        if isinstance(self.net, nn.Module):
            out["parameters"] = sum(p.numel() for p in self.net.parameters())
        if self.data is not None:
            out["data"] = self.data
        return out


def flow_process_from_scheduler(config: dict, shape=None, mu: float | None = None,
                                t_max: float | None = None) -> FlowProcess:
    """The :class:`FlowProcess` of a ``FlowMatchEulerDiscreteScheduler`` config: its ``shift``, t_min =
    1 / num_train_timesteps, and with ``use_dynamic_shifting`` the resolution-dependent shift with
    ``mu`` (given, else :func:`~solverzoo.processes.flow_dynamic_shift_mu` of the image's token count
    (H / 2) (W / 2), the 2 x 2 patches of the SD3 / Flux transformers, and the config's
    ``base_image_seq_len``, ``max_image_seq_len``, ``base_shift``, ``max_shift``)."""
    unsupported = [k for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "shift_terminal",
                               "invert_sigmas", "stochastic_sampling") if config.get(k)]
    if unsupported:
        raise ValueError(f"flow scheduler options {', '.join(unsupported)} change the sampler, not the model; "
                         f"the adapter reads plain FlowMatchEulerDiscreteScheduler configs (use the zoo's grids)")
    n_train = int(config.get("num_train_timesteps", 1000))
    options: dict[str, Any] = {"t_min": 1.0 / n_train, "shift": float(config.get("shift", 1.0))}
    if t_max is not None:
        options["t_max"] = float(t_max)
    if config.get("use_dynamic_shifting"):
        if mu is None:
            if shape is None:
                raise ValueError("dynamic shifting needs mu or the image shape")
            seq_len = (int(shape[-2]) // 2) * (int(shape[-1]) // 2)
            mu = flow_dynamic_shift_mu(seq_len, int(config.get("base_image_seq_len", 256)),
                                       int(config.get("max_image_seq_len", 4096)),
                                       float(config.get("base_shift", 0.5)), float(config.get("max_shift", 1.15)))
        options.update(mu=float(mu), time_shift_type=str(config.get("time_shift_type", "exponential")))
    elif mu is not None:
        raise ValueError("mu applies to schedulers with use_dynamic_shifting; this one has a fixed shift")
    return FlowProcess(**options)


def load_diffusers(path: str | Path, name: str | None = None, quantize: bool = False, prediction: str | None = None,
                   mu: float | None = None, t_max: float | None = None, **unknown) -> Model:
    """A local diffusers folder (see the module docstring) as a model.  Flow-matching folders take
    ``prediction`` (velocity, the default; sample or epsilon), ``mu`` (dynamic shifting) and ``t_max``."""
    if unknown:
        raise ValueError(f"diffusers models take the options name, quantize, prediction, mu, t_max; got "
                         f"{', '.join(sorted(unknown))}")
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such folder (a diffusers model folder is needed; nothing is downloaded)")
    if not path.is_dir():
        raise ValueError(f"{path}: a diffusers model is a folder, this is a file")
    unet_dir, sched_path = _diffusers_layout(path)
    config = _read_json(unet_dir / "config.json")
    cls = config.get("_class_name")
    if cls != "UNet2DModel":
        raise ValueError(f"{unet_dir / 'config.json'}: a {cls or 'non-diffusers'} config; the adapter loads "
                         f"unconditional UNet2DModel networks (google/ddpm-*, google/ncsnpp-*)")
    if sched_path is None:
        raise ValueError(f"{path}: no scheduler config (scheduler/scheduler_config.json or scheduler_config.json); "
                         f"the adapter needs it for the noise schedule")
    sched_cfg = _read_json(sched_path)
    sched_cls = sched_cfg.get("_class_name")
    try:
        import diffusers
    except ImportError as err:  # pragma: no cover
        raise ValueError("loading diffusers models needs the diffusers package (pip install diffusers)") from err
    sample_size = config.get("sample_size")
    if sample_size is None:
        raise ValueError(f"{unet_dir / 'config.json'}: no sample_size; cannot tell the image size")
    hw = (sample_size, sample_size) if isinstance(sample_size, int) else tuple(sample_size)
    shape = (int(config.get("in_channels", 3)), int(hw[0]), int(hw[1]))
    name = name or path.name
    if sched_cls == "ScoreSdeVeScheduler":
        if config.get("time_embedding_type") != "fourier":
            raise ValueError(f"{unet_dir / 'config.json'}: a ScoreSdeVeScheduler model must be an NCSN++ UNet "
                             f"(time_embedding_type 'fourier', sigma as timestep), got "
                             f"{config.get('time_embedding_type')!r}")
        process = VEProcess(sigma_min=float(sched_cfg.get("sigma_min", 0.01)),
                            sigma_max=float(sched_cfg.get("sigma_max", 1348.0)),
                            t_min=float(sched_cfg.get("sampling_eps", 1e-5)))
        unet = _load_unet(diffusers, unet_dir)
        return DiffusersScoreVEModel(unet, process, shape, name=name, source=str(path))
    flow = sched_cls == "FlowMatchEulerDiscreteScheduler"
    if not flow and (prediction is not None or mu is not None or t_max is not None):
        raise ValueError(f"options prediction, mu, t_max apply to flow-matching folders "
                         f"(FlowMatchEulerDiscreteScheduler); {path} has a {sched_cls}")
    if flow:
        if config.get("time_embedding_type", "positional") == "fourier":
            raise ValueError(f"{unet_dir / 'config.json'}: a Fourier-embedded (NCSN++) UNet with a flow scheduler; "
                             f"expected a UNet taking the timestep 1000 t")
        sched_options = {k: v for k, v in sched_cfg.items() if not k.startswith("_")}
        process = flow_process_from_scheduler(sched_options, shape, mu=mu, t_max=t_max)
        unet = _load_unet(diffusers, unet_dir)
        return FlowNetworkModel(unet, process, shape, prediction=prediction or "velocity",
                                time_scale=float(sched_options.get("num_train_timesteps", 1000)), name=name,
                                source=str(path))
    scheduler_cls = getattr(diffusers, str(sched_cls), None)
    if scheduler_cls is None:
        raise ValueError(f"{sched_path}: unknown scheduler class {sched_cls!r}")
    cfg = {k: v for k, v in sched_cfg.items() if not k.startswith("_")}
    try:
        scheduler = scheduler_cls.from_config(cfg)
    except Exception as err:
        raise ValueError(f"{sched_path}: cannot build {sched_cls} ({type(err).__name__}: {err})") from None
    ac = getattr(scheduler, "alphas_cumprod", None)
    if ac is None:
        raise ValueError(f"{sched_path}: {sched_cls} has no discrete alphas_cumprod; the adapter reads DDPM-type "
                         f"(VP) schedulers and ScoreSdeVeScheduler")
    if config.get("time_embedding_type", "positional") == "fourier":
        raise ValueError(f"{unet_dir / 'config.json'}: a Fourier-embedded (NCSN++) UNet with a {sched_cls}; "
                         f"expected a DDPM UNet (positional timestep embedding)")
    process = DiscreteVPProcess(torch.as_tensor(ac, dtype=_F64))
    prediction = cfg.get("prediction_type", "epsilon")
    unet = _load_unet(diffusers, unet_dir)
    return DiffusersEpsModel(unet, process, shape, prediction_type=prediction, name=name, source=str(path),
                             quantize=bool(quantize))


def _load_unet(diffusers, unet_dir: Path) -> nn.Module:
    with _offline():
        try:
            return diffusers.UNet2DModel.from_pretrained(str(unet_dir), local_files_only=True).eval()
        except Exception as err:
            raise ValueError(f"{unet_dir}: cannot load the UNet2DModel weights ({type(err).__name__}: "
                             f"{str(err).splitlines()[0]})") from None


# ----------------------------------------------------------------------------- entry points
_ADAPTER_KEYS = ("shape", "process", "process_options", "name", "data", "default_feature", "flow_prediction",
                 "time_scale")
_ENTRY = re.compile(r"^(?P<module>[A-Za-z_][\w.]*|.+\.py):(?P<attr>[A-Za-z_][\w.]*)$")


def _import_target(module: str, attr: str):
    if module.endswith(".py"):
        path = Path(module)
        if not path.is_file():
            raise ValueError(f"--model {module}:{attr}: no such file {module}")
        spec = importlib.util.spec_from_file_location(f"solverzoo_user_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as err:
            raise ValueError(f"--model {module}:{attr}: importing {module} failed "
                             f"({type(err).__name__}: {err})") from None
    else:
        try:
            mod = importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"--model {module}:{attr}: cannot import module {module!r} ({err})") from None
    target = mod
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"--model {module}:{attr}: module {module!r} has no attribute {attr!r}")
        target = getattr(target, part)
    return target


def load_entry_point(spec: str, **options: Any) -> Model:
    """``module:factory``: call the factory (with the options that are not adapter options)
    and wrap what it returns (see the module docstring)."""
    m = _ENTRY.match(spec)
    if not m:
        raise ValueError(f"--model {spec!r} is not of the form module:factory or path/to/file.py:factory")
    target = _import_target(m.group("module"), m.group("attr"))
    adapter = {k: options.pop(k) for k in _ADAPTER_KEYS if k in options}
    if callable(target) and not isinstance(target, nn.Module):
        try:
            obj = target(**options)
        except TypeError as err:
            raise ValueError(f"--model {spec}: calling the factory failed ({err}); model options go to the "
                             f"factory except {', '.join(_ADAPTER_KEYS)}") from None
    else:
        if options:
            raise ValueError(f"--model {spec}: options {', '.join(sorted(options))} were given but "
                             f"{m.group('attr')!r} is not a factory")
        obj = target
    return wrap_denoiser(obj, name=adapter.pop("name", m.group("attr")), **adapter)


def wrap_denoiser(obj, name: str = "denoiser", shape=None, process: str | Process | None = None,
                  process_options: dict | None = None, data: str | None = None,
                  default_feature: str | None = None, flow_prediction: str | None = None,
                  time_scale: float | None = None) -> Model:
    """A Model as is; a module / callable D(x, sigma) wrapped in a :class:`DenoiserModel`; with
    ``flow_prediction`` a rectified-flow network net(x_t, time_scale t) wrapped in a
    :class:`FlowNetworkModel` (process ``flow`` by default)."""
    if isinstance(obj, Model):
        if shape is not None or process is not None or process_options or flow_prediction or time_scale:
            raise ValueError(f"model {name!r} is already a solverzoo Model; shape/process options do not apply")
        return obj
    if not callable(obj):
        raise ValueError(f"model {name!r}: the factory returned {type(obj).__name__}, which is neither a solverzoo "
                         f"Model nor a callable denoiser D(x, sigma)")
    if shape is None:
        c, r = getattr(obj, "img_channels", None), getattr(obj, "img_resolution", None)
        if c is None or r is None:
            raise ValueError(f"model {name!r}: cannot tell the sample shape; pass -m shape=[C,H,W] (or give the "
                             f"network img_channels and img_resolution attributes, as EDM's networks have)")
        shape = (int(c), int(r), int(r))
    if isinstance(shape, str):
        shape = json.loads(shape)
    if flow_prediction is None and time_scale is not None:
        raise ValueError(f"model {name!r}: time_scale applies to flow networks; give flow_prediction too")
    if flow_prediction is not None:
        proc = process if isinstance(process, Process) else get_process(process or "flow", **(process_options or {}))
        return FlowNetworkModel(obj, proc, shape, prediction=flow_prediction,
                                time_scale=1.0 if time_scale is None else float(time_scale), name=name, source=name,
                                data=data, default_feature=default_feature)
    if isinstance(process, Process):
        proc = process
    else:
        popts = dict(process_options or {})
        pname = process or "edm"
        if pname == "edm":
            for key in ("sigma_min", "sigma_max"):
                value = getattr(obj, key, None)
                if key not in popts and isinstance(value, (int, float)) and value > 0:
                    popts[key] = float(value)
        proc = get_process(pname, **popts)
    return DenoiserModel(obj, proc, shape, name=name, data=data, default_feature=default_feature,
                         meta={"source": name})


# ----------------------------------------------------------------------------- dispatch
def looks_like_spec(name: str) -> bool:
    """A model spec that is not a registry name: a path, a .pt file or module:factory."""
    return isinstance(name, str) and (os.sep in name or name.startswith(".") or ":" in name
                                      or name.endswith((".pt", ".pth", ".ts")) or Path(name).exists())


def load_model(spec: str, **options: Any) -> Model:
    """Load a model from a spec:

    * ``diffusers:PATH`` or a folder holding a diffusers UNet2DModel -> :func:`load_diffusers`;
    * a ``.pt`` / ``.pth`` / ``.ts`` file -> solverzoo checkpoint or TorchScript (by content);
    * ``module:factory`` / ``file.py:factory`` -> :func:`load_entry_point`.
    """
    if spec.startswith("diffusers:"):
        return load_diffusers(spec[len("diffusers:"):], **options)
    path = Path(spec)
    if path.is_dir():
        return load_diffusers(path, **options)
    if path.is_file():
        if path.suffix == ".py":
            raise ValueError(f"--model {spec}: name the factory too, e.g. {spec}:make_model")
        return load_solverzoo_file(path, **options)
    m = _ENTRY.match(spec)
    if m and not Path(m.group("module")).suffix == ".pt":
        return load_entry_point(spec, **options)
    raise ValueError(f"--model {spec}: no such file or folder (give a registered model name, a diffusers folder, "
                     f"a .pt checkpoint / TorchScript file, or module:factory)")
