"""score_sde samplers (Song et al. 2021, "Score-Based Generative Modeling through
Stochastic Differential Equations", ICLR): Euler-Maruyama on the reverse SDE and the
predictor-corrector sampler (reverse-diffusion predictor + Langevin corrector).

These discretise in the process's own time and state ``x = s(t) x_hat``, as score_sde
does, so VE and VP runs follow the reference update.  Between grid nodes ``t_i > t_{i+1}``
the forward kernel is ``x_i = a_i x_{i+1} + G_i n`` with

    a_i = s_i / s_{i+1},        G_i^2 = s_i^2 (sigma_i^2 - sigma_{i+1}^2).

On VE (a = 1) this is score_sde's ``G^2 = sigma_i^2 - sigma_{i-1}^2``; on VP it is the
exact-kernel form of its discrete betas (beta_i = 1 - a_i^2).

The same class is PDS (Ma et al. 2022) and TDAS when a preconditioner is attached: the
Gaussian draws become ``M z`` and, for PDS, the score becomes ``M M^T score``.

``discretize="official"`` instead takes the coefficients from the discrete tables of
score_sde's (and fudan-zvg/PDS's) ``SDE.discretize``, indexed by ``j = floor(t_i (N - 1))``
(N rounds, float32 times as there): on VE ``G_i^2 = sigma_j^2 - sigma_{j-1}^2`` over the
geometric table ``sigma_j = sigma_min (sigma_max / sigma_min)^(j / (N - 1))`` with
``sigma_{-1} = 0`` (the last round's ``G^2`` is ``sigma_min^2``); on VP ``beta_j`` from
``linspace(beta_min / N, beta_max / N, N)``, ``a_i = sqrt(1 - beta_j)``, ``G_i^2 = beta_j``
and the corrector's ``alpha = 1 - beta_j``.
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
    ``N = grid.steps`` rounds at ``grid.t[:N]``: the table index is ``floor(t (N - 1))`` computed in
    float32 as the official code does (``torch.linspace`` times, ``(t * (N - 1)).long()``)."""
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
    """Predictor-corrector sampler (Song et al. 2021, Algorithms 2-3; score_sde
    ``ReverseDiffusionPredictor`` + ``LangevinCorrector``).  One round at node i:

    Langevin corrector (``n_corrector`` times), with g = grad log p, z ~ N(0, I):
        eps = 2 a (snr ||z|| / ||g||)^2,   x = x + eps g + sqrt(2 eps) z
    (a = 1 on VE, a = alpha_i = a_i^2 on VP);

    reverse-diffusion predictor from t_i to t_{i+1}:
        x_mean = (2 - a_i) x + G_i^2 g,    x = x_mean + G_i z.

    The run returns the last x_mean (score_sde's ``denoise`` output).  NFE = (1 +
    n_corrector) per round.

    ``corrector_norm="batch"`` (default) averages ||z|| and ||g|| over the batch, as
    score_sde and PDS do: this is the only solver option in solverzoo that lets a sample
    depend on its batch (results record the batch size).  ``"sample"`` takes the norms per
    sample, so samples are batch-independent; in high dimension the two agree (measured
    variance error 0.5% apart at d = 1024), but in low dimension the per-sample ratio is
    heavy-tailed and biases the corrector (d = 4: variance 1.29 instead of 0.5).

    ``discretize``: ``"continuous"`` (default; a_i and G_i^2 from the process at the grid's
    nodes, the exact forward kernel) or ``"official"`` (score_sde's / fudan-zvg/PDS's discrete
    tables, module docstring; with ``speed_up`` k the end time is eps k as in PDS's run_lib.py,
    not eps N0 / int(N0 / k); and the predictor preconditions the whole reverse drift,
    ``x_mean = x + M M^T((1 - a) x + G^2 score)``, where the default preconditions the score
    only -- the same on VE, where a = 1).  With it, ``pds`` reproduces the official PDS loop to
    rounding (tests/test_pds_official.py).  Measured on gmm-image 3x32x32 (PDS filters, alpha 5,
    64 samples, same draws; benchmarks/schedules/pds_official.py): VE 0.01..50, k = 200 (N = 10):
    G^2 differs by up to 3.5% (the last round: sigma_min^2 against sigma(eps k)^2), final samples
    by 0.13 relative; k = 30 (N = 66, end times 3.00e-4 vs 3.03e-4): 0.52% and 9.9e-4.  VP
    (N0 = 1000): k = 30 (N = 33): G^2 up to 3.0x apart in the last round (37% before it), samples
    0.52 relative; k = 10 (N = 100): 0.32 -- the official beta_j = beta(t) / N is a coarse
    kernel at these N.
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
            self.fixed_steps = int(base_steps / speed_up)
            if self.fixed_steps < 2:
                raise ValueError(f"speed_up={speed_up} leaves {self.fixed_steps} of {base_steps} steps; at least 2 are needed")
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
