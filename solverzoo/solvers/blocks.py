"""Building blocks shared by the solver families: the exponential-integrator phi functions, multistep
weights, EDM's churn, k-diffusion's ancestral split, a Brownian motion in sigma, the SEEDS running
noise, and the bases :class:`ExponentialRK` (single-step exponential integrators, on
:class:`ExponentialStages`) and :class:`Multistep` (history-based solvers).

Frame: x_hat against sigma, where the probability-flow ODE is dx/dsigma = (x - D(x; sigma)) / sigma
(Karras et al. 2022, Eq. 4), or against lambda = -log sigma (h = lambda_t - lambda_s), where its
exact data-prediction solution is x_t = (sigma_t / sigma_s) x_s + int_0^h e^{-(h - r)} D(lambda_s + r) dr.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache

from numpy.polynomial import Polynomial
from torch import Tensor

from .base import Context, Solver

__all__ = [
    "phi", "slope_weight", "curve_weight", "lagrange_weights", "adams_gammas", "expand_differences", "ab_weights",
    "exponential_lagrange_weights", "ancestral_step", "check_eta", "churn", "check_churn", "SigmaBrownian",
    "stage_sigmas", "noise_chain", "PREDICTIONS", "ExponentialStages", "FLOW_STAGES", "ExponentialRK", "Multistep",
    "WARMUPS", "warmup_note",
]

PREDICTIONS = ("data", "noise")


# --- exponential-integrator phi functions --------------------------------------------------------


def phi(k: int, z: float) -> float:
    """The phi-function phi_k(z) = sum_{j>=0} z^j / (j + k)!  (phi_0 = e^z, phi_1 = (e^z - 1)/z,
    phi_{k+1} = (phi_k - 1/k!) / z), by its series for |z| < 1/2 (no cancellation) and by the
    recursion otherwise."""
    if k < 0:
        raise ValueError(f"phi_k needs k >= 0, got {k}")
    if abs(z) < 0.5:
        term, total = 1.0 / math.factorial(k), 0.0
        for j in range(30):
            total += term
            term *= z / (j + k + 1)
        return total
    value = math.exp(z)
    for m in range(1, k + 1):
        value = (value - 1.0 / math.factorial(m - 1)) / z
    return value


def slope_weight(z: float) -> float:
    """1 - (1 - e^{-z}) / z = z phi_2(-z): int_0^h e^{-(h - r)} r dr = h slope_weight(h), the weight of
    h D' in DPM-Solver++'s expansion (k-diffusion's ``phi_2``)."""
    return z * phi(2, -z)


def curve_weight(z: float) -> float:
    """slope_weight(z)/z - 1/2 = -z phi_3(-z): minus the weight of h^2 D'' in the same expansion
    (k-diffusion's ``phi_3``)."""
    return -z * phi(3, -z)


def z_plus_expm1_neg(z: float) -> float:
    """z + e^{-z} - 1 = z^2/2 - z^3/6 + ..., without cancellation for small z."""
    if abs(z) < 1e-2:
        return z * z * (1 / 2 - z * (1 / 6 - z * (1 / 24 - z * (1 / 120 - z / 720))))
    return z + math.expm1(-z)


def expm1_minus_z(z: float) -> float:
    """e^z - 1 - z = z^2/2 + z^3/6 + ..., without cancellation for small z."""
    if abs(z) < 1e-2:
        return z * z * (1 / 2 + z * (1 / 6 + z * (1 / 24 + z * (1 / 120 + z / 720))))
    return math.expm1(z) - z


# --- multistep weights -----------------------------------------------------------------------------


def lagrange_weights(nodes: Sequence[float], a: float, b: float, log: bool = False) -> list[float]:
    """w_j = int_a^b l_j(u(sigma)) dsigma for the Lagrange basis l_j on u(nodes), u = sigma or
    u = log sigma (``log=True``; then b may be 0, where the integrand vanishes).  Exact: the basis
    polynomials are integrated in closed form (in log sigma through int P(u) e^u du =
    e^u (P - P' + P'' - ...))."""
    nodes = [float(v) for v in nodes]
    if len(set(nodes)) != len(nodes):
        raise ValueError(f"Lagrange nodes must be distinct, got {nodes}")
    if log and (min(nodes) <= 0 or a <= 0 or b < 0):
        raise ValueError("log-sigma interpolation needs positive nodes and a >= b >= 0")
    u = [math.log(v) for v in nodes] if log else nodes
    weights = []
    for j, uj in enumerate(u):
        basis = Polynomial([1.0])
        for k, uk in enumerate(u):
            if k != j:
                basis = basis * Polynomial([-uk, 1.0]) / (uj - uk)
        if not log:
            anti = basis.integ()
            weights.append(float(anti(b) - anti(a)))
        else:
            series, term, sign = Polynomial([0.0]), basis, 1.0
            while True:
                series = series + sign * term
                if term.degree() == 0:
                    break
                term, sign = term.deriv(), -sign
            upper = 0.0 if b == 0 else b * float(series(math.log(b)))
            weights.append(upper - a * float(series(math.log(a))))
    return weights


def exponential_lagrange_weights(nodes: Sequence[float], a: float, b: float, k: float = 1.0) -> list[float]:
    """w_j = k int_a^b e^{k (l - b)} L_j(l) dl for the Lagrange basis L_j on ``nodes`` (in lambda): the
    weights of D at the nodes in an exponential Adams step of dx = k (D - x) dlambda from lambda = a to
    b (SA-Solver's predictor and corrector, Xue et al. 2023, Eq. 14-15, with k = 1 + tau^2).  In
    u = l - b: int_{a-b}^0 e^{k u} P(u) du = [e^{k u} sum_m (-1)^m P^(m)(u) / k^{m+1}] (closed form)."""
    nodes = [float(v) - b for v in nodes]
    if len(set(nodes)) != len(nodes):
        raise ValueError(f"Lagrange nodes must be distinct, got {nodes}")
    lower = a - b
    weights = []
    for j, uj in enumerate(nodes):
        basis = Polynomial([1.0])
        for m, um in enumerate(nodes):
            if m != j:
                basis = basis * Polynomial([-um, 1.0]) / (uj - um)
        series, term, scale = Polynomial([0.0]), basis, 1.0 / k
        while True:
            series = series + scale * term
            if term.degree() == 0:
                break
            term, scale = term.deriv(), -scale / k
        weights.append(k * (float(series(0.0)) - math.exp(k * lower) * float(series(lower))))
    return weights


@cache
def adams_gammas(k: int) -> tuple[float, ...]:
    """gamma_0..gamma_{k-1} of the Adams-Bashforth backward-difference series:
    gamma_j = 1 - sum_{i<j} gamma_i / (j + 1 - i)  (1, 1/2, 5/12, 3/8, 251/720, ...)."""
    out: list[float] = []
    for j in range(k):
        out.append(1.0 - sum(g / (j + 1 - i) for i, g in enumerate(out)))
    return tuple(out)


def expand_differences(a: Sequence[float]) -> list[float]:
    """sum_j a_j nabla^j y_n as weights on y_n, y_{n-1}, ...: nabla^j y_n = sum_m (-1)^m C(j, m) y_{n-m}."""
    return [sum(aj * (-1) ** m * math.comb(j, m) for j, aj in enumerate(a) if m <= j) for m in range(len(a))]


def ab_weights(k: int) -> list[float]:
    """Constant-step Adams-Bashforth-k weights on f_n, f_{n-1}, ... (AB2: 3/2, -1/2)."""
    return expand_differences(adams_gammas(k))


# --- noise: ancestral split, churn, Brownian motion in sigma -----------------------------------------


def ancestral_step(sigma_from: float, sigma_to: float, eta: float = 1.0) -> tuple[float, float]:
    """(sigma_down, sigma_up) of k-diffusion's ``get_ancestral_step``:
    sigma_up = min(sigma_to, eta sigma_to sqrt(1 - sigma_to^2 / sigma_from^2)), sigma_down =
    sqrt(sigma_to^2 - sigma_up^2), the latter computed as sigma_to sqrt((1 - eta^2) + eta^2
    sigma_to^2 / sigma_from^2), free of cancellation."""
    if eta == 0 or sigma_to == 0:
        return sigma_to, 0.0
    q2 = (sigma_to / sigma_from) ** 2
    if eta**2 * (1 - q2) >= 1:  # k-diffusion's clamp sigma_up <= sigma_to (eta > 1)
        return 0.0, sigma_to
    up = eta * sigma_to * math.sqrt(1 - q2)
    return sigma_to * math.sqrt((1 - eta**2) + eta**2 * q2), up


def check_eta(name: str, eta: float, s_noise: float, most: float = math.inf) -> None:
    """eta in [0, most] and s_noise >= 0, or a ValueError naming the solver."""
    if not 0 <= eta <= most or s_noise < 0:
        bound = f"0 <= eta <= {most:g}" if math.isfinite(most) else "eta >= 0"
        raise ValueError(f"{name} needs {bound} and s_noise >= 0; got eta={eta}, s_noise={s_noise}")


def check_churn(name: str, s_churn: float, s_tmin: float, s_tmax: float, s_noise: float) -> None:
    """EDM's churn options: s_churn >= 0, s_noise >= 0 and 0 <= s_tmin <= s_tmax."""
    if s_churn < 0 or s_noise < 0 or s_tmin < 0 or s_tmax < s_tmin:
        raise ValueError(f"{name} needs s_churn >= 0, s_noise >= 0 and 0 <= s_tmin <= s_tmax; got s_churn={s_churn}, "
                         f"s_noise={s_noise}, s_tmin={s_tmin}, s_tmax={s_tmax}")


def churn(ctx: Context, x: Tensor, sigma: float, steps: int, s_churn: float, s_tmin: float, s_tmax: float,
          s_noise: float) -> tuple[Tensor, float]:
    """EDM's stochastic churn (Karras et al. 2022, Algorithm 2, lines 4-6): raise the noise level
    to sigma_hat = (1 + gamma) sigma with gamma = min(s_churn / N, sqrt(2) - 1) inside
    [s_tmin, s_tmax], adding sqrt(sigma_hat^2 - sigma^2) s_noise z."""
    gamma = min(s_churn / steps, math.sqrt(2) - 1) if s_churn > 0 else 0.0
    if not gamma or not s_tmin <= sigma <= s_tmax:
        return x, sigma
    sigma_hat = sigma * (1 + gamma)
    return x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * ctx.randn_like(x), sigma_hat


class SigmaBrownian:
    """A Brownian motion W(sigma) on decreasing sigma, started at W(start) = 0 and drawn forward:
    each new point below the lowest one so far costs one fresh draw ``draw(last, sigma)`` (the
    normalised increment over [sigma, last]: ``ctx.randn_like(x, last, sigma)``),
    W(sigma) = W(last) + sqrt(last - sigma) z (independent Gaussian increments: the joint law of
    k-diffusion's BrownianTree at the visited points).  ``increment(a, b)`` is k-diffusion's
    normalised noise (W(b) - W(a)) / sqrt(a - b), a > b."""

    def __init__(self, start: float, draw: Callable[[float, float], Tensor]):
        self.draw = draw
        self.points: list[float] = [float(start)]
        self.values: list = [0.0]

    def W(self, sigma: float):
        if sigma in self.points:
            return self.values[self.points.index(sigma)]
        last = self.points[-1]
        if sigma > last:
            raise ValueError(f"SigmaBrownian draws forward only: sigma={sigma} lies above the lowest point {last} "
                             f"but is not a visited point")
        self.values.append(self.draw(last, sigma) * math.sqrt(last - sigma) + self.values[-1])
        self.points.append(float(sigma))
        return self.values[-1]

    def increment(self, a: float, b: float) -> Tensor:
        w_b = self.W(b)  # b first: it may draw
        return (w_b - self.W(a)) / math.sqrt(a - b)


# --- single-step exponential integrators (SEEDS, ETD-ERK, DPM-Solver++(2S)) ---------------------


def stage_sigmas(sigma_s: float, sigma_t: float, c: Sequence[float]) -> list[float]:
    """sigma at lambda_s + c h for each c (h = log(sigma_s / sigma_t)): sigma_s (sigma_t/sigma_s)^c."""
    return [sigma_s * (sigma_t / sigma_s) ** ci for ci in c]


def noise_chain(sigmas: Sequence[float], prediction: str = "data") -> list[tuple[float, float]]:
    """(a_j, b_j) of the running noise N_j = a_j N_{j-1} + b_j xi_j over the sub-intervals
    sigmas[0] > sigmas[1] > ... of one step (N_0 = 0, xi_j independent standard normals): the exact
    stochastic integrals of the step's solution from sigmas[0] to each sigmas[j], all of one Brownian
    path.  Data prediction a_j = (sigma_j / sigma_{j-1})^2, b_j = sigma_j sqrt(1 - a_j); noise
    prediction a_j = 1, b_j = sqrt(sigma_{j-1}^2 - sigma_j^2).
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    out = []
    for prev, cur in zip(sigmas[:-1], sigmas[1:]):
        if not 0 < cur <= prev:
            raise ValueError(f"noise_chain needs 0 < sigma_j <= sigma_(j-1), got {prev} -> {cur}")
        delta = math.log(prev / cur)
        if prediction == "data":
            out.append(((cur / prev) ** 2, cur * math.sqrt(-math.expm1(-2 * delta))))
        else:
            out.append((1.0, cur * math.sqrt(math.expm1(2 * delta))))
    return out


class ExponentialStages:
    """The stages of the single-step exponential integrators of dx = kappa (D - x) dlambda [+ noise]
    (Gonzalez et al. 2023; Lu et al. 2022, Algorithms 1-2): over u = c h, with F = D (``prediction="data"``)
    or eps = (x - D) / sigma (``"noise"``) and F' replaced by stage differences,

        x_u = decay(u) x + f_weight(u) F_s + df_weight(u) F' + N_u
        data:  decay = e^{-kappa u}, f_weight = 1 - e^{-kappa u},          df_weight = u - (1 - e^{-kappa u}) / kappa
        noise: decay = 1,            f_weight = -kappa sigma_u (e^u - 1), df_weight = -kappa sigma_u (e^u - 1 - u)

    kappa = 1: the probability-flow ODE, no noise (DPM-Solver(++)-1/2/3); kappa = 2: the reverse SDE (SEEDS),
    N_u the running noise of :func:`noise_chain`.  ``stepK(ctx, x, s, t, f_s=None)`` is the order-K scheme
    from sigma s to t > 0 (order 2: the final weight f_weight / (2 c2), DPM-Solver-2's form); ``f_s`` is
    the first stage's model output when the caller has it.
    """

    kappa: int = 1
    prediction: str = "data"

    def decay(self, u: float) -> float:
        return math.exp(-self.kappa * u) if self.prediction == "data" else 1.0

    def f_weight(self, u: float, sigma_u: float) -> float:
        if self.prediction == "data":
            return -math.expm1(-self.kappa * u)
        return -self.kappa * sigma_u * math.expm1(u)

    def df_weight(self, u: float, sigma_u: float) -> float:
        if self.prediction == "data":
            return z_plus_expm1_neg(self.kappa * u) / self.kappa
        return -self.kappa * sigma_u * expm1_minus_z(u)

    def F(self, ctx: Context, x: Tensor, sigma: float) -> Tensor:
        """The model output the scheme expands: D (data) or eps = (x - D) / sigma (noise). One NFE."""
        d = ctx.denoise(x, sigma)
        return d if self.prediction == "data" else (x - d) / sigma

    def noises(self, ctx: Context, x: Tensor, sigmas: Sequence[float]) -> list:
        """The running noise N_1..N_k at sigmas[1:] (one Brownian path); zeros for the ODE."""
        if self.kappa == 1:
            return [0.0] * (len(sigmas) - 1)
        out, n = [], 0.0
        for a, b in noise_chain(sigmas, self.prediction):
            n = ctx.randn_like(x) * b + a * n
            out.append(n)
        return out

    def step1(self, ctx: Context, x: Tensor, s: float, t: float, f_s: Tensor | None = None) -> Tensor:
        h = math.log(s / t)
        (n_t,) = self.noises(ctx, x, [s, t])
        f_s = self.F(ctx, x, s) if f_s is None else f_s
        return x * self.decay(h) + f_s * self.f_weight(h, t) + n_t

    def step2(self, ctx: Context, x: Tensor, s: float, t: float, c2: float = 0.5, f_s: Tensor | None = None) -> Tensor:
        h = math.log(s / t)
        (s2,) = stage_sigmas(s, t, [c2])
        n_2, n_t = self.noises(ctx, x, [s, s2, t])
        f_s = self.F(ctx, x, s) if f_s is None else f_s
        x_2 = x * self.decay(c2 * h) + f_s * self.f_weight(c2 * h, s2) + n_2
        f_2 = self.F(ctx, x_2, s2)
        return x * self.decay(h) + f_s * self.f_weight(h, t) + (f_2 - f_s) * (self.f_weight(h, t) / (2 * c2)) + n_t

    def step3(self, ctx: Context, x: Tensor, s: float, t: float, c2: float = 1 / 3, c3: float = 2 / 3,
              f_s: Tensor | None = None) -> Tensor:
        h = math.log(s / t)
        s2, s3 = stage_sigmas(s, t, [c2, c3])
        n_2, n_3, n_t = self.noises(ctx, x, [s, s2, s3, t])
        f_s = self.F(ctx, x, s) if f_s is None else f_s
        x_2 = x * self.decay(c2 * h) + f_s * self.f_weight(c2 * h, s2) + n_2
        f_2 = self.F(ctx, x_2, s2)
        x_3 = (x * self.decay(c3 * h) + f_s * self.f_weight(c3 * h, s3)
               + (f_2 - f_s) * (self.df_weight(c3 * h, s3) / (c2 * h)) + n_3)
        f_3 = self.F(ctx, x_3, s3)
        return x * self.decay(h) + f_s * self.f_weight(h, t) + (f_3 - f_s) * (self.df_weight(h, t) / (c3 * h)) + n_t


#: the probability-flow ODE's data-prediction stages (DPM-Solver++(1/2S/3S)): the multistep ``warmup="rk"`` start
FLOW_STAGES = ExponentialStages()


class ExponentialRK(ExponentialStages, Solver):
    """Single-step exponential integrators as solvers: a subclass writes ``step(ctx, x, s, t)`` from
    ``step1``/``step2``/``step3`` (:class:`ExponentialStages`; kappa = 2 unless it sets 1); a step to
    sigma = 0 (h = inf) is the denoiser, every scheme's limit.  Budget: ``stages`` calls per step, one for
    a step to zero (``zero_step_calls=1`` in its info).  Readable forms of SEEDS-1/2/3: ``readable.seeds1`` etc."""

    kappa: int = 2

    def __init__(self, prediction: str = "data", **base):
        super().__init__(**base)
        if prediction not in PREDICTIONS:
            raise ValueError(
                f"prediction must be 'data' (D, data prediction: the DPM-Solver++ form) or 'noise' "
                f"(eps, noise prediction: the DPM-Solver form); got {prediction!r}"
            )
        self.prediction = prediction

    def step(self, ctx: Context, x: Tensor, s: float, t: float) -> Tensor:
        raise NotImplementedError

    def run(self, ctx: Context, x: Tensor) -> Tensor:
        sigma = ctx.sigma
        for i in range(ctx.grid.steps):
            if sigma[i + 1] == 0:  # h = inf: every scheme's limit is the denoiser
                x = ctx.denoise(x, sigma[i])
            else:
                x = self.step(ctx, x, sigma[i], sigma[i + 1])
        return x


# --- history-based solvers ------------------------------------------------------------------------------


WARMUPS = ("lower", "rk")


def warmup_note(order: int) -> str:
    """``SolverInfo.order_note`` of a multistep method of nominal order >= 3 (Multistep docstring)."""
    return (f"{order} with warmup='rk' and lower_order_final off; the default first-order start (as the "
            f"references) bounds the global order at 2")


class Multistep(Solver):
    """History-based solvers: one model call per step, an ``order`` with a ``warmup`` start and
    ``lower_order_final``, and ``denoise_to_zero``.

    Step i of N uses order min(order, i + 1) (the history available) and, with ``lower_order_final``,
    min(., N - i) (DPM-Solver's rule, applied here whenever the option is on).  A first-order start bounds
    the global order at 2 (its O(h^2) local error), so the references' start (``warmup="lower"``) caps an
    order-p >= 3 method at 2; ``warmup="rk"`` makes steps i < p - 2 single-step exponential RK steps of
    order p - 1 (:data:`FLOW_STAGES`, p - 2 more calls each) and the method reaches order p
    (tests/test_orders.py).  ``denoise_to_zero``: a last call x = D(x; sigma_min) on a grid ending at
    sigma_min (DPM-Solver's option).  Budget (:meth:`info_changes`): N + (p - 2)^2 for ``warmup="rk"``
    (``min_steps`` p - 1) + 1 for ``denoise_to_zero``.
    """

    max_order: int = 3

    def __init__(self, order: int = 2, lower_order_final: bool = True, denoise_to_zero: bool = False,
                 warmup: str = "lower", **base):
        super().__init__(**base)
        if int(order) != order or not 1 <= order <= self.max_order:
            raise ValueError(f"{self.name} order must be an integer in 1..{self.max_order}, got {order}")
        if warmup not in WARMUPS:
            raise ValueError(f"{self.name} warmup must be 'lower' (lower-order multistep steps first, as the "
                             f"references) or 'rk' (single-step RK start of order - 1: full order), got {warmup!r}")
        self.order = int(order)
        self.lower_order_final = bool(lower_order_final)
        self.denoise_to_zero = bool(denoise_to_zero)
        self.warmup = warmup
        if self.denoise_to_zero and self.final == "zero" and not isinstance(self.grid, (list, tuple)):
            raise ValueError(f"{self.name}: denoise_to_zero needs final='sigma_min' (a grid ending at zero already "
                             f"ends with the denoising step x = D(x; sigma_min))")

    def info_changes(self) -> dict:
        """Order reached (:meth:`declared_order`) and the budget of ``warmup`` and ``denoise_to_zero``."""
        warm = self.warmup_steps()
        return {"order": self.declared_order(), "extra_calls": int(self.denoise_to_zero) + warm * (self.order - 2),
                "min_steps": max(type(self).info.min_steps, warm + 1)}

    def formula_order(self) -> int:
        """The order of the update itself, with a full history (a subclass may raise it: a corrector)."""
        return self.order

    def declared_order(self) -> int:
        """The global order reached (class docstring): min(., 2) after a first-order step."""
        full = self.formula_order()
        return min(full, 2) if self.warmup == "lower" or self.lower_order_final else full

    def warmup_steps(self) -> int:
        """How many first steps are single-step RK steps (``warmup="rk"``): order - 2."""
        return max(self.order - 2, 0) if self.warmup == "rk" else 0

    def warmup_step(self, ctx: Context, x: Tensor, d: Tensor, i: int) -> Tensor:
        """Step i of the ``warmup="rk"`` start: the ODE's exponential RK of order p - 1 (DPM-Solver++(2S) with
        c2 = 1/2, or the third-order scheme with c2 = 1/3, c3 = 2/3) from D_i = d (:data:`FLOW_STAGES`)."""
        step = FLOW_STAGES.step2 if self.order == 3 else FLOW_STAGES.step3
        return step(ctx, x, ctx.sigma[i], ctx.sigma[i + 1], f_s=d)

    def step_order(self, i: int, steps: int) -> int:
        """Order of step i of ``steps``: warm-up min(order, i + 1); lower_order_final min(., steps - i)."""
        order = min(self.order, i + 1)
        return min(order, steps - i) if self.lower_order_final else order

    def finish(self, ctx: Context, x: Tensor) -> Tensor:
        """The optional final denoise at the last (positive) sigma: one more call."""
        if self.denoise_to_zero:
            if ctx.grid.final == "zero":
                raise ValueError(f"{self.name}: denoise_to_zero on a grid that already ends at sigma = 0")
            x = ctx.denoise(x, ctx.sigma[-1])
        return x
