"""Diffusion processes in the EDM frame ``x_t = s(t) * (x0 + sigma(t) * n)``.

Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models", Sec. 4 and Eq. (4)/(6): any diffusion process whose marginals are Gaussian
around a scaled data point is fully described by the scale ``s(t)`` and the noise
level ``sigma(t)``.  The drift and diffusion of the forward SDE follow from them:

    f(t) = s'(t) / s(t),          g(t)^2 = 2 s(t)^2 sigma(t) sigma'(t).

Solvers only talk to a process through this interface, so one solver runs on VE,
VP, EDM, the FDM momentum processes and rectified flow (``flow``) alike.  All methods take and return float64
tensors (schedules are computed once per run on the CPU, in double precision).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .registry import Registry

__all__ = [
    "Process",
    "VEProcess",
    "VPProcess",
    "EDMProcess",
    "FDMEDMProcess",
    "FDMVPProcess",
    "FDMVEProcess",
    "DiscreteVPProcess",
    "FlowProcess",
    "flow_time_shift",
    "flow_inverse_time_shift",
    "flow_dynamic_shift_mu",
    "get_process",
    "list_processes",
    "PROCESSES",
]


def _as_tensor(t: Tensor | float) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


class Process:
    """Base class: subclasses define ``sigma(t)``, ``s(t)``, their derivatives and ``t_of_sigma``.

    Attributes:
        name: registry name (``"ve"``, ``"vp"``, ``"edm"``, ``"fdm-edm"``...).
        sigma_min, sigma_max: noise range the model was trained on.
        t_min, t_max: time interval solvers integrate over by default (``t_min`` is the
            score_sde ``eps``; sampling ends there, not at ``t = 0``).
        native_grid: the step grid the process is usually sampled on.
    """

    name: str = "process"
    native_grid: str = "karras"
    # score_sde's prior for VP is N(0, I) in x (data variance included); VE/EDM start at sigma_max * z.
    prior_includes_data: bool = False
    sigma_min: float
    sigma_max: float
    t_min: float
    t_max: float

    # --- to be provided by subclasses -------------------------------------------------
    def sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def sigma_deriv(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def t_of_sigma(self, sigma: Tensor) -> Tensor:
        raise NotImplementedError

    def s(self, t: Tensor) -> Tensor:
        return torch.ones_like(_as_tensor(t))

    def s_deriv(self, t: Tensor) -> Tensor:
        return torch.zeros_like(_as_tensor(t))

    # --- derived quantities -------------------------------------------------------------
    def s_of_sigma(self, sigma: Tensor) -> Tensor:
        return self.s(self.t_of_sigma(_as_tensor(sigma)))

    def lambda_(self, t: Tensor) -> Tensor:
        """Half log-SNR ``lambda = -log sigma`` (sigma of the unscaled variable x/s)."""
        return -torch.log(self.sigma(_as_tensor(t)))

    def drift_coef(self, t: Tensor) -> Tensor:
        """f(t) = s'/s of the forward SDE dx = f x dt + g dw."""
        t = _as_tensor(t)
        return self.s_deriv(t) / self.s(t)

    def diffusion_sq(self, t: Tensor) -> Tensor:
        """g(t)^2 = 2 s^2 sigma sigma' of the forward SDE."""
        t = _as_tensor(t)
        return 2 * self.s(t) ** 2 * self.sigma(t) * self.sigma_deriv(t)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "t_min": self.t_min,
            "t_max": self.t_max,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.describe().items() if isinstance(v, float))
        return f"{type(self).__name__}({args})"


class VEProcess(Process):
    """Variance exploding SDE (Song et al. 2021, score_sde; NCSN++): s = 1 and
    sigma(t) = sigma_min (sigma_max / sigma_min)^t on t in [eps, 1], eps = 1e-5."""

    name = "ve"
    native_grid = "uniform_t"  # score_sde: linspace(1, eps, N) in t, i.e. geometric sigma down to sigma(eps)

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_min: float = 1e-5):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VE process needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.t_min, self.t_max = float(t_min), 1.0
        self._log_ratio = math.log(sigma_max / sigma_min)

    def sigma(self, t):
        return self.sigma_min * torch.exp(_as_tensor(t) * self._log_ratio)

    def sigma_deriv(self, t):
        return self.sigma(t) * self._log_ratio

    def t_of_sigma(self, sigma):
        return torch.log(_as_tensor(sigma) / self.sigma_min) / self._log_ratio


class VPProcess(Process):
    """Variance preserving SDE (Ho et al. 2020; Song et al. 2021) with linear
    beta(t) = beta_min + t (beta_max - beta_min):

        s(t) = alpha(t) = exp(-1/2 int_0^t beta),   sigma(t) = sqrt(1 - alpha^2) / alpha
                                                           = sqrt(exp(int_0^t beta) - 1).
    """

    name = "vp"
    native_grid = "uniform_t"
    prior_includes_data = True

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3):
        if not 0 < beta_min < beta_max:
            raise ValueError(f"VP process needs 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_d = float(beta_min), float(beta_max - beta_min)
        self.t_min, self.t_max = float(t_min), 1.0
        self.sigma_min = float(self.sigma(_as_tensor(self.t_min)))
        self.sigma_max = float(self.sigma(_as_tensor(1.0)))

    def _int_beta(self, t):
        t = _as_tensor(t)
        return self.beta_min * t + 0.5 * self.beta_d * t**2

    def beta(self, t):
        return self.beta_min + self.beta_d * _as_tensor(t)

    def sigma(self, t):
        return torch.sqrt(torch.expm1(self._int_beta(t)))

    def sigma_deriv(self, t):
        t = _as_tensor(t)
        return 0.5 * self.beta(t) * torch.exp(self._int_beta(t)) / self.sigma(t)

    def s(self, t):
        return torch.exp(-0.5 * self._int_beta(t))

    def s_deriv(self, t):
        return -0.5 * self.beta(t) * self.s(t)

    def t_of_sigma(self, sigma):
        log_term = torch.log1p(_as_tensor(sigma) ** 2)
        return (torch.sqrt(self.beta_min**2 + 2 * self.beta_d * log_term) - self.beta_min) / self.beta_d

    def describe(self):
        return {**super().describe(), "beta_min": self.beta_min, "beta_max": self.beta_min + self.beta_d}


class EDMProcess(Process):
    """EDM (Karras et al. 2022, Table 1): s = 1, sigma(t) = t on [0.002, 80]."""

    name = "edm"
    native_grid = "karras"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"EDM process needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.t_min, self.t_max = self.sigma_min, self.sigma_max

    def sigma(self, t):
        return _as_tensor(t).clone()

    def sigma_deriv(self, t):
        return torch.ones_like(_as_tensor(t))

    def t_of_sigma(self, sigma):
        return _as_tensor(sigma).clone()


# --- FDM (Wu et al., "Fast Diffusion Model") -------------------------------------------------


class _FDMScale:
    """The critically damped scale of FDM (Wu et al. 2023/2024, "Fast Diffusion Model";
    sail-sg/FDM ``training/networks.py``, ``FDM_{EDM,VP,VE}Precond.s``):

        s(sigma) = exp(-m B) (1 + m B),   B = beta_min tau + beta_d tau^2 / 2,
        tau = (sigma - sigma_min) / (sigma_max - sigma_min),

    with (sigma_min, sigma_max) the network's noise range, beta_min = 0.1, beta_d = 19.9
    and m the ``fdm_multiplier``.

    How it enters the forward process (read off the official code): the loss adds noise
    to the *unscaled* image, ``x_hat = y + sigma n``, and trains ``D(x_hat; sigma)``
    against ``y`` (``training/loss.py``: ``net(y + n, sigma)``); the preconditioner feeds
    its UNet ``c_in x_hat`` with ``c_in = s(sigma)``, keeping EDM's/VP's/VE's c_skip,
    c_out, c_noise and loss weight.  So the network sees

        x = s(sigma) (x0 + sigma n),

    which is already the EDM frame ``x = s(t) (x0 + sigma(t) n)``: our sigma is FDM's
    sigma (the noise level of the unscaled variable, the one passed to the denoiser),
    and our s is FDM's s(sigma).  (Had the kernel been ``x = a x0 + sigma~ n`` we would
    set s = a and sigma = sigma~ / a; FDM's code is not of that form: its sigma is
    already sigma~ / a.)  The time variable and sigma(t) are those of the base process
    (EDM: t = sigma; VP: linear beta; VE: geometric); only s(t) changes.

    As with any process, the denoiser D(x_hat; sigma) = E[x0 | x0 + sigma n] does not
    depend on s: an analytic model is exact under an FDM process too, and solvers that
    work on (x_hat, sigma) sample it exactly as under the base process.  s enters the
    solvers that step in x = s x_hat (score_sde's Euler-Maruyama / PC) through
    f = s'/s and g^2 = 2 s^2 sigma sigma'.

    Note on the official code: ``FDM_VEPrecond.s`` ignores ``fdm_multiplier`` (it uses
    m = 1 whatever is passed); ``train.py`` defaults ``--fdm_multiplier`` to 2.0 while the
    preconditioner classes default to 1.0 (the README's ``--fdm_multipler`` is a typo).
    Here ``multiplier`` is honoured by all three variants; m = 1 reproduces VE-FDM.
    """

    fdm_beta_min: float
    fdm_beta_d: float
    multiplier: float
    fdm_sigma_min: float
    fdm_sigma_max: float

    def _init_fdm(self, multiplier: float, fdm_beta_min: float, fdm_beta_d: float) -> None:
        if not multiplier > 0:
            raise ValueError(f"FDM multiplier must be > 0, got {multiplier}")
        if not (fdm_beta_min >= 0 and fdm_beta_d >= 0 and fdm_beta_min + fdm_beta_d > 0):
            raise ValueError(f"FDM needs beta_min, beta_d >= 0 (not both 0); got {fdm_beta_min}, {fdm_beta_d}")
        self.multiplier = float(multiplier)
        self.fdm_beta_min, self.fdm_beta_d = float(fdm_beta_min), float(fdm_beta_d)
        # the range tau is normalised over: the network's sigma_min / sigma_max
        self.fdm_sigma_min, self.fdm_sigma_max = self.sigma_min, self.sigma_max

    # s as a function of sigma (what the FDM code computes) ------------------------------
    def fdm_tau(self, sigma: Tensor) -> Tensor:
        return (_as_tensor(sigma) - self.fdm_sigma_min) / (self.fdm_sigma_max - self.fdm_sigma_min)

    def fdm_B(self, sigma: Tensor) -> Tensor:
        tau = self.fdm_tau(sigma)
        return self.fdm_beta_min * tau + 0.5 * self.fdm_beta_d * tau**2

    def fdm_scale(self, sigma: Tensor) -> Tensor:
        """s(sigma) = exp(-m B) (1 + m B)."""
        u = self.multiplier * self.fdm_B(sigma)
        return torch.exp(-u) * (1 + u)

    def fdm_scale_deriv(self, sigma: Tensor) -> Tensor:
        """ds/dsigma = -u e^{-u} du/dsigma with u = m B and
        du/dsigma = m (beta_min + beta_d tau) / (sigma_max - sigma_min)."""
        tau = self.fdm_tau(sigma)
        u = self.multiplier * (self.fdm_beta_min * tau + 0.5 * self.fdm_beta_d * tau**2)
        du = self.multiplier * (self.fdm_beta_min + self.fdm_beta_d * tau) / (self.fdm_sigma_max - self.fdm_sigma_min)
        return -u * torch.exp(-u) * du

    # the Process interface ----------------------------------------------------------------
    def s(self, t):
        return self.fdm_scale(self.sigma(t))

    def s_deriv(self, t):
        t = _as_tensor(t)
        return self.fdm_scale_deriv(self.sigma(t)) * self.sigma_deriv(t)

    def s_of_sigma(self, sigma):
        return self.fdm_scale(_as_tensor(sigma))

    def describe(self):
        return {**super().describe(), "multiplier": self.multiplier, "fdm_beta_min": self.fdm_beta_min,
                "fdm_beta_d": self.fdm_beta_d}


class FDMEDMProcess(_FDMScale, EDMProcess):
    """EDM-FDM (``FDM_EDMPrecond``): EDM's sigma(t) = t on [0.002, 80] (the range FDM's tau
    is normalised over) with FDM's scale s(sigma)."""

    name = "fdm-edm"

    def __init__(self, multiplier: float = 1.0, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 fdm_beta_min: float = 0.1, fdm_beta_d: float = 19.9):
        EDMProcess.__init__(self, sigma_min, sigma_max)
        self._init_fdm(multiplier, fdm_beta_min, fdm_beta_d)


class FDMVPProcess(_FDMScale, VPProcess):
    """VP-FDM (``FDM_VPPrecond``): VP's sigma(t) = sqrt(exp(beta_min t + beta_d t^2/2) - 1) with
    beta_min = 0.1, beta_d = 19.9 on t in [1e-5, 1] (EDM's VP training range, epsilon_t = 1e-5:
    sigma in [0.001, 152]), with FDM's scale s(sigma) in place of VP's 1/sqrt(1 + sigma^2).

    The marginal is no longer variance preserving (at t = 1, s sigma = 0.073 for m = 1), so the
    prior is sigma_max z in x_hat, as FDM's sampler draws it (``prior_includes_data = False``).
    """

    name = "fdm-vp"
    native_grid = "karras"
    prior_includes_data = False

    def __init__(self, multiplier: float = 1.0, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-5,
                 fdm_beta_min: float = 0.1, fdm_beta_d: float = 19.9):
        VPProcess.__init__(self, beta_min, beta_max, t_min)
        self._init_fdm(multiplier, fdm_beta_min, fdm_beta_d)

    def t_of_sigma(self, sigma):
        """VP's inverse in a cancellation-free form: t = 2 L / (sqrt(beta_min^2 + 2 beta_d L) + beta_min),
        L = log(1 + sigma^2) (same value as VPProcess.t_of_sigma, accurate for tiny sigma)."""
        log_term = torch.log1p(_as_tensor(sigma) ** 2)
        return 2 * log_term / (torch.sqrt(self.beta_min**2 + 2 * self.beta_d * log_term) + self.beta_min)


class FDMVEProcess(_FDMScale, VEProcess):
    """VE-FDM (``FDM_VEPrecond``): VE's geometric sigma(t) = sigma_min (sigma_max/sigma_min)^t on
    EDM's VE range [0.02, 100] (the network's range, which FDM's tau is normalised over), with
    FDM's scale s(sigma)."""

    name = "fdm-ve"
    native_grid = "karras"

    def __init__(self, multiplier: float = 1.0, sigma_min: float = 0.02, sigma_max: float = 100.0,
                 t_min: float = 1e-5, fdm_beta_min: float = 0.1, fdm_beta_d: float = 19.9):
        VEProcess.__init__(self, sigma_min, sigma_max, t_min)
        self._init_fdm(multiplier, fdm_beta_min, fdm_beta_d)


class DiscreteVPProcess(Process):
    """The VP process of a DDPM scheduler's discrete betas, in the EDM frame.

    sigma_k = sqrt((1 - abar_k) / abar_k), k = 0..T-1; the process time t is the (fractional)
    timestep index, with log sigma linear between neighbouring indices (k-diffusion's
    ``t_to_sigma`` / ``sigma_to_t``), and s(t) = 1 / sqrt(1 + sigma(t)^2) = sqrt(abar).
    t_min = 0, t_max = T - 1; the native grid is uniform in t (DDPM's timesteps).
    """

    name = "vp-discrete"
    native_grid = "uniform_t"
    prior_includes_data = True

    def __init__(self, alphas_cumprod: Tensor | list[float]):
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten()
        if ac.numel() < 2 or not bool(((ac > 0) & (ac < 1)).all()) or not bool((ac[1:] < ac[:-1]).all()):
            raise ValueError("alphas_cumprod must hold at least 2 values in (0, 1), strictly decreasing")
        self.alphas_cumprod = ac
        self.sigmas = ((1 - ac) / ac).sqrt()
        self.log_sigmas = self.sigmas.log()
        self.num_timesteps = ac.numel()
        self.t_min, self.t_max = 0.0, float(self.num_timesteps - 1)
        self.sigma_min, self.sigma_max = float(self.sigmas[0]), float(self.sigmas[-1])

    @classmethod
    def from_betas(cls, betas) -> "DiscreteVPProcess":
        betas = torch.as_tensor(betas, dtype=torch.float64)
        return cls(torch.cumprod(1 - betas, 0))

    def _split(self, t: Tensor) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(t, dtype=torch.float64).clamp(0, self.t_max)
        low = t.floor().clamp(max=self.num_timesteps - 2).long()
        return low, t - low

    def sigma(self, t):
        low, w = self._split(t)
        return torch.exp((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[low + 1])

    def sigma_deriv(self, t):
        low, _ = self._split(t)
        return self.sigma(t) * (self.log_sigmas[low + 1] - self.log_sigmas[low])

    def t_of_sigma(self, sigma):
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        log_sigma = sigma.clamp_min(1e-300).log()
        low = (torch.searchsorted(self.log_sigmas, log_sigma.reshape(-1), right=True) - 1)
        low = low.clamp(0, self.num_timesteps - 2).reshape(log_sigma.shape)
        lo, hi = self.log_sigmas[low], self.log_sigmas[low + 1]
        w = ((log_sigma - lo) / (hi - lo)).clamp(0, 1)
        return low.to(torch.float64) + w

    def s(self, t):
        return 1 / torch.sqrt(1 + self.sigma(t) ** 2)

    def s_deriv(self, t):
        sig = self.sigma(t)
        return -sig * self.sigma_deriv(t) / (1 + sig**2) ** 1.5

    def describe(self):
        return {**super().describe(), "num_timesteps": self.num_timesteps}


# --- rectified flow ---------------------------------------------------------------------------


def flow_time_shift(t: Tensor | float, shift: float = 1.0, mu: float | None = None,
                    time_shift_type: str = "exponential", exponent: float = 1.0) -> Tensor:
    """The time shift of flow-matching samplers (Esser et al. 2024, "Scaling Rectified Flow
    Transformers for High-Resolution Image Synthesis" (SD3), Sec. 5.3.2, Eq. 23):

        t' = shift t / (1 + (shift - 1) t)                                  (mu is None)

    and diffusers' resolution-dependent form (``FlowMatchEulerDiscreteScheduler.time_shift``,
    ``use_dynamic_shifting``; ``exponent`` is its ``sigma`` argument, 1 in every pipeline):

        exponential:  t' = e^mu / (e^mu + (1/t - 1)^exponent)
        linear:       t' = mu / (mu + (1/t - 1)^exponent)

    With exponent 1 the exponential form is the plain shift with shift = e^mu.  Maps [0, 1] onto
    itself, increasing; shift > 1 moves the nodes towards t = 1 (more steps at high noise).
    """
    t = _as_tensor(t)
    if mu is None:
        if not shift > 0:
            raise ValueError(f"flow time shift must be > 0, got {shift}")
        return shift * t / (1 + (shift - 1) * t)
    if time_shift_type == "exponential":
        return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** exponent)
    if time_shift_type == "linear":
        return mu / (mu + (1 / t - 1) ** exponent)
    raise ValueError(f"unknown time_shift_type {time_shift_type!r}; choose exponential or linear")


def flow_inverse_time_shift(t: Tensor | float, shift: float = 1.0) -> Tensor:
    """Inverse of :func:`flow_time_shift` with a plain shift: u = t / (shift - (shift - 1) t)."""
    t = _as_tensor(t)
    return t / (shift - (shift - 1) * t)


def flow_dynamic_shift_mu(seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096, base_shift: float = 0.5,
                          max_shift: float = 1.15) -> float:
    """mu of the resolution-dependent shift (Flux / SD3 pipelines' ``calculate_shift``): linear in the
    number of image tokens, base_shift at ``base_seq_len`` and max_shift at ``max_seq_len``."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return float(seq_len * slope + base_shift - slope * base_seq_len)


class FlowProcess(Process):
    """Rectified flow (Liu et al. 2023, "Flow Straight and Fast", Eq. 1; Lipman et al. 2023, "Flow
    Matching"; SD3, Esser et al. 2024, Sec. 2): x_t = (1 - t) x0 + t n, t in [0, 1].

    In the EDM frame x_t = s(t) (x0 + sigma(t) n):

        s(t) = 1 - t,   sigma(t) = t / (1 - t),   t(sigma) = sigma / (1 + sigma),
        s' = -1,        sigma' = 1 / (1 - t)^2,   lambda = -log sigma = log((1 - t) / t),

    so a velocity v = n - x0 gives the denoiser D(x_hat; sigma) = x_t - t v (x_t = s x_hat), and
    Euler in sigma on x_hat is Euler in t on x_t: x_{t'} = x_t + (t' - t) v.

    t = 1 (pure noise) is sigma = inf, outside the frame: the process's range is [t_min, t_max]
    with t_max < 1 (default 1 - 1e-3, sigma_max = 999; t_min = 1e-3 is diffusers' 1 / 1000).
    ``shift`` (and ``mu`` / ``time_shift_type`` for the resolution-dependent form, see
    :func:`flow_time_shift`) is the sampling shift of the model's scheduler: the native grid
    ``flow_shift`` (solverzoo.grids) is uniform in u on [t_min, t_max] with t = shift(u), as
    diffusers' ``FlowMatchEulerDiscreteScheduler``; shift = 1 is uniform in t.
    """

    name = "flow"
    native_grid = "flow_shift"

    def __init__(self, t_min: float = 1e-3, t_max: float = 1 - 1e-3, shift: float = 1.0, mu: float | None = None,
                 time_shift_type: str = "exponential"):
        if not 0 < t_min < t_max < 1:
            raise ValueError(f"flow process needs 0 < t_min < t_max < 1, got {t_min}, {t_max}")
        if not shift > 0:
            raise ValueError(f"flow process needs shift > 0, got {shift}")
        if time_shift_type not in ("exponential", "linear"):
            raise ValueError(f"unknown time_shift_type {time_shift_type!r}; choose exponential or linear")
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.shift = float(shift)
        self.mu = None if mu is None else float(mu)
        self.time_shift_type = time_shift_type
        self.sigma_min = float(self.sigma(_as_tensor(self.t_min)))
        self.sigma_max = float(self.sigma(_as_tensor(self.t_max)))

    def time_shift(self, u: Tensor | float) -> Tensor:
        """This process's sampling shift of an unshifted time u (:func:`flow_time_shift`)."""
        return flow_time_shift(u, self.shift, self.mu, self.time_shift_type)

    def sigma(self, t):
        t = _as_tensor(t)
        return t / (1 - t)

    def sigma_deriv(self, t):
        return 1 / (1 - _as_tensor(t)) ** 2

    def t_of_sigma(self, sigma):
        sigma = _as_tensor(sigma)
        return sigma / (1 + sigma)

    def s(self, t):
        return 1 - _as_tensor(t)

    def s_deriv(self, t):
        return -torch.ones_like(_as_tensor(t))

    def s_of_sigma(self, sigma):
        return 1 / (1 + _as_tensor(sigma))

    def lambda_(self, t):
        t = _as_tensor(t)
        return torch.log1p(-t) - torch.log(t)

    def describe(self):
        out = {**super().describe(), "shift": self.shift}
        if self.mu is not None:
            out.update(mu=self.mu, time_shift_type=self.time_shift_type)
        return out


#: process classes by name
PROCESSES: Registry[Callable[..., Process]] = Registry("process")
for _name, _cls in (("ve", VEProcess), ("vp", VPProcess), ("edm", EDMProcess), ("fdm-edm", FDMEDMProcess),
                    ("fdm-vp", FDMVPProcess), ("fdm-ve", FDMVEProcess), ("flow", FlowProcess)):
    PROCESSES.register(_name, _cls)
del _name, _cls


def list_processes() -> list[str]:
    return PROCESSES.names()


def get_process(name: str | Process, **options) -> Process:
    """Build a process by name (``ve``, ``vp``, ``edm``, the FDM variants and ``flow``)."""
    if isinstance(name, Process):
        return name
    try:
        return PROCESSES.build(name, **options)
    except TypeError as err:  # a value of the wrong type
        raise ValueError(f"bad option for process {name!r}: {err}") from None
