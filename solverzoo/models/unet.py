"""A compact UNet denoiser and the preconditioners that turn it into D(x_hat; sigma).

The network ``F(x, c_noise)`` is a small DDPM-style UNet (residual blocks with a noise
embedding, one attention layer at the lowest resolution, skip connections between the
two halves).  :class:`Precond` wraps it into a denoiser in unscaled units,

    D(x_hat; sigma[, c]) = c_skip(sigma) x_hat + c_out(sigma) F(c_in(sigma) x_hat, c_noise(sigma)[, c]),

With ``num_classes = K > 0`` the network is class-conditional: a learned embedding of the label
``c`` in 0..K-1 is added to the noise embedding (as EDM's ``class_emb`` / DDPM++ conditioning), and
one more learned row, the null label (``c = -1`` or no labels), is the unconditional model that
classifier-free guidance needs (Ho & Salimans 2022, Sec. 3.2: trained by label dropout).

with the coefficients of Karras et al. 2022 (EDM, Table 1) for the ``edm``, ``vp`` and
``ve`` parameterisations, and the FDM variants of Wu et al. 2023 (sail-sg/FDM,
``training/networks.py``): ``fdm_edm`` / ``fdm_vp`` / ``fdm_ve`` keep c_skip, c_out and
c_noise of their base and set ``c_in = s(sigma) = exp(-m B) (1 + m B)``, the FDM scale
(``solverzoo.processes._FDMScale``).  The process a preconditioner trains under is
:meth:`Precond.process`.

Everything is written for tracing: :func:`torch.jit.trace` of a :class:`Precond` gives a
TorchScript denoiser that the checkpoint adapter loads back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..processes import Process, get_process
from .base import NULL_LABEL

__all__ = ["UNetConfig", "UNet", "NULL_LABEL", "Precond", "PRECONDS", "PRECOND_PROCESS", "count_parameters"]


@dataclass
class UNetConfig:
    """Architecture of :class:`UNet` (the defaults are the shipped 8 x 8 digits model)."""

    resolution: int = 8
    in_channels: int = 1
    channels: int = 16  # width at full resolution
    channel_mult: tuple[int, ...] = (1, 2, 2)  # one level per entry; each level after the first halves H, W
    num_res_blocks: int = 1
    attn_levels: tuple[int, ...] = (2,)  # levels (0-based) with a self-attention layer after each res block
    emb_channels: int = 128
    noise_channels: int = 32  # sinusoidal features of c_noise
    dropout: float = 0.1
    num_classes: int = 0  # > 0: class-conditional (labels 0..K-1, and -1 = the learned null label)

    def __post_init__(self):
        self.channel_mult = tuple(int(c) for c in self.channel_mult)
        self.attn_levels = tuple(int(a) for a in self.attn_levels)
        levels = len(self.channel_mult)
        if levels < 1 or self.resolution % (2 ** (levels - 1)) != 0:
            raise ValueError(f"resolution {self.resolution} cannot be halved {levels - 1} times")
        if self.channels % 8 != 0:
            raise ValueError(f"channels must be a multiple of 8 (group norm), got {self.channels}")
        self.num_classes = int(self.num_classes)
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: unconditional), got {self.num_classes}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["channel_mult"], d["attn_levels"] = list(self.channel_mult), list(self.attn_levels)
        return d


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch // 4) if ch >= 8 else 1, ch, eps=1e-6)


class NoiseEmbedding(nn.Module):
    """sin / cos of c_noise at geometric frequencies 1 .. 2^6 (times pi), then an MLP."""

    def __init__(self, noise_channels: int, emb_channels: int):
        super().__init__()
        half = noise_channels // 2
        self.register_buffer("freqs", math.pi * 2.0 ** torch.linspace(0, 6, half), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels))

    def forward(self, c_noise: Tensor) -> Tensor:
        arg = c_noise.reshape(-1, 1) * self.freqs.to(c_noise.dtype)
        return self.mlp(torch.cat([arg.sin(), arg.cos()], dim=1))



class LabelEmbedding(nn.Module):
    """One learned vector per class and one for the null label (row K), added to the noise embedding."""

    def __init__(self, num_classes: int, emb_channels: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, emb_channels)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, labels: Tensor | None, batch: int, device: torch.device) -> Tensor:
        if labels is None:
            labels = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        else:
            labels = labels.to(device=device, dtype=torch.long).reshape(-1)
            labels = torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels)
        return self.table(labels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, adaptive scale/shift from the embedding, GroupNorm-SiLU-dropout-conv,
    plus a (1x1-projected) skip; the sum is scaled by sqrt(1/2) (EDM's skip_scale)."""

    def __init__(self, cin: int, cout: int, emb: int, dropout: float):
        super().__init__()
        self.norm0, self.conv0 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb, 2 * cout)
        self.norm1, self.conv1 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv1.weight)
        nn.init.zeros_(self.conv1.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        h = self.conv1(self.dropout(h))
        return (h + self.skip(x)) * math.sqrt(0.5)


class Attention(nn.Module):
    """Single-head self-attention over the H x W positions, residual, zero-initialised output."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm, self.qkv, self.proj = _norm(ch), nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        attn = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(c), dim=-1)
        out = torch.einsum("bij,bcj->bci", attn, v).reshape(b, c, h, w)
        return (x + self.proj(out)) * math.sqrt(0.5)


class UNet(nn.Module):
    """F(x, c_noise[, class_labels]): the raw network (no preconditioning).  ``class_labels``
    (B,) int64 in 0..K-1, or -1 for the null label; None: every row null (K > 0) or ignored (K = 0)."""

    def __init__(self, config: UNetConfig | None = None, **overrides):
        super().__init__()
        if config is None:
            config = UNetConfig(**overrides)
        elif overrides:
            config = UNetConfig(**{**config.as_dict(), **overrides})
        self.config = config
        c = config
        self.embed = NoiseEmbedding(c.noise_channels, c.emb_channels)
        self.label_embed = LabelEmbedding(c.num_classes, c.emb_channels) if c.num_classes > 0 else None
        self.conv_in = nn.Conv2d(c.in_channels, c.channels, 3, padding=1)
        widths = [c.channels * m for m in c.channel_mult]
        self.down = nn.ModuleList()
        skips = [c.channels]
        ch = c.channels
        for level, width in enumerate(widths):
            if level > 0:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
            for _ in range(c.num_res_blocks):
                self.down.append(ResBlock(ch, width, c.emb_channels, c.dropout))
                ch = width
                if level in c.attn_levels:
                    self.down.append(Attention(ch))
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, c.emb_channels, c.dropout), Attention(ch),
                                  ResBlock(ch, ch, c.emb_channels, c.dropout)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            for _ in range(c.num_res_blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), width, c.emb_channels, c.dropout))
                ch = width
                if level in c.attn_levels:
                    self.up.append(Attention(ch))
            if level > 0:
                self.up.append(nn.ConvTranspose2d(ch, ch, 2, stride=2))  # 2x upsampling, cheap on the CPU
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, c.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        emb = self.embed(c_noise)
        if self.label_embed is not None:
            emb = emb + self.label_embed(class_labels, x.shape[0], x.device)
        elif class_labels is not None:
            raise ValueError("class labels given to an unconditional UNet (num_classes = 0)")
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
                hs.append(h)
            elif isinstance(layer, Attention):
                h = layer(h)
                hs[-1] = h
            else:  # downsampling conv
                h = layer(h)
                hs.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))


# ----------------------------------------------------------------------------- preconditioning
PRECONDS = ("edm", "vp", "ve", "fdm_edm", "fdm_vp", "fdm_ve", "flow")

#: process name and options for each parameterisation (the network's noise range)
PRECOND_PROCESS: dict[str, tuple[str, dict]] = {
    "edm": ("edm", {"sigma_min": 0.002, "sigma_max": 80.0}),
    "vp": ("vp", {"beta_min": 0.1, "beta_max": 20.0, "t_min": 1e-5}),
    "ve": ("ve", {"sigma_min": 0.02, "sigma_max": 100.0, "t_min": 1e-5}),
    "fdm_edm": ("fdm-edm", {"sigma_min": 0.002, "sigma_max": 80.0}),
    "fdm_vp": ("fdm-vp", {"beta_min": 0.1, "beta_max": 20.0, "t_min": 1e-5}),
    "fdm_ve": ("fdm-ve", {"sigma_min": 0.02, "sigma_max": 100.0, "t_min": 1e-5}),
    "flow": ("flow", {}),
}


@dataclass
class PrecondConfig:
    kind: str = "edm"
    sigma_data: float = 0.5
    fdm_multiplier: float = 1.0
    M: int = 1000  # VP: c_noise = (M - 1) t(sigma), the DDPM timestep scale

    def __post_init__(self):
        if self.kind not in PRECONDS:
            raise ValueError(f"unknown preconditioning {self.kind!r}; choose one of {', '.join(PRECONDS)}")
        if not self.sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {self.sigma_data}")
        if not self.fdm_multiplier > 0:
            raise ValueError(f"fdm_multiplier must be > 0, got {self.fdm_multiplier}")

    def as_dict(self) -> dict:
        return asdict(self)


class Precond(nn.Module):
    """D(x_hat; sigma) from a raw network F (EDM Table 1 / FDM's ``FDM_*Precond``).

    ============  =====================  =======================  ========================  ===================
    kind          c_skip                 c_out                    c_in                      c_noise
    ============  =====================  =======================  ========================  ===================
    edm           sd^2 / (sigma^2+sd^2)  sigma sd / sqrt(.. )     1 / sqrt(sigma^2+sd^2)    log(sigma) / 4
    vp            1                      -sigma                   1 / sqrt(sigma^2 + 1)     (M - 1) t(sigma)
    ve            1                      sigma                    1                         log(sigma / 2)
    fdm_*         as the base            as the base              s(sigma) (FDM scale)      as the base
    flow          1 - t                  -t                       1 - t                     t
    ============  =====================  =======================  ========================  ===================

    ``flow`` is a velocity network on rectified flow (solverzoo.processes.FlowProcess, t = sigma / (1 + sigma)):
    F(x_t, t) predicts v = n - x0 at x_t = (1 - t) x_hat, and D = x_t - t F (Liu et al. 2023; SD3, Esser et
    al. 2024, Eq. 3), so |D - x0|^2 = t^2 |F - v|^2.

    FDM's official ``FDM_VEPrecond`` ignores the multiplier (m = 1); here it is honoured, as in
    ``solverzoo.processes.FDMVEProcess`` (m = 1 reproduces the official VE-FDM).
    """

    def __init__(self, net: nn.Module, config: PrecondConfig | None = None, **options):
        super().__init__()
        self.net = net
        self.pconfig = config if config is not None else PrecondConfig(**options)
        self.kind = self.pconfig.kind
        name, popts = PRECOND_PROCESS[self.kind]
        if self.kind.startswith("fdm"):
            popts = {**popts, "multiplier": self.pconfig.fdm_multiplier}
        self._process_name, self._process_options = name, popts
        proc = get_process(name, **popts)
        self.sigma_min, self.sigma_max = proc.sigma_min, proc.sigma_max
        self.beta_min, self.beta_d = 0.1, 19.9  # VP schedule and FDM's B(tau) (both EDM/FDM defaults)

    def process(self) -> Process:
        return get_process(self._process_name, **self._process_options)

    def fdm_scale(self, sigma: Tensor) -> Tensor:
        """s(sigma) = exp(-m B) (1 + m B), B = beta_min tau + beta_d tau^2 / 2, tau = (sigma - smin)/(smax - smin)."""
        tau = (sigma - self.sigma_min) / (self.sigma_max - self.sigma_min)
        u = self.pconfig.fdm_multiplier * (self.beta_min * tau + 0.5 * self.beta_d * tau**2)
        return torch.exp(-u) * (1 + u)

    def coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        sd = self.pconfig.sigma_data
        base = self.kind.replace("fdm_", "")
        if base == "flow":
            t = sigma / (1 + sigma)
            one_minus_t = 1 / (1 + sigma)
            return one_minus_t, -t, one_minus_t, t
        if base == "edm":
            c_skip = sd**2 / (sigma**2 + sd**2)
            c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
            c_in = 1 / (sigma**2 + sd**2).sqrt()
            c_noise = sigma.log() / 4
        elif base == "vp":
            c_skip = torch.ones_like(sigma)
            c_out = -sigma
            c_in = 1 / (sigma**2 + 1).sqrt()
            t = ((self.beta_min**2 + 2 * self.beta_d * torch.log1p(sigma**2)).sqrt() - self.beta_min) / self.beta_d
            c_noise = (self.pconfig.M - 1) * t
        else:  # ve
            c_skip = torch.ones_like(sigma)
            c_out = sigma
            c_in = torch.ones_like(sigma)
            c_noise = (0.5 * sigma).log()
        if self.kind.startswith("fdm"):
            c_in = self.fdm_scale(sigma)
        return c_skip, c_out, c_in, c_noise

    @property
    def num_classes(self) -> int:
        return self.net.config.num_classes

    def forward(self, x: Tensor, sigma: Tensor, class_labels: Tensor | None = None) -> Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        F_x = self.net(c_in * x, c_noise.flatten(), class_labels)
        return (c_skip * x + c_out * F_x).to(dtype)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
