"""Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes", NeurIPS;
code Newbeeer/diffusion_restart_sampling) on x_hat against sigma (Karras et al. 2022's frame).

The main process is EDM's Heun ODE solver (``edm.Heun``, Algorithm 1).  At the restart interval's
lower end t_min, Restart (their Algorithm 1, Eq. 4-5) repeats K times: jump to t_max with fresh noise,
x <- x + sqrt(t_max^2 - t_min^2) z (the forward kernel in the EDM frame), then solve the ODE back to
t_min with ``restart_steps`` Heun steps on a Karras sub-grid.  The added noise contracts the error the
ODE steps accumulated before t_min (their Theorem 3).
"""

from __future__ import annotations

import math

from torch import Tensor

from ..grids import karras
from ..processes import EDMProcess
from .base import Context, SolverInfo, register
from .edm import EDM, Heun

__all__ = ["Restart"]

RESTART = ("Xu et al. 2023, Restart Sampling for Improving Generative Processes (NeurIPS), Algorithm 1 "
           "(EDM Heun main ODE, restart interval [t_min, t_max] with K restarts)")


@register
class Restart(Heun):
    """Restart sampling (Xu et al. 2023, Algorithm 1):

        main:    Heun steps sigma_0 -> ... -> sigma_j (the node nearest t_min) -> ... -> sigma_N
        at j, K times:  x <- x + sqrt(t_max^2 - sigma_j^2) z;  Heun from t_max down to sigma_j in
                        ``restart_steps`` steps of a Karras grid (``grids.karras``; ``grid_options`` rho)

    t_min snaps to the main grid's node nearest to it, as the reference does.  Defaults: interval
    [0.06, 0.30] (the paper's EDM CIFAR-10 interval), K = 1, two Heun steps per restart.
    ``restarts=0`` is ``heun``.  NFE = 2N - 1 + 2 K restart_steps (2N + ... on a grid ending at
    sigma_min); ``min_steps`` 2 (a node between the ends).  Order 2: the restarts target the law.
    """

    info = SolverInfo(name="restart", family="restart", kind="sde", order=2, calls_per_step=2, zero_step_calls=1,
                      paper=RESTART + "; " + EDM, grid="karras", min_steps=2, preconditioning=frozenset({"noise"}),
                      extra_calls=4, in_default_bench=False)
    pinned = {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": math.inf, "s_noise": 1.0}
    noise_off = {"restarts": 0}

    def __init__(self, restart_t_min: float = 0.06, restart_t_max: float = 0.30, restarts: int = 1,
                 restart_steps: int = 2, **base):
        super().__init__(**base)
        if not 0 < restart_t_min < restart_t_max:
            raise ValueError(f"restart needs 0 < restart_t_min < restart_t_max, got {restart_t_min}, {restart_t_max}")
        if int(restarts) != restarts or restarts < 0 or int(restart_steps) != restart_steps or restart_steps < 1:
            raise ValueError(f"restart needs an integer restarts >= 0 and restart_steps >= 1, got {restarts}, "
                             f"{restart_steps}")
        self.restart_t_min, self.restart_t_max = float(restart_t_min), float(restart_t_max)
        self.restarts, self.restart_steps = int(restarts), int(restart_steps)

    def info_changes(self) -> dict:
        return {"extra_calls": 2 * self.restarts * self.restart_steps}

    def restart_node(self, sigma: list[float]) -> int:
        """The positive node after the first nearest to t_min (the restart's end)."""
        nodes = [j for j in range(1, len(sigma)) if sigma[j] > 0]
        j = min(nodes, key=lambda k: abs(sigma[k] - self.restart_t_min))
        if sigma[j] >= self.restart_t_max:
            raise ValueError(f"restart: the grid node nearest restart_t_min={self.restart_t_min} is "
                             f"sigma={sigma[j]:g}, not below restart_t_max={self.restart_t_max}; use more steps or "
                             f"a wider interval")
        return j

    def sub_grid(self, t_min: float) -> list[float]:
        """Karras sigmas from t_max down to t_min (exactly) in ``restart_steps`` steps (sigmas of the x_hat
        frame, the same under every process: built on the EDM process)."""
        rho = {key: value for key, value in self.grid_options.items() if key == "rho"}
        grid = karras(EDMProcess(), self.restart_steps, final="sigma_min", sigma_min=t_min,
                      sigma_max=self.restart_t_max, **rho)
        return grid.sigma.tolist()[:-1] + [t_min]

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma = ctx.sigma
        j = self.restart_node(sigma) if self.restarts else -1
        for i in range(ctx.grid.steps):
            if sigma[i + 1] == 0:
                x = ctx.denoise(x, sigma[i])  # Heun's step to zero: the Euler step x = D
                break
            x = self.step(ctx, x, sigma[i], sigma[i + 1])
            if i + 1 == j:
                sub = self.sub_grid(sigma[j])
                for _ in range(self.restarts):
                    x = x + ctx.randn_like(x) * math.sqrt(self.restart_t_max**2 - sigma[j] ** 2)
                    for s, t in zip(sub[:-1], sub[1:]):
                        x = self.step(ctx, x, s, t)
        return x
