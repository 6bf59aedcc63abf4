"""score_sde samplers (Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential
Equations", ICLR): Euler-Maruyama on the reverse SDE and the predictor-corrector sampler (reverse
diffusion predictor + Langevin corrector), in the process's own time and state x = s(t) x_hat, as
score_sde does.  Between nodes t_i > t_{i+1} the forward kernel is x_i = a_i x_{i+1} + G_i n with

    a_i = s_i / s_{i+1},        G_i^2 = s_i^2 (sigma_i^2 - sigma_{i+1}^2)

(score_sde's VE G^2 = sigma_i^2 - sigma_{i-1}^2; on VP the exact-kernel form of its discrete betas).
``discretize="official"`` takes a_i and G_i^2 from score_sde's (and fudan-zvg/PDS's) ``SDE.discretize``
tables instead (:func:`official_coefficients`).  With a preconditioner the same sampler is PDS or TDAS
(``preconditioned``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Context, Solver, SolverInfo, register

__all__ = ["EulerMaruyama", "PredictorCorrector"]

SCORE_SDE = "Song et al. 2021, Score-Based Generative Modeling through SDEs (ICLR)"


def score_x(ctx: Context, x: Tensor, i: int) -> Tensor:
    """grad_x log p_t(x) at grid node i, for x = s_i x_hat: (D(x/s; sigma) - x/s) / (s sigma^2)."""
    s, sigma = ctx.s[i], ctx.sigma[i]
    x_hat = x / s
    return (ctx.denoise(x_hat, sigma) - x_hat) / (s * sigma**2)


DISCRETIZATIONS = ("continuous", "official")


def official_coefficients(process, grid) -> tuple[list[float], list[float]]:
    """``(a_i, G_i^2)`` of score_sde's / PDS's ``VESDE.discretize`` and ``VPSDE.discretize`` for the
    ``N = grid.steps`` rounds, indexed by ``j = floor(t_i (N - 1))`` in float32 as the official code:
    VE ``G_i^2 = sigma_j^2 - sigma_{j-1}^2`` on the geometric table (sigma_{-1} = 0), VP
    ``beta_j`` from ``linspace(beta_min / N, beta_max / N, N)``, a_i = sqrt(1 - beta_j), G_i^2 = beta_j.
    """
    n = grid.steps
    index = (grid.t[:n].to(torch.float32) * (n - 1)).long().tolist()
    if process.name == "ve":
        table = torch.exp(torch.linspace(math.log(process.sigma_min), math.log(process.sigma_max), n,
                                         dtype=torch.float64)).tolist()
        g2 = [table[j] ** 2 - (table[j - 1] ** 2 if j > 0 else 0.0) for j in index]
        return [1.0] * n, g2
    if process.name == "vp":
        beta_max = process.beta_min + process.beta_d
        if beta_max / n >= 1:
            raise ValueError(f"discretize='official' on VP needs beta_max / N < 1 (its a = sqrt(1 - beta_j)); "
                             f"N = {n} rounds with beta_max = {beta_max:g}: use more than {math.floor(beta_max)} steps")
        betas = torch.linspace(process.beta_min / n, beta_max / n, n, dtype=torch.float64).tolist()
        return [math.sqrt(1.0 - betas[j]) for j in index], [betas[j] for j in index]
    raise ValueError(_no_official_table(process))


def _no_official_table(process) -> str:
    return (f"discretize='official' reproduces score_sde's VESDE / VPSDE tables; process {process.name!r} "
            f"has none (use discretize='continuous')")


def _norms(v: Tensor, per_sample: bool) -> Tensor:
    """L2 norm of each sample (shape (B, 1, ...)), or its batch mean (score_sde's choice)."""
    norms = v.flatten(1).norm(dim=1)
    if not per_sample:
        norms = norms.mean().expand_as(norms)
    return norms.reshape(-1, *([1] * (v.ndim - 1)))


class _ScoreSDESolver(Solver):
    """Shared pieces: node scales, the score_sde prior, and the final division by s."""

    def prior(self, ctx: Context, z: Tensor) -> Tensor:
        """score_sde's prior: sigma_max M z for VE; M z in x (so z / s_0 in x_hat) for VP."""
        z = ctx.precondition_noise(z)
        if ctx.process.prior_includes_data:
            return z / float(ctx.grid.s[0])
        return ctx.sigma[0] * z


@register
class EulerMaruyama(_ScoreSDESolver):
    """Euler-Maruyama on the reverse SDE in the process's time (Song et al. 2021, Eq. 6;
    score_sde ``EulerMaruyamaPredictor``):

        x_mean = x - [f(t_i) x - g(t_i)^2 grad log p_t(x)] (t_i - t_{i+1})
        x      = x_mean + g(t_i) sqrt(t_i - t_{i+1}) z

    with f = s'/s and g^2 = 2 s^2 sigma sigma'.  The last step returns x_mean.
    """

    info = SolverInfo(
        name="euler_maruyama", family="score_sde", kind="sde", order=1, calls_per_step=1,
        paper=SCORE_SDE + ", Eq. 6 (Euler-Maruyama)", final="sigma_min",
        preconditioning=frozenset({"noise"}),
    )

    def run(self, ctx: Context, x_hat: Tensor) -> Tensor:
        t = ctx.grid.t
        if not torch.isfinite(t).all():
            raise ValueError(
                f"euler_maruyama steps in the process's time, which is not finite at sigma = 0 for "
                f"process {ctx.process.name!r}; use final='sigma_min'"
            )
        f = ctx.process.drift_coef(t).tolist()
        g2 = ctx.process.diffusion_sq(t).tolist()
        dt = (t[:-1] - t[1:]).tolist()
        x = ctx.s[0] * x_hat
        for i in range(ctx.grid.steps):
            x_mean = x - (f[i] * x - g2[i] * score_x(ctx, x, i)) * dt[i]
            if i < ctx.grid.steps - 1:
                x = x_mean + math.sqrt(g2[i] * dt[i]) * ctx.randn_like(x)
        return x_mean / ctx.s[-1]


@register
class PredictorCorrector(_ScoreSDESolver):
    """Predictor-corrector sampler (Song et al. 2021, Algorithms 2-3; score_sde ``ReverseDiffusionPredictor``
    + ``LangevinCorrector``).  One round at node i, g = grad log p, z ~ N(0, I):

        Langevin corrector (``n_corrector`` times):  eps = 2 a (snr ||z|| / ||g||)^2,  x = x + eps g + sqrt(2 eps) z
        reverse-diffusion predictor:                 x_mean = (2 - a_i) x + G_i^2 g,    x = x_mean + G_i z

    (a = 1 on VE, alpha_i = a_i^2 on VP).  Returns the last x_mean.  NFE = (1 + n_corrector) per round.
    ``corrector_norm="batch"`` (default) averages the norms over the batch, as score_sde and PDS: a sample
    then depends on its batch (results record the batch size); ``"sample"`` takes them per sample.
    ``discretize="official"``: the official tables, PDS's end time eps k under ``speed_up`` k, and the
    predictor preconditioning the whole reverse drift (``pds`` then reproduces fudan-zvg/PDS's loop to
    rounding, tests/test_pds_official.py; measured gaps: benchmarks/schedules/README.md).
    """

    info = SolverInfo(
        name="pc", family="score_sde", kind="sde", order=1, calls_per_step=2,
        paper=SCORE_SDE + ", Algorithms 2-3 (reverse diffusion + Langevin)",
        preconditioning=frozenset({"noise"}),
    )

    def __init__(self, snr: float = 0.16, n_corrector: int = 1, corrector_norm: str = "batch",
                 speed_up: float | None = None, base_steps: int | None = None, discretize: str = "continuous",
                 **base):
        super().__init__(**base)
        if discretize not in DISCRETIZATIONS:
            raise ValueError(f"unknown discretize {discretize!r}; choose one of {', '.join(DISCRETIZATIONS)}")
        if discretize == "official" and self.final_step != "zero":
            raise ValueError("discretize='official' follows score_sde's N-node time grid, which ends with the "
                             "last round's mean: use final='zero'")
        self.discretize = discretize
        if speed_up is not None:
            base_steps = 2000 if base_steps is None else base_steps
            if not speed_up > 0:
                raise ValueError(f"speed_up must be > 0, got {speed_up}")
            if int(base_steps / speed_up) < 2:
                raise ValueError(f"speed_up={speed_up} leaves {int(base_steps / speed_up)} of {base_steps} steps; at "
                                 f"least 2 are needed")
        if base_steps is not None and (int(base_steps) != base_steps or base_steps < 2):
            raise ValueError(f"base_steps must be an integer >= 2, got {base_steps}")
        self.speed_up, self.base_steps = speed_up, base_steps
        if snr <= 0:
            raise ValueError(f"snr must be > 0, got {snr}")
        if int(n_corrector) != n_corrector or n_corrector < 0:
            raise ValueError(f"n_corrector must be a non-negative integer, got {n_corrector}")
        if corrector_norm not in ("sample", "batch"):
            raise ValueError(f"corrector_norm must be 'sample' or 'batch', got {corrector_norm!r}")
        self.snr, self.n_corrector, self.corrector_norm = float(snr), int(n_corrector), corrector_norm

    def info_changes(self) -> dict:
        return {"calls_per_step": 1 + self.n_corrector}

    @property
    def fixed_steps(self) -> int | None:
        """``speed_up`` k fixes N = int(N0 / k) steps."""
        return None if self.speed_up is None else int(self.base_steps / self.speed_up)

    def make_grid(self, process, steps: int):
        """With ``base_steps`` N0 (or ``speed_up`` k), PDS's speed-up semantics: N = int(N0 / k)
        steps and the end time eps scales too (score_sde's t grid): to eps N0 / N by default, to
        eps k as fudan-zvg/PDS's run_lib.py does with ``discretize="official"`` (the two differ
        when k does not divide N0: 1% at N0 = 2000, k = 30)."""
        if self.base_steps is not None and self.grid_for(process) == "uniform_t":
            official_end = self.discretize == "official" and self.speed_up is not None
            t_min = process.t_min * (self.speed_up if official_end else self.base_steps / steps)
            grid = super().make_grid(process, steps, t_min=t_min)
        else:
            grid = super().make_grid(process, steps)
        if self.discretize == "official":
            official_coefficients(process, grid)  # the tables exist for this process and step count
        return grid

    def check_model(self, model) -> None:
        super().check_model(model)
        if self.discretize == "official" and model.process.name not in ("ve", "vp"):
            raise ValueError(_no_official_table(model.process))

    def run(self, ctx: Context, x_hat: Tensor) -> Tensor:
        s, sigma, steps = ctx.s, ctx.sigma, ctx.grid.steps
        official = self.discretize == "official"
        if official:
            a, g2 = official_coefficients(ctx.process, ctx.grid)
        else:
            a = [s[i] / s[i + 1] for i in range(steps)]
            g2 = [s[i] ** 2 * (sigma[i] ** 2 - sigma[i + 1] ** 2) for i in range(steps)]
        per_sample = self.corrector_norm == "sample"
        x = s[0] * x_hat
        for i in range(steps):
            for _ in range(self.n_corrector):
                grad = ctx.precondition_drift(score_x(ctx, x, i))
                z = ctx.randn_like(x)
                eps = 2 * a[i] ** 2 * (self.snr * _norms(z, per_sample) / _norms(grad, per_sample)) ** 2
                x = x + eps * grad + torch.sqrt(2 * eps) * z
            if official:  # x_mean = x - M M^T rev_f, rev_f = (a - 1) x - G^2 score (PDS's predictor)
                x_mean = x + ctx.precondition_drift((1 - a[i]) * x + g2[i] * score_x(ctx, x, i))
            else:
                x_mean = (2 - a[i]) * x + g2[i] * ctx.precondition_drift(score_x(ctx, x, i))
            if i < steps - 1:
                x = x_mean + math.sqrt(g2[i]) * ctx.randn_like(x)
        return x_mean / s[-1]
