"""Reference integrators for accuracy references and sanity checks, not speed: an adaptive ODE solver
(torchdiffeq, Chen et al. 2018) on the probability-flow ODE dx/dsigma = (x - D)/sigma and a stochastic
Runge-Kutta / Euler-Maruyama solver (torchsde, Li et al. 2020) on the reverse SDE (Karras et al. 2022,
Eq. 4 and 6).  Their NFE is whatever they count.  The reverse SDE in tau = -sigma (increasing time, as
torchsde requires), for the forward process dx = sqrt(2 sigma) dW_sigma:

    dx = 2 (D(x; sigma) - x) / sigma dtau + sqrt(2 sigma) dW_tau,     sigma = -tau

(additive noise), one solver step per grid interval, with one ``torchsde.BrownianInterval`` per sample
seeded from that sample's PATH generator (batch-independent).  A step to sigma = 0 is x = D.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Context, Solver, SolverInfo, register

__all__ = ["ODEAdaptive", "SDEReference", "PerSampleBrownian"]

TORCHDIFFEQ = "Chen et al. 2018, Neural Ordinary Differential Equations (torchdiffeq)"
TORCHSDE = "Li et al. 2020, Scalable Gradients for Stochastic Differential Equations (torchsde)"
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
ERROR_NORMS = ("sample_max", "batch")


@register
class ODEAdaptive(Solver):
    """Adaptive Runge-Kutta (default Dormand-Prince 5(4), torchdiffeq ``dopri5``) on the probability-flow
    ODE dx/dsigma = (x - D)/sigma (Karras et al. 2022, Eq. 4; score_sde's RK45 ODE sampler), from sigma_max
    to the last positive sigma, tolerances ``rtol``, ``atol``; with final='zero' a last call x = D(x; sigma_min).
    The controller sets the NFE (counted; an NFE budget is accepted and ignored).

    ``error_norm="sample_max"`` (default): the max over samples of each sample's RMS error, so every sample
    meets the tolerance as if integrated alone (its result moves with the batch only within the
    tolerance); ``"batch"``: torchdiffeq's RMS over the batch (score_sde's).  Batches that need different
    NFE are refused by ``sample``: use one batch.
    """

    info = SolverInfo(name="ode_adaptive", family="reference", kind="ode", order=5, calls_per_step=1,
                      paper=TORCHDIFFEQ + "; Dormand & Prince 1980 on Karras et al. 2022, Eq. 4", adaptive=True)

    def __init__(self, rtol: float = 1e-5, atol: float = 1e-5, method: str = "dopri5", error_norm: str = "sample_max",
                 **base):
        super().__init__(**base)
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"ode_adaptive needs rtol > 0 and atol > 0, got rtol={rtol}, atol={atol}")
        if method not in ADAPTIVE_METHODS:
            raise ValueError(f"ode_adaptive method must be one of {ADAPTIVE_METHODS}, got {method!r}")
        if error_norm not in ERROR_NORMS:
            raise ValueError(f"error_norm must be one of {ERROR_NORMS}, got {error_norm!r}")
        self.rtol, self.atol, self.method, self.error_norm = float(rtol), float(atol), method, error_norm

    @property
    def fixed_steps(self) -> int:
        """The grid [sigma_max, sigma_min] (+ 0): one interval for the controller, one denoise step to zero."""
        return 2 if self.final == "zero" else 1

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        from torchdiffeq import odeint

        positive = [s for s in ctx.sigma if s > 0]
        s0, s1 = positive[0], positive[-1]

        def flow(t: Tensor, y: Tensor) -> Tensor:
            s = float(t)
            return (y - ctx.denoise(y, s)) / s

        options = {}
        if self.error_norm == "sample_max":
            options["norm"] = lambda e: e.reshape(e.shape[0], -1).pow(2).mean(dim=1).sqrt().max()
        if s1 < s0:  # a one-step grid to zero has nothing to integrate
            t = torch.tensor([s0, s1], dtype=x.dtype, device=x.device)
            x = odeint(flow, x, t, rtol=self.rtol, atol=self.atol, method=self.method, options=options)[-1]
        if ctx.sigma[-1] == 0:
            x = ctx.denoise(x, s1)
        return x


class PerSampleBrownian:
    """A torchsde Brownian motion of shape (batch, d) made of one ``torchsde.BrownianInterval`` per sample
    (module docstring); answers the same queries (W, and the space-time Levy area U if asked)."""

    def __init__(self, t0: float, t1: float, d: int, entropies: list[int], dtype, device, dt: float,
                 levy_area_approximation: str = "space-time"):
        import torchsde

        self._intervals = [torchsde.BrownianInterval(t0=t0, t1=t1, size=(1, d), dtype=dtype, device=device,
                                                     entropy=int(e), dt=dt,
                                                     levy_area_approximation=levy_area_approximation)
                           for e in entropies]
        self._shape = torch.Size((len(entropies), d))
        self._dtype, self._device, self._levy = dtype, torch.device(device), levy_area_approximation

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        parts = [bi(ta, tb, return_U=return_U, return_A=return_A) for bi in self._intervals]
        if isinstance(parts[0], tuple):
            return tuple(torch.cat(items, dim=0) for items in zip(*parts))
        return torch.cat(parts, dim=0)

    def __repr__(self):
        return f"PerSampleBrownian(batch={self._shape[0]}, d={self._shape[1]})"

    @property
    def shape(self):
        return self._shape

    def size(self):
        return self._shape

    @property
    def dtype(self):
        return self._dtype

    @property
    def device(self):
        return self._device

    @property
    def levy_area_approximation(self):
        return self._levy


def _as_base_brownian(bm: PerSampleBrownian):
    """Register PerSampleBrownian as a torchsde BaseBrownian (torchsde checks the type)."""
    from torchsde import BaseBrownian

    BaseBrownian.register(PerSampleBrownian)
    return bm


class _ReverseSDE(torch.nn.Module):
    """dx = 2 (D - x)/sigma dtau + sqrt(2 sigma) dW_tau on flattened states, tau = -sigma.

    The drift is memoised on its last (tau, y): torchsde's ``sdeint`` evaluates it once at (ts[0], y0)
    to check shapes, and the solver's first stage asks for the same point; that call is answered from
    the cache instead of costing a second model call."""

    noise_type = "additive"
    sde_type = "ito"

    def __init__(self, ctx: Context, shape: torch.Size):
        super().__init__()
        self.ctx, self.shape = ctx, shape
        self._last = None

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        key = (float(t), y, y._version)
        if self._last is not None and self._last[0] == key[0] and self._last[1] is y and self._last[2] == key[2]:
            return self._last[3]
        sigma = -key[0]
        x = y.reshape(self.shape)
        drift = (2 * (self.ctx.denoise(x, sigma) - x) / sigma).reshape(y.shape)
        self._last = (*key, drift)
        return drift

    def g_prod(self, t: Tensor, y: Tensor, v: Tensor) -> Tensor:
        return math.sqrt(2 * -float(t)) * v


@register
class SDEReference(Solver):
    """The reverse SDE (Karras et al. 2022, Eq. 6 with beta = sigma'/sigma; Song et al. 2021, Eq. 6) by
    torchsde, one step per grid interval in tau = -sigma (module docstring): ``method="euler"``
    (Euler-Maruyama, 1 call per step) or ``"srk"`` (SRA1 for additive noise, strong order 1.5, 2 calls).
    Per-sample Brownian intervals: batch-size independent.  With final='zero' the last step is x = D.
    NFE = calls x (N - 1) + 1 (calls x N on a grid ending at sigma_min), counted.
    """

    info = SolverInfo(name="sde_reference", family="reference", kind="sde", order=1, calls_per_step=1,
                      paper=TORCHSDE + "; reverse SDE of Karras et al. 2022, Eq. 6", grid="karras", zero_step_calls=1)
    METHODS = {"euler": 1, "srk": 2}  # model calls per step

    def __init__(self, method: str = "euler", **base):
        super().__init__(**base)
        if method not in self.METHODS:
            raise ValueError(f"sde_reference method must be one of {tuple(self.METHODS)}, got {method!r}")
        self.method = method

    def info_changes(self) -> dict:
        return {"calls_per_step": self.METHODS[self.method]}

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        import torchsde

        sigma, shape = ctx.sigma, x.shape
        positive = [s for s in sigma if s > 0]
        steps = len(positive) - 1
        if steps == 0:  # a one-step grid to zero: only the denoising step
            return ctx.denoise(x, positive[-1])
        entropies = [int(torch.randint(0, 2**62, (), generator=g)) for g in ctx.noise.generators]
        bm = _as_base_brownian(PerSampleBrownian(
            -positive[0], -positive[-1], x[0].numel(), entropies, x.dtype, x.device,
            dt=(positive[0] - positive[-1]) / max(steps, 1),
            levy_area_approximation="space-time" if self.method == "srk" else "none"))
        sde = _ReverseSDE(ctx, shape)
        y = x.reshape(shape[0], -1)
        with torch.random.fork_rng(devices=[]):  # sdeint's contract check draws from the global generator
            for i in range(steps):
                ts = torch.tensor([-positive[i], -positive[i + 1]], dtype=x.dtype, device=x.device)
                # dt larger than the interval: torchsde then takes exactly one step, min(t0 + dt, t1) = t1
                y = torchsde.sdeint(sde, y, ts, bm=bm, method=self.method, dt=2 * (positive[i] - positive[i + 1]),
                                    adaptive=False)[-1]
        x = y.reshape(shape)
        if sigma[-1] == 0:
            x = ctx.denoise(x, positive[-1])
        return x
