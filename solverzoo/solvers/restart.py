"""Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes", NeurIPS;
code Newbeeer/diffusion_restart_sampling), on x_hat against sigma (Karras et al. 2022's frame).

The main process is EDM's Heun ODE solver (``edm.Heun``, Algorithm 1).  When it reaches the restart
interval's lower end t_min, Restart (their Algorithm 1, Eq. 4-5) repeats K times: jump forward to
t_max with fresh noise, x <- x + sqrt(t_max^2 - t_min^2) z (the forward process's transition kernel
in the EDM frame), then solve the ODE back from t_max to t_min with ``restart_steps`` Heun steps on a
Karras sub-grid (rho = 7).  The added noise contracts the errors the ODE steps accumulated before
t_min (their Theorem 3), at the cost of the restart's ODE steps.

t_min snaps to the main grid's node nearest to it (the reference does the same), so the restart
ends exactly on the main grid.  Budget (``SolverInfo`` data): the Heun main loop costs 2 calls per
step and 1 for a step to zero; every restart adds 2 ``restart_steps`` calls, ``extra_calls`` =
2 K restart_steps.  ``min_steps`` = 2: the main grid needs a node between its ends.
"""

from __future__ import annotations

import math

from torch import Tensor

from .base import Context, SolverInfo, register
from .edm import EDM, Heun

__all__ = ["Restart"]

RESTART = ("Xu et al. 2023, Restart Sampling for Improving Generative Processes (NeurIPS), Algorithm 1 "
           "(EDM Heun main ODE, restart interval [t_min, t_max] with K restarts)")


def _heun(ctx: Context, x: Tensor, s: float, t: float) -> Tensor:
    """One EDM Heun step from sigma s to t > 0 (Karras et al. 2022, Algorithm 1): two calls."""
    d = (x - ctx.denoise(x, s)) / s
    x_next = x + (t - s) * d
    d_next = (x_next - ctx.denoise(x_next, t)) / t
    return x + (t - s) * (d + d_next) / 2


@register
class Restart(Heun):
    """Restart sampling (Xu et al. 2023, Algorithm 1; module docstring):

        main:    Heun steps sigma_0 -> ... -> sigma_j (the node nearest t_min) -> ... -> sigma_N
        at j, K times:  x <- x + sqrt(t_max^2 - sigma_j^2) z;  Heun from t_max down to sigma_j in
                        ``restart_steps`` Karras (rho = 7) steps

    Defaults: interval [0.06, 0.30] (the paper's EDM CIFAR-10 interval), K = 1, two Heun steps per
    restart: 4 more calls, so that the cheapest run (2 main steps) fits an NFE of 7.  The paper's tables
    use more restarts at larger budgets (``restarts``, ``restart_steps``).  ``restarts=0`` is ``heun``.  NFE = 2N - 1 + 2 K restart_steps
    (2N + ... on a grid ending at sigma_min).  Order 2 (the Heun steps; the restarts target the law,
    not the ODE path).
    """

    info = SolverInfo(name="restart", family="restart", kind="sde", order=2, calls_per_step=2, zero_step_calls=1,
                      paper=RESTART + "; " + EDM, grid="karras", min_steps=2, preconditioning=frozenset({"noise"}),
                      extra_calls=4, in_default_bench=False)  # extra_calls: the default options' (instance: set)
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
            raise ValueError(f"restart: the grid node nearest restart_t_min={self.restart_t_min} is sigma={sigma[j]:g}, "
                             f"not below restart_t_max={self.restart_t_max}; use more steps or a wider interval")
        return j

    def sub_grid(self, t_min: float) -> list[float]:
        """Karras (rho = 7) sigmas from t_max down to t_min in ``restart_steps`` steps."""
        a, b, n = self.restart_t_max ** (1 / 7), t_min ** (1 / 7), self.restart_steps
        return [(a + k / n * (b - a)) ** 7 for k in range(n)] + [t_min]

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma = ctx.sigma
        j = self.restart_node(sigma) if self.restarts else -1
        for i in range(ctx.grid.steps):
            if sigma[i + 1] == 0:
                x = ctx.denoise(x, sigma[i])  # Heun's step to zero: the Euler step x = D
                break
            x = _heun(ctx, x, sigma[i], sigma[i + 1])
            if i + 1 == j:
                sub = self.sub_grid(sigma[j])
                for _ in range(self.restarts):
                    x = x + ctx.randn_like(x) * math.sqrt(self.restart_t_max**2 - sigma[j] ** 2)
                    for s, t in zip(sub[:-1], sub[1:]):
                        x = _heun(ctx, x, s, t)
        return x
