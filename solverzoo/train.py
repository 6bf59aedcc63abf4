"""``solverzoo train``: a small UNet denoiser trained with EDM (or FDM) preconditioning.

The recipe is EDM's (Karras et al. 2022, Sec. 5 and Table 1; NVlabs/edm ``training/loss.py``):

* sigma ~ log-normal, ln sigma ~ N(P_mean, P_std^2) with P_mean = -1.2, P_std = 1.2 (``edm``);
  VP: sigma = sigma_vp(t), t ~ U(epsilon_t, 1); VE: ln sigma ~ U(ln 0.02, ln 100);
* loss weight lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 (``edm``), 1 / sigma^2 (VP, VE);
* ``flow`` (rectified flow, conditional flow matching: Lipman et al. 2023, Eq. 23; Liu et al. 2023;
  SD3, Esser et al. 2024, Sec. 3.1 and Eq. 19): x_t = (1 - t) y + t n with t logit-normal,
  logit t ~ N(flow_logit_mean, flow_logit_std^2) (SD3's ``lognorm(0.00, 1.00)``), i.e. the EDM-frame
  sigma = t / (1 - t) = exp(logit t) is log-normal; the velocity network's loss |F(x_t, t) - (n - y)|^2
  is the denoiser loss with lambda(sigma) = 1 / t^2 = (1 + sigma)^2 / sigma^2 (unet.Precond ``flow``);
* loss = lambda(sigma) |D(y + sigma n; sigma) - y|^2, averaged over pixels and the batch;
* Adam, learning rate ramped up linearly over ``lr_rampup`` iterations, EMA of the weights with
  a half-life in images (``ema_halflife_kimg``, ramped as ``min(halflife, ratio * images seen)``).

FDM (Wu et al. 2023, sail-sg/FDM ``training/loss.py``): ``fdm_edm`` / ``fdm_vp`` / ``fdm_ve``
train the same losses with the FDM preconditioner (c_in = s(sigma)) and, with ``warmup_ite``,
the loss-weight warm-up: the weights are clamped at ``5 * 100^(k / warmup_ite)`` at the k-th
iteration (k = 0, 1, ...) while that clamp is below 500, and not clamped afterwards (the official
loss object multiplies its clamp by ``100^(1/warmup_ite)`` per call; here the clamp is computed from
the iteration number, so a resumed run uses the same clamps).

Class-conditional training (``labels=True``, digits only: the data's labels 0..9): the UNet gets a
label embedding and a learned null label; each example's label is replaced by the null label with
probability ``label_dropout`` (Ho & Salimans 2022, Algorithm 1, p_uncond), so one network is both
the conditional denoiser D(x; sigma, c) and the unconditional one D(x; sigma) that classifier-free
guidance combines.

Randomness: iteration ``k`` draws its batch, sigmas, noise and dropout masks from generators
seeded by (seed, k).  With the optimizer and EMA state in ``training-state.pt``, a run resumed
from a checkpoint continues exactly as the uninterrupted run would.

Outputs in ``--out``: ``model.pt`` (the EMA denoiser, a solverzoo checkpoint: ``--model
OUT/model.pt``), ``snapshots/model-XXXXXX.pt`` every ``checkpoint_every`` iterations (for
FD-versus-training-steps curves), ``training-state.pt`` (everything ``--resume`` needs) and
``log.jsonl`` (loss per logged iteration).

Held-out denoising loss (``heldout > 0``): that many images, a fixed seeded subset of the data, are
never drawn for training; every ``heldout_every`` iterations the EMA model's loss on them is
evaluated with the training loss and weight, at sigmas and noise drawn once from generators seeded
by (seed, 2^31) (the same draws at every evaluation, so successive values differ only by the
model).  It is written to ``log.jsonl`` (``heldout_loss``) and to the checkpoints' meta
(``heldout``: the curve, the relative improvement over the last ``CONVERGENCE_WINDOW`` iterations
and whether it is below ``CONVERGENCE_TOLERANCE``: the run has flattened).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .data import DIGITS, load_dataset, load_digits
from .io import atomic_write, atomic_write_json
from .models.learned import build_denoiser, save_checkpoint
from .models.unet import NULL_LABEL, PRECONDS, Precond, PrecondConfig, UNetConfig, count_parameters

__all__ = ["TrainConfig", "TrainResult", "train", "loss_sigma_weight", "warmup_clamp", "STATE_FILE", "MODEL_FILE",
           "heldout_split", "heldout_loss", "convergence", "CONVERGENCE_WINDOW", "CONVERGENCE_TOLERANCE"]

STATE_FILE = "training-state.pt"
MODEL_FILE = "model.pt"
STATE_FORMAT = "solverzoo.train-state/1"
# training options that may change when a run is resumed (the others must match)
RESUMABLE = ("iterations", "checkpoint_every", "log_every", "heldout_every")
#: the convergence criterion of the held-out loss: it improved by less than CONVERGENCE_TOLERANCE
#: (relative) over the last CONVERGENCE_WINDOW iterations
CONVERGENCE_WINDOW = 1000
CONVERGENCE_TOLERANCE = 0.01
HELDOUT_BATCH = 256  # images per forward pass of the held-out evaluation


@dataclass
class TrainConfig:
    data: str = DIGITS
    precond: str = "edm"
    fdm_multiplier: float = 2.0  # sail-sg/FDM train.py's default
    warmup_ite: int | None = None
    iterations: int = 3000
    batch_size: int = 128
    lr: float = 2e-3
    lr_rampup: int = 200
    ema_halflife_kimg: float = 50.0
    ema_rampup_ratio: float = 0.05
    sigma_data: float = 0.5
    P_mean: float = -1.2
    P_std: float = 1.2
    flow_logit_mean: float = 0.0  # flow: logit t ~ N(mean, std^2) (SD3 Sec. 3.1, lognorm(0, 1))
    flow_logit_std: float = 1.0
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    unet: dict = field(default_factory=dict)  # UNetConfig overrides (resolution / channels come from the data)
    labels: bool = False  # class-conditional on the data's labels (digits)
    label_dropout: float = 0.1  # probability of the null label per example (with labels)
    heldout: int = 0  # images held out of training for the held-out loss (0: none, every image trains)
    heldout_every: int = 100  # iterations between held-out evaluations

    def __post_init__(self):
        if self.precond not in PRECONDS:
            raise ValueError(f"unknown --precond {self.precond!r}; choose one of {', '.join(PRECONDS)}")
        if self.warmup_ite is not None and int(self.warmup_ite) < 1:
            raise ValueError(f"warmup_ite must be >= 1, got {self.warmup_ite}")
        for name in ("iterations", "batch_size", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.flow_logit_std > 0:
            raise ValueError(f"flow_logit_std must be > 0, got {self.flow_logit_std}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.fdm_multiplier > 0:
            raise ValueError(f"fdm_multiplier must be > 0, got {self.fdm_multiplier}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1), got {self.label_dropout}")
        if self.labels and self.data != DIGITS:
            raise ValueError(f"--labels needs labelled data; only 'digits' has labels, got --data {self.data!r}")
        if int(self.heldout) < 0 or int(self.heldout_every) < 1:
            raise ValueError(f"heldout must be >= 0 and heldout_every >= 1, got {self.heldout}, {self.heldout_every}")
        if self.lr_rampup < 0 or self.ema_halflife_kimg < 0 or self.ema_rampup_ratio < 0:
            raise ValueError("lr_rampup, ema_halflife_kimg and ema_rampup_ratio must be >= 0")

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


@dataclass
class TrainResult:
    out: Path
    iterations: int
    seconds: float
    final_loss: float | None
    parameters: int
    model_path: Path
    flattened: bool = False  # the last held-out evaluation met the convergence criterion


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0]) >> 1


def warmup_clamp(iteration: int, warmup_ite: int | None) -> float | None:
    """FDM's loss-weight clamp at (0-based) iteration k: 5 * 100^(k / warmup_ite) while below 500."""
    if not warmup_ite:
        return None
    clamp = 5.0 * 100.0 ** (iteration / warmup_ite)
    return clamp if clamp < 500.0 else None


def loss_sigma_weight(config: TrainConfig, denoiser: Precond, batch: int, gen: torch.Generator,
                      iteration: int) -> tuple[Tensor, Tensor]:
    """sigma (B, 1, 1, 1) and the loss weight lambda(sigma) of one batch (see the module docstring)."""
    base = config.precond.replace("fdm_", "")
    if base == "flow":  # sigma = t / (1 - t) = exp(logit t)
        sigma = (torch.randn(batch, 1, 1, 1, generator=gen) * config.flow_logit_std + config.flow_logit_mean).exp()
        weight = ((1 + sigma) / sigma) ** 2
    elif base == "edm":
        sigma = (torch.randn(batch, 1, 1, 1, generator=gen) * config.P_std + config.P_mean).exp()
        sd = config.sigma_data
        weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    elif base == "vp":
        eps_t, beta_min, beta_d = 1e-5, denoiser.beta_min, denoiser.beta_d
        t = 1 + torch.rand(batch, 1, 1, 1, generator=gen) * (eps_t - 1)
        sigma = ((0.5 * beta_d * t**2 + beta_min * t).exp() - 1).sqrt()
        weight = 1 / sigma**2
    else:  # ve
        lo, hi = denoiser.sigma_min, denoiser.sigma_max
        sigma = lo * (hi / lo) ** torch.rand(batch, 1, 1, 1, generator=gen)
        weight = 1 / sigma**2
    clamp = warmup_clamp(iteration, config.warmup_ite)
    if clamp is not None:
        weight = weight.clamp(max=clamp)
    return sigma, weight


def heldout_split(n: int, heldout: int, seed: int) -> tuple[Tensor, Tensor]:
    """(held-out indices, training indices) of ``n`` images: the first ``heldout`` of a permutation
    seeded by (seed, 2^31), and the rest (both sorted).  ``heldout = 0``: none, and every image trains."""
    if heldout == 0:
        return torch.zeros(0, dtype=torch.int64), torch.arange(n)
    if not 0 < heldout <= n // 2:
        raise ValueError(f"--heldout {heldout}: hold out between 1 and half of the {n} training images")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_seed(seed, 1 << 31)))
    return perm[:heldout].sort().values, perm[heldout:].sort().values


def _heldout_draws(config: TrainConfig, denoiser: Precond, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The fixed sigma, weight and noise of the held-out evaluation: drawn once, from the training
    distribution of sigma and weight, by a generator seeded by (seed, 2^31, 1); past the FDM warm-up
    (no clamp)."""
    gen = torch.Generator().manual_seed(_seed(config.seed, 1 << 31, 1))
    sigma, weight = loss_sigma_weight(config, denoiser, len(images), gen, int(config.warmup_ite or 0))
    noise = torch.randn(images.shape, generator=gen) * sigma
    return sigma, weight, noise


def heldout_loss(denoiser: Precond, images: Tensor, sigma: Tensor, weight: Tensor, noise: Tensor,
                 labels: Tensor | None = None, batch: int = HELDOUT_BATCH) -> float:
    """The training loss ``mean(lambda(sigma) |D(y + n; sigma) - y|^2)`` of ``denoiser`` (in eval
    mode: no dropout) on the fixed held-out images, noise and sigmas."""
    was_training = denoiser.training
    denoiser.eval()
    total = 0.0
    with torch.no_grad():
        for lo in range(0, len(images), batch):
            y, s = images[lo:lo + batch], sigma[lo:lo + batch]
            args = (y + noise[lo:lo + batch], s.flatten()) + (() if labels is None else (labels[lo:lo + batch],))
            total += float((weight[lo:lo + batch] * (denoiser(*args) - y) ** 2).sum(dtype=torch.float64))
    denoiser.train(was_training)
    return total / images.numel()


def convergence(curve: list, window: int = CONVERGENCE_WINDOW, tolerance: float = CONVERGENCE_TOLERANCE) -> dict:
    """The convergence criterion on a held-out curve ``[[iteration, loss], ...]``: the relative
    improvement ``(L(k0) - L(k)) / L(k0)`` from the last evaluation ``k0 <= k - window`` to the latest
    ``k``; ``flattened`` when it is below ``tolerance`` (None until the curve spans ``window``)."""
    out = {"criterion": f"held-out loss improved by < {100 * tolerance:g}% over the last {window} iterations",
           "improvement": None, "over": None, "flattened": None}
    if not curve:
        return out
    k, loss = curve[-1]
    earlier = [(i, v) for i, v in curve if i <= k - window]
    if earlier:
        k0, loss0 = earlier[-1]
        out["improvement"] = (loss0 - loss) / loss0
        out["over"] = [k0, k]
        out["flattened"] = out["improvement"] < tolerance
    return out


def _new_state(config: TrainConfig, data: Tensor, num_classes: int = 0) -> dict:
    c, h, w = data.shape[1:]
    if h != w:
        raise ValueError(f"the UNet needs square images, got {h} x {w}")
    ucfg = UNetConfig(**{"resolution": h, "in_channels": c, "num_classes": num_classes, **config.unet})
    pcfg = PrecondConfig(kind=config.precond, sigma_data=config.sigma_data, fdm_multiplier=config.fdm_multiplier)
    torch.manual_seed(_seed(config.seed, 1 << 30))
    net = build_denoiser(ucfg, pcfg)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    return {"net": net, "ema": ema, "opt": opt, "iteration": 0, "images": 0, "seconds": 0.0, "heldout": []}


def _save_state(out: Path, config: TrainConfig, state: dict) -> None:
    payload = {
        "format": STATE_FORMAT,
        "config": config.as_dict(),
        "unet": state["net"].net.config.as_dict(),
        "precond": state["net"].pconfig.as_dict(),
        "net": state["net"].state_dict(),
        "ema": state["ema"].state_dict(),
        "opt": state["opt"].state_dict(),
        "iteration": state["iteration"],
        "images": state["images"],
        "seconds": state["seconds"],
        "heldout": state["heldout"],
    }
    atomic_write(out / STATE_FILE, lambda tmp: torch.save(payload, tmp))


def _load_state(out: Path, config: TrainConfig, data: Tensor, num_classes: int = 0) -> dict:
    path = out / STATE_FILE
    if not path.is_file():
        raise ValueError(f"--resume: {path} does not exist (nothing to resume); run without --resume")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged file
        raise ValueError(f"--resume: {path} is not a readable training state (damaged or truncated: "
                         f"{type(err).__name__}); resume from a copy, or start again in another --out") from None
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise ValueError(f"--resume: {path} is not a solverzoo training state")
    saved = {**TrainConfig().as_dict(), **payload["config"]}  # options added since default
    now = config.as_dict()
    diff = sorted(k for k in now if k not in RESUMABLE and saved.get(k) != now[k])
    if diff:
        raise ValueError(f"--resume: {path} was made with different options ({', '.join(diff)}: "
                         f"{', '.join(f'{saved.get(k)!r} -> {now[k]!r}' for k in diff)}); use the same options "
                         f"(only {', '.join(RESUMABLE)} may change) or another --out")
    state = _new_state(config, data, num_classes)
    try:
        state["net"].load_state_dict(payload["net"])
        state["ema"].load_state_dict(payload["ema"])
        state["opt"].load_state_dict(payload["opt"])
        for key in ("iteration", "images", "seconds"):
            state[key] = payload[key]
    except (KeyError, RuntimeError, ValueError) as err:
        raise ValueError(f"--resume: {path} does not hold a complete state for this network "
                         f"({type(err).__name__}: {str(err)[:200]}); start again in another --out") from None
    state["heldout"] = [list(p) for p in payload.get("heldout", [])]
    if state["iteration"] >= config.iterations:
        raise ValueError(f"--resume: {path} is already at iteration {state['iteration']} (--iterations "
                         f"{config.iterations}): nothing to do; raise --iterations to train on")
    return state


def _meta(config: TrainConfig, state: dict, loss: float | None) -> dict:
    return {
        "name": "unet",
        "data": config.data,
        "default_feature": "digits_classifier" if config.data == DIGITS else None,
        "iterations": state["iteration"],
        "images_seen": state["images"],
        "train_seconds": round(state["seconds"], 1),
        "loss": loss,
        "train_config": config.as_dict(),
        "num_classes": state["net"].num_classes,
        "parameters": count_parameters(state["net"]),
        **({"heldout": {"images": config.heldout, "every": config.heldout_every, "curve": state["heldout"],
                        **convergence(state["heldout"])}} if config.heldout else {}),
    }


def train(config: TrainConfig, out: str | Path, resume: bool = False,
          on_step: Callable[[int, float], None] | None = None, data: Tensor | None = None,
          stop_after: int | None = None, labels: Tensor | None = None,
          until_flattened: bool = False) -> TrainResult:
    """Train (or resume) a denoiser; see the module docstring for the outputs in ``out``.

    With ``config.labels``, ``labels`` are the int64 class labels of ``data`` (default: the
    digits labels when ``data`` is not given).

    ``on_step(iteration, loss)`` is called after every iteration.  ``stop_after`` stops the run
    after that many iterations of this call (a checkpoint is written first), e.g. to test resume.
    ``until_flattened`` stops the run at the first held-out evaluation that meets the convergence
    criterion (:func:`convergence`; needs ``config.heldout``), after writing its checkpoint.
    """
    out = Path(out)
    if until_flattened and not config.heldout:
        raise ValueError("until_flattened stops on the held-out loss: give heldout > 0 images to hold out")
    if config.labels and data is None:
        data, labels = load_digits(with_labels=True)
    data = load_dataset(config.data) if data is None else data
    if data.ndim != 4:
        raise ValueError(f"training data must be a batch of images (N, C, H, W), got shape {tuple(data.shape)}")
    num_classes = 0
    if config.labels:
        if labels is None or labels.shape != (len(data),) or labels.is_floating_point() or int(labels.min()) < 0:
            raise ValueError("class-conditional training needs one int label >= 0 per image")
        num_classes = int(labels.max()) + 1
    if resume:
        state = _load_state(out, config, data, num_classes)
    else:
        if (out / STATE_FILE).exists() or (out / MODEL_FILE).exists():
            raise ValueError(f"{out} already holds a training run; pass --resume to continue it, or choose "
                             f"another --out")
        state = _new_state(config, data, num_classes)
    out.mkdir(parents=True, exist_ok=True)
    (out / "snapshots").mkdir(exist_ok=True)
    atomic_write_json(out / "config.json", config.as_dict())

    net, ema, opt = state["net"], state["ema"], state["opt"]
    net.train()
    held_index, train_index = heldout_split(len(data), config.heldout, config.seed)
    if config.heldout:
        held = data[held_index]
        held_labels = labels[held_index] if num_classes else None
        held_draws = _heldout_draws(config, net, held)
    n_data, batch = len(train_index), config.batch_size
    log = open(out / "log.jsonl", "a")
    last_loss: float | None = None
    window: list[float] = []
    start = time.perf_counter()
    base_seconds = state["seconds"]
    done_here = 0
    flattened = False
    try:
        while state["iteration"] < config.iterations:
            k = state["iteration"]
            gen = torch.Generator().manual_seed(_seed(config.seed, k, 0))
            torch.manual_seed(_seed(config.seed, k, 1))  # dropout masks
            index = torch.randint(n_data, (batch,), generator=gen)
            if config.heldout:  # the held-out images are never drawn
                index = train_index[index]
            y = data[index]
            sigma, weight = loss_sigma_weight(config, net, batch, gen, k)
            noise = torch.randn(y.shape, generator=gen) * sigma
            if num_classes:  # drawn after the unconditional draws: unconditional runs are unchanged
                c = labels[index].clone()
                c[torch.rand(batch, generator=gen) < config.label_dropout] = NULL_LABEL
                denoised = net(y + noise, sigma.flatten(), c)
            else:
                denoised = net(y + noise, sigma.flatten())
            loss = (weight * (denoised - y) ** 2).mean()
            for group in opt.param_groups:
                group["lr"] = config.lr * min(1.0, (k + 1) / max(config.lr_rampup, 1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for p in net.parameters():
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)
            opt.step()
            state["images"] += batch
            halflife = config.ema_halflife_kimg * 1000
            if config.ema_rampup_ratio > 0:
                halflife = min(halflife, state["images"] * config.ema_rampup_ratio)
            beta = 0.5 ** (batch / max(halflife, 1e-8))
            with torch.no_grad():
                for p_ema, p in zip(ema.parameters(), net.parameters()):
                    p_ema.copy_(p.detach().lerp(p_ema, beta))
                for b_ema, b in zip(ema.buffers(), net.buffers()):
                    b_ema.copy_(b)
            state["iteration"] = k + 1
            done_here += 1
            value = float(loss.detach())
            window.append(value)
            state["seconds"] = base_seconds + time.perf_counter() - start
            if state["iteration"] % config.log_every == 0 or state["iteration"] == config.iterations:
                last_loss = sum(window) / len(window)
                log.write(json.dumps({"iteration": state["iteration"], "loss": last_loss,
                                      "seconds": round(state["seconds"], 2)}) + "\n")
                log.flush()
                window = []
            finished = state["iteration"] == config.iterations
            if config.heldout and (state["iteration"] % config.heldout_every == 0 or finished):
                value_held = heldout_loss(ema, held, *held_draws, labels=held_labels)
                state["heldout"].append([state["iteration"], value_held])
                trend = convergence(state["heldout"])
                log.write(json.dumps({"iteration": state["iteration"], "heldout_loss": value_held,
                                      "improvement": trend["improvement"], "over": trend["over"],
                                      "flattened": trend["flattened"]}) + "\n")
                log.flush()
                flattened = bool(trend["flattened"])
            if on_step is not None:
                on_step(state["iteration"], value)
            finished = state["iteration"] == config.iterations
            stopping = (stop_after is not None and done_here >= stop_after) or (until_flattened and flattened)
            if state["iteration"] % config.checkpoint_every == 0 or finished or stopping:
                meta = _meta(config, state, last_loss)
                save_checkpoint(out / "snapshots" / f"model-{state['iteration']:06d}.pt", ema, meta)
                save_checkpoint(out / MODEL_FILE, ema, meta)
                _save_state(out, config, state)
            if stopping:
                break
    finally:
        log.close()
    return TrainResult(out=out, iterations=state["iteration"], seconds=state["seconds"], final_loss=last_loss,
                       parameters=count_parameters(net), model_path=out / MODEL_FILE, flattened=flattened)
