"""DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models",
arXiv:2211.01095; code LuChengTHU/dpm-solver), data prediction on x_hat against lambda = -log sigma: single-step
(2S), multistep (2M, 3M) and SDE versions (k-diffusion ``sample_dpmpp_2m_sde``, ``_3m_sde``).  With h = lambda_t -
lambda_s, eta >= 0 (0: the ODE, 1: the reverse SDE), h_eta = (1 + eta) h, the exact solution of dx = (1 + eta)
(D - x) dlambda + noise and the Taylor expansion of D give (Algorithms 1-2 for eta = 0; k-diffusion's eta form)

    x_t = (sigma_t/sigma_s) e^{-eta h} x_s + (1 - e^{-h_eta}) D_s + h slope_weight(h_eta) D'
          - h^2 curve_weight(h_eta) D'' + sigma_t sqrt(1 - e^{-2 eta h}) z,

the derivatives from the history (``DPMSolverPPMultistep.combine``).  The references give the D'' term
half its weight (order 2); ``third_order="exact"`` (default) corrects it, ``"upstream"`` reproduces them
bit for bit (docs/solver-notes.md).  A step to sigma = 0 is x = D_s.  Parity with k-diffusion and
diffusers ``DPMSolverMultistepScheduler``: tests/test_parity.py.
"""

from __future__ import annotations

import math

from torch import Tensor

from .base import Context, SolverInfo, register
from .blocks import ExponentialRK, Multistep, ancestral_step, check_eta, curve_weight, slope_weight, warmup_note
from .k_diffusion_family import DPMPP, KDIFF

__all__ = ["DPMPP2S", "DPMPP2M", "DPMPP3M", "DPMPP2MSDE", "DPMPP3MSDE", "RESMultistep"]

SOLVER_TYPES = ("midpoint", "heun")
THIRD_ORDER = ("exact", "upstream")


@register
class DPMPP2S(ExponentialRK):
    """DPM-Solver++(2S) (Lu et al. 2022, Algorithm 1 with r = 1/2; the ``seeds`` exponential schemes
    with kappa = 1, data prediction), with optional ancestral noise (k-diffusion
    ``sample_dpmpp_2s_ancestral``, ``eta`` in [0, 1]):

        (sigma_down, sigma_up) = ancestral_step(sigma_s, sigma_t, eta),  h = log(sigma_s / sigma_down)
        x_2 = (sigma_mid/sigma_s) x + (1 - e^{-h/2}) D_s,   sigma_mid = sqrt(sigma_s sigma_down)
        x_t = (sigma_down/sigma_s) x + (1 - e^{-h}) D(x_2; sigma_mid) + s_noise sigma_up z

    A step to sigma = 0 is x = D.  NFE = 2N - 1 (2N on a grid ending at sigma_min).
    """

    info = SolverInfo(name="dpmpp_2s", family="dpm-solver", kind="ode", order=2, calls_per_step=2,
                      paper=DPMPP + ", Algorithm 1 (2S); ancestral: " + KDIFF + ", sample_dpmpp_2s_ancestral",
                      grid="karras", final="zero", zero_step_calls=1, preconditioning=frozenset({"noise"}))
    kappa = 1
    pinned = {"prediction": "data"}
    noise_off = {"eta": 0.0}

    def __init__(self, eta: float = 0.0, s_noise: float = 1.0, **base):
        super().__init__(**base)
        check_eta("dpmpp_2s", eta, s_noise, 1.0)
        self.eta, self.s_noise = float(eta), float(s_noise)

    def step(self, ctx: Context, x: Tensor, s: float, t: float) -> Tensor:
        down, up = ancestral_step(s, t, self.eta)
        x = self.step2(ctx, x, s, down)
        if self.eta > 0:
            x = x + ctx.randn_like(x) * (self.s_noise * up)
        return x


class DPMSolverPPMultistep(Multistep):
    """The multistep update of the module docstring; ``eta`` > 0 makes it the SDE solver.  From the history
    D_0 = D_s, D_1, D_2 at lambda_s - h_0, lambda_s - h_0 - h_1 (r_k = h_k / h), d1_k = (D_k - D_{k+1}) / r_k:

        order 2:  h D' ~ d1_0, weighted (1 - e^{-h_eta}) / 2 ("midpoint", DPM-Solver++(2M)) or slope_weight ("heun")
        order 3:  h D' ~ d1_0 + (d1_0 - d1_1) r_0 / (r_0 + r_1),   h^2 D'' / 2 ~ (d1_0 - d1_1) / (r_0 + r_1)

    ``warmup="rk"`` (eta = 0 only) starts order 3 with one DPM-Solver++(2S) step (``blocks.Multistep``).
Readable forms of its presets: ``readable.dpmpp_2m``, ``dpmpp_2m_sde``, ``dpmpp_3m_sde``.
    """

    noise_off = {"eta": 0.0}

    def __init__(self, eta: float = 0.0, s_noise: float = 1.0, solver_type: str = "midpoint",
                 third_order: str = "exact", **base):
        check_eta(self.name, eta, s_noise)
        if solver_type not in SOLVER_TYPES:
            raise ValueError(f"solver_type must be one of {SOLVER_TYPES}, got {solver_type!r}")
        if third_order not in THIRD_ORDER:
            raise ValueError(f"third_order must be 'exact' (order 3) or 'upstream' (the references' weight, order 2), "
                             f"got {third_order!r}")
        self.eta, self.s_noise = float(eta), float(s_noise)
        self.solver_type, self.third_order = solver_type, third_order
        super().__init__(**base)
        if self.warmup == "rk" and self.eta > 0:
            raise ValueError(f"{self.name}: warmup='rk' is an ODE start; it needs eta = 0, got eta={self.eta}")

    def formula_order(self) -> int:
        return 2 if self.order == 3 and self.third_order == "upstream" else self.order

    def combine(self, d: Tensor, hist: list[Tensor], hs: list[float], h: float, order: int) -> Tensor:
        """(1 + eta) int_0^h e^{-(1+eta)(h-r)} D dr, estimated from D = hist[-1] and the history."""
        he = (1 + self.eta) * h
        out = d * -math.expm1(-he)
        if order == 2:
            d1 = (d - hist[-2]) * (h / hs[-1])
            out = out + d1 * (0.5 * -math.expm1(-he) if self.solver_type == "midpoint" else slope_weight(he))
        elif order == 3:
            r0, r1 = hs[-1] / h, hs[-2] / h
            d1_0 = (d - hist[-2]) / r0
            d1_1 = (hist[-2] - hist[-3]) / r1
            d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
            d2 = (d1_0 - d1_1) / (r0 + r1)
            weight = 2.0 if self.third_order == "exact" else 1.0
            out = out + d1 * slope_weight(he) - d2 * (weight * curve_weight(he))
        return out

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma, steps = ctx.sigma, ctx.grid.steps
        hist: list[Tensor] = []
        hs: list[float] = []  # hs[-1] = lambda_i - lambda_{i-1}
        for i in range(steps):
            d = ctx.denoise(x, sigma[i])
            hist = (hist + [d])[-3:]
            if sigma[i + 1] == 0:
                x = d
                break
            h = math.log(sigma[i] / sigma[i + 1])
            if i < self.warmup_steps():
                x_next = self.warmup_step(ctx, x, d, i)
            else:
                x_next = x * ((sigma[i + 1] / sigma[i]) * math.exp(-self.eta * h)) + self.combine(
                    d, hist, hs, h, self.step_order(i, steps))
            if self.eta > 0:
                c = self.s_noise * sigma[i + 1] * math.sqrt(-math.expm1(-2 * self.eta * h))
                x_next = x_next + ctx.randn_like(x) * c
            x = x_next
            hs = (hs + [h])[-2:]
        return self.finish(ctx, x)


def _info(name: str, order: int, kind: str, paper: str) -> SolverInfo:
    """order: the formula's; the listing gives the order reached by the default first-order start."""
    noise = frozenset({"noise"}) if kind == "sde" else frozenset()
    return SolverInfo(name=name, family="dpm-solver", kind=kind, order=min(order, 2), calls_per_step=1, paper=paper,
                      grid="karras", preconditioning=noise, order_note=warmup_note(order) if order > 2 else "")


@register
class DPMPP2M(DPMSolverPPMultistep):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2; k-diffusion ``sample_dpmpp_2m``):

        x_t = (sigma_t/sigma_s) x + (1 - e^{-h}) [(1 + 1/(2 r)) D_i - 1/(2 r) D_{i-1}],  r = h_{i-1} / h

    (``solver_type="midpoint"``; ``"heun"``: slope_weight(h) (D_i - D_{i-1}) / r in place of the midpoint term).
    First step and (``lower_order_final``, default) last step first order; a step to 0 is x = D.  NFE = N.
    """

    info = _info("dpmpp_2m", 2, "ode", DPMPP + ", Algorithm 2 (2M); " + KDIFF + ", sample_dpmpp_2m")
    pinned = {"order": 2, "eta": 0.0, "s_noise": 1.0, "third_order": "exact"}


@register
class DPMPP3M(DPMSolverPPMultistep):
    """DPM-Solver++(3M) (Lu et al. 2022; DPM-Solver ``multistep_dpm_solver_third_update``), order 3 with
    the corrected D'' weight (module docstring; ``third_order="upstream"`` for the references' order-2
    weight).  Warm-up orders 1, 2 (``solver_type`` of the order-2 steps: "heun" by default, as k-diffusion;
    "midpoint" as DPM-Solver and diffusers), lower_order_final (default) 2, 1.  NFE = N.
    """

    info = _info("dpmpp_3m", 3, "ode", DPMPP + " (3M); " + KDIFF + ", sample_dpmpp_3m_sde with eta = 0")
    defaults = {"solver_type": "heun"}
    pinned = {"order": 3, "eta": 0.0, "s_noise": 1.0}


@register
class DPMPP2MSDE(DPMSolverPPMultistep):
    """DPM-Solver++(2M) SDE (k-diffusion ``sample_dpmpp_2m_sde``), eta = 1 the reverse SDE:

        x_t = (sigma_t/sigma_s) e^{-eta h} x + (1 - e^{-h_eta}) D_i + c (D_i - D_{i-1}) / r
              + s_noise sigma_t sqrt(1 - e^{-2 eta h}) z,
        c = (1 - e^{-h_eta})/2 ("midpoint") or slope_weight(h_eta) ("heun"),  h_eta = (1 + eta) h.

    eta = 0 is DPM-Solver++(2M).  ``lower_order_final`` is off by default (as k-diffusion: only the step
    to 0, x = D, is first order).  NFE = N.
    """

    info = _info("dpmpp_2m_sde", 2, "sde", KDIFF + ", sample_dpmpp_2m_sde; " + DPMPP)
    defaults = {"eta": 1.0, "lower_order_final": False}
    pinned = {"order": 2, "third_order": "exact"}


@register
class DPMPP3MSDE(DPMSolverPPMultistep):
    """DPM-Solver++(3M) SDE (k-diffusion ``sample_dpmpp_3m_sde``): the 3M update with h_eta = (1 + eta) h
    and noise s_noise sigma_t sqrt(1 - e^{-2 eta h}) z; warm-up order-2 step "heun" (slope_weight), as k-diffusion.
    ``third_order="exact"`` (default) doubles the references' D'' weight (module docstring).
    ``lower_order_final`` off by default (k-diffusion).  NFE = N.
    """

    info = _info("dpmpp_3m_sde", 3, "sde", KDIFF + ", sample_dpmpp_3m_sde; " + DPMPP)
    defaults = {"eta": 1.0, "solver_type": "heun", "lower_order_final": False}
    pinned = {"order": 3}


RES = ("Zhang et al. 2023, Improved Order Analysis and Design of Exponential Integrator for Diffusion Models "
       "Sampling (arXiv:2308.02157), refined exponential solver (RES), second-order multistep; ComfyUI res_multistep")


@register
class RESMultistep(DPMSolverPPMultistep):
    """RES multistep (Zhang et al. 2023, arXiv:2308.02157: the exponential multistep whose weights satisfy
    the order conditions b_1 + b_2 = phi_1, b_2 c_2 = phi_2; ComfyUI ``sample_res_multistep``), on x_hat
    against lambda = -log sigma, h = lambda_t - lambda_s, c_2 = -h_{i-1} / h:

        x_t = e^{-h} x_s + h [(phi_1(-h) - phi_2(-h) / c_2) D_i + (phi_2(-h) / c_2) D_{i-1}]
            = (sigma_t/sigma_s) x_s + (1 - e^{-h}) D_i + slope_weight(h) (D_i - D_{i-1}) / r,   r = h_{i-1} / h,

    phi_1(z) = (e^z - 1)/z, phi_2(z) = (phi_1(z) - 1)/z (h phi_2(-h) = ``blocks.slope_weight(h)``): the
    DPM-Solver++(2M) update with ``solver_type="heun"`` and ``lower_order_final`` off, bit for bit.  The
    first step is Euler, a step to sigma = 0 is x = D.  Order 2.  NFE = N.
    """

    info = SolverInfo(name="res_multistep", family="res", kind="ode", order=2, calls_per_step=1, paper=RES,
                      grid="karras", in_default_bench=False)
    defaults = {"lower_order_final": False}
    pinned = {"order": 2, "eta": 0.0, "s_noise": 1.0, "solver_type": "heun", "third_order": "exact",
              "warmup": "lower"}
