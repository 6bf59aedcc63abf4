"""Core solvers (euler, heun, euler_maruyama, pc) on GaussianModel, where everything is exact.

* convergence order of euler / heun against the closed-form probability-flow ODE;
* heun (Algorithms 1 and 2 of EDM), euler, pc and euler_maruyama against loops written
  here from the papers' equations, fed with the same per-sample noise as ``sample()``;
* euler_maruyama and pc converge in distribution to the data law.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import solverzoo
from solverzoo.models.gaussian import GaussianModel
from solverzoo.noise import INIT, PATH, NoiseSource

F64 = torch.float64


def make_model(proc="edm", shape=(16,)):
    n = math.prod(shape)
    return GaussianModel(shape, mean=torch.linspace(-1, 1, n).reshape(shape),
                         var=torch.linspace(0.25, 4, n).reshape(shape), process=proc)


def gauss_D(model: GaussianModel, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The Gaussian posterior mean written out here (not via model.denoise)."""
    mu, v = model.mean.to(F64), model.var.to(F64)
    return mu + v / (v + sigma**2) * (x - mu)


def init_noise(seed, indices, shape):
    return NoiseSource(seed, indices, INIT, dtype=F64).randn(shape)


def eq5(n, smin, smax, rho=7.0):
    return [(smax ** (1 / rho) + (i / (n - 1) if n > 1 else 0.0) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
            for i in range(n)]


class CountingGaussian(GaussianModel):
    """Counts calls of denoise (independently of the library's CountingDenoiser)."""

    calls = 0

    def denoise(self, x_hat, sigma):
        self.calls += 1
        return super().denoise(x_hat, sigma)


# ---------------------------------------------------------------------------------
# convergence order on the probability-flow ODE
# ---------------------------------------------------------------------------------
STEPS = [8, 16, 32, 64]


def ode_errors(name, proc):
    errs = []
    for n in STEPS:
        model = make_model(proc)
        r = solverzoo.sample(model, name, steps=n, num_samples=8, seed=0, dtype=F64, final="sigma_min")
        s0, s1 = r.grid.sigma[0].item(), r.grid.sigma[-1].item()
        assert s1 > 0 and r.grid.final == "sigma_min"
        exact = model.ode_flow(s0 * init_noise(0, range(8), model.shape), s0, s1)
        errs.append((r.samples - exact).abs().max().item())
    return errs


@pytest.mark.parametrize("proc", ["edm", "ve", "vp"])
@pytest.mark.parametrize("name,order", [("euler", 1), ("heun", 2)])
def test_ode_convergence_order(name, order, proc):
    errs = ode_errors(name, proc)
    slope = -np.polyfit(np.log(STEPS), np.log(errs), 1)[0]
    # measured: euler 0.94-0.95, heun 2.07-2.09 (edm, ve, vp)
    assert abs(slope - order) < 0.3, (name, proc, errs, slope)
    assert errs[-1] < errs[0] / 2 ** (order * 3 - 1)
    # the last halving alone has the right order too (asymptotic regime)
    assert abs(math.log2(errs[-2] / errs[-1]) - order) < 0.3


def test_one_euler_step_to_zero_is_the_denoiser():
    model = make_model("edm")
    r = solverzoo.sample(model, "euler", steps=1, num_samples=4, seed=1, dtype=F64)
    assert r.grid.sigma.tolist() == [80.0, 0.0] and r.nfe == 1
    x = 80.0 * init_noise(1, range(4), model.shape)
    torch.testing.assert_close(r.samples, gauss_D(model, x, 80.0), rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------------
# hand-written reference loops
# ---------------------------------------------------------------------------------
def test_euler_equals_hand_loop():
    model, n, idx = make_model("edm"), 12, range(5)
    r = solverzoo.sample(model, "euler", steps=n, num_samples=5, seed=2, dtype=F64)
    t = eq5(n, 0.002, 80.0) + [0.0]
    x = t[0] * init_noise(2, idx, model.shape)
    for i in range(n):
        d = (x - gauss_D(model, x, t[i])) / t[i]
        x = x + (t[i + 1] - t[i]) * d
    torch.testing.assert_close(r.samples, x, rtol=1e-11, atol=1e-12)


def edm_sampler(model, x_init, t_steps, randn, s_churn=0.0, s_min=0.0, s_max=float("inf"), s_noise=1.0):
    """Karras et al. 2022, Algorithm 2 (Algorithm 1 when s_churn = 0), as in the paper.

    Noise is drawn only on steps with gamma > 0 (the library's documented draw order)."""
    n = len(t_steps) - 1
    x_next = x_init
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        x_cur = x_next
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_min <= t_cur <= s_max else 0.0
        t_hat = t_cur + gamma * t_cur
        x_hat = x_cur
        if gamma > 0:
            x_hat = x_cur + math.sqrt(t_hat**2 - t_cur**2) * s_noise * randn(x_cur)
        d_cur = (x_hat - gauss_D(model, x_hat, t_hat)) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if i < n - 1:
            d_prime = (x_next - gauss_D(model, x_next, t_next)) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


@pytest.mark.parametrize("n", [1, 2, 18])
def test_heun_equals_algorithm_1(n):
    model, idx = make_model("edm"), range(6)
    runs = [solverzoo.sample(model, "heun", steps=n, num_samples=6, seed=seed, dtype=F64) for seed in (3, 3)]
    assert torch.equal(runs[0].samples, runs[1].samples)  # deterministic
    t = eq5(n, 0.002, 80.0) + [0.0]
    torch.testing.assert_close(runs[0].grid.sigma, torch.tensor(t, dtype=F64), rtol=1e-12, atol=1e-13)
    ref = edm_sampler(model, t[0] * init_noise(3, idx, model.shape), t, randn=None)
    torch.testing.assert_close(runs[0].samples, ref, rtol=1e-11, atol=1e-12)


def test_heun_s_churn_zero_uses_no_path_noise():
    """s_churn = 0: the result does not depend on the PATH stream, only on the initial noise."""
    model = make_model("edm")
    solver = solverzoo.get_solver("heun")
    assert not solver.stochastic
    a = solverzoo.sample(model, "heun", steps=5, num_samples=3, seed=4, dtype=F64).samples
    b = solverzoo.sample(model, "heun", steps=5, num_samples=3, seed=4, dtype=F64, s_churn=0.0, s_noise=3.0).samples
    assert torch.equal(a, b)


@pytest.mark.parametrize("s_churn,s_min,s_max,s_noise", [(40.0, 0.05, 50.0, 1.003), (2.0, 0.0, float("inf"), 1.0)])
def test_heun_churn_equals_algorithm_2(s_churn, s_min, s_max, s_noise):
    model, n, idx = make_model("edm"), 10, range(4)
    r = solverzoo.sample(model, "heun", steps=n, num_samples=4, seed=5, dtype=F64,
                         s_churn=s_churn, s_tmin=s_min, s_tmax=s_max, s_noise=s_noise)
    t = eq5(n, 0.002, 80.0) + [0.0]
    path = NoiseSource(5, idx, PATH, dtype=F64)
    ref = edm_sampler(model, t[0] * init_noise(5, idx, model.shape), t, randn=path.randn_like,
                      s_churn=s_churn, s_min=s_min, s_max=s_max, s_noise=s_noise)
    torch.testing.assert_close(r.samples, ref, rtol=1e-11, atol=1e-12)
    # (40: gamma saturates at sqrt(2) - 1; 2: gamma = 2 / N = 0.2 is below it)
    # and the churn did something
    plain = solverzoo.sample(model, "heun", steps=n, num_samples=4, seed=5, dtype=F64).samples
    assert (r.samples - plain).abs().max() > 1e-3


@pytest.mark.parametrize("n", [1, 2, 7, 18])
def test_heun_nfe_is_2n_minus_1(n):
    model = CountingGaussian((4,), process="edm")
    r = solverzoo.sample(model, "heun", steps=n, num_samples=3, seed=0)
    assert model.calls == 2 * n - 1 == r.nfe
    model = CountingGaussian((4,), process="edm")
    r = solverzoo.sample(model, "heun", steps=n, num_samples=3, seed=0, final="sigma_min")
    assert model.calls == 2 * n == r.nfe  # no skipped correction when the grid ends at sigma_min
    # budgets: 35 -> 18 steps (EDM's CIFAR-10 setting); 36 also fits only 18
    assert solverzoo.get_solver("heun").steps_for_nfe(35) == 18
    assert solverzoo.get_solver("heun").steps_for_nfe(36) == 18
    assert solverzoo.get_solver("heun", final="sigma_min").steps_for_nfe(36) == 18


def test_heun_budget_below_one_step_raises():
    model = make_model("edm")
    with pytest.raises(ValueError, match="heun"):
        solverzoo.sample(model, "heun", nfe=0)
    # with final='sigma_min' a step costs 2 calls: a budget of 1 cannot be met
    with pytest.raises(ValueError, match="heun"):
        solverzoo.sample(model, "heun", nfe=1, final="sigma_min")


def ve_sigmas(n, smin=0.01 * 5000.0**1e-5, smax=50.0):
    """score_sde VE: timesteps linspace(1, eps = 1e-5, n), i.e. geometric sigmas from sigma_max
    down to sigma(eps) = sigma_min (sigma_max / sigma_min)^eps (n of them), then 0."""
    return [smax * (smin / smax) ** (i / (n - 1)) if n > 1 else smax for i in range(n)] + [0.0]


@pytest.mark.parametrize("n", [1, 2, 9])
def test_pc_without_corrector_is_reverse_diffusion(n):
    """score_sde ReverseDiffusionPredictor on VE: x_mean = x + (sigma_i^2 - sigma_{i+1}^2) score,
    x = x_mean + sqrt(sigma_i^2 - sigma_{i+1}^2) z; the last step returns x_mean."""
    model, seed, idx = make_model("ve"), 6, range(5)
    r = solverzoo.sample(model, "pc", steps=n, num_samples=5, seed=seed, dtype=F64, n_corrector=0)
    assert r.nfe == n
    sig = ve_sigmas(n)
    torch.testing.assert_close(r.grid.sigma, torch.tensor(sig, dtype=F64), rtol=1e-13, atol=0)
    path = NoiseSource(seed, idx, PATH, dtype=F64)
    x = sig[0] * init_noise(seed, idx, model.shape)
    for i in range(n):
        score = (gauss_D(model, x, sig[i]) - x) / sig[i] ** 2
        x_mean = x + (sig[i] ** 2 - sig[i + 1] ** 2) * score
        if i < n - 1:
            x = x_mean + math.sqrt(sig[i] ** 2 - sig[i + 1] ** 2) * path.randn_like(x)
    torch.testing.assert_close(r.samples, x_mean, rtol=1e-11, atol=1e-12)
    assert path.draws == max(n - 1, 0)


def pc_reference(model, proc, n, seed, idx, snr, per_sample, n_corrector=1):
    """score_sde PC sampler (ReverseDiffusionPredictor + LangevinCorrector) in x = s x_hat.

    VP uses the exact-kernel discrete alphas alpha_i = s_i^2 / s_{i+1}^2, beta_i = 1 - alpha_i."""
    p = model.process
    if proc == "ve":
        sig = ve_sigmas(n)
        s = [1.0] * (n + 1)
        x = sig[0] * init_noise(seed, idx, model.shape)
    else:
        t = torch.linspace(1.0, p.t_min, n, dtype=F64)
        sig = p.sigma(t).tolist() + [0.0]
        s = p.s(t).tolist() + [1.0]
        x = init_noise(seed, idx, model.shape)  # prior N(0, I) in x
    path = NoiseSource(seed, idx, PATH, dtype=F64)

    def score(x, i):
        xh = x / s[i]
        return (gauss_D(model, xh, sig[i]) - xh) / (s[i] * sig[i] ** 2)

    def norm(v):
        nv = v.flatten(1).norm(dim=1)
        return (nv if per_sample else nv.mean().expand_as(nv)).reshape(-1, *[1] * (v.ndim - 1))

    for i in range(n):
        alpha = s[i] ** 2 / s[i + 1] ** 2 if proc == "vp" else 1.0
        beta = 1 - alpha if proc == "vp" else sig[i] ** 2 - sig[i + 1] ** 2
        for _ in range(n_corrector):  # LangevinCorrector
            grad = score(x, i)
            noise = path.randn_like(x)
            step_size = (snr * norm(noise) / norm(grad)) ** 2 * 2 * alpha
            x_mean = x + step_size * grad
            x = x_mean + torch.sqrt(step_size * 2) * noise
        # ReverseDiffusionPredictor: f = (sqrt(alpha) - 1) x (VP) or 0 (VE), G = sqrt(beta)
        f = (math.sqrt(alpha) - 1) * x
        x_mean = x - (f - beta * score(x, i))
        if i < n - 1:
            x = x_mean + math.sqrt(beta) * path.randn_like(x)
    return x_mean / s[-1]


@pytest.mark.parametrize("proc", ["ve", "vp"])
@pytest.mark.parametrize("norm", ["batch", "sample"])
@pytest.mark.parametrize("n", [1, 4])
def test_pc_corrector_equals_langevin_loop(proc, norm, n):
    model, seed, idx = make_model(proc), 7, range(6)
    snr = 0.16
    r = solverzoo.sample(model, "pc", steps=n, num_samples=6, seed=seed, dtype=F64, corrector_norm=norm, snr=snr)
    assert r.nfe == 2 * n
    ref = pc_reference(model, proc, n, seed, idx, snr, norm == "sample")
    torch.testing.assert_close(r.samples, ref, rtol=1e-10, atol=1e-11)


def test_pc_two_correctors():
    model, seed, idx = make_model("vp"), 8, range(3)
    r = solverzoo.sample(model, "pc", steps=3, num_samples=3, seed=seed, dtype=F64, n_corrector=2, snr=0.2)
    assert r.nfe == 9
    ref = pc_reference(model, "vp", 3, seed, idx, 0.2, per_sample=False, n_corrector=2)
    torch.testing.assert_close(r.samples, ref, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("proc", ["ve", "vp"])
def test_euler_maruyama_equals_score_sde_loop(proc):
    """score_sde EulerMaruyamaPredictor with the SDE coefficients written out:
    VE: f = 0, g^2 = 2 sigma^2 log(sigma_max / sigma_min); VP: f = -beta x / 2, g^2 = beta."""
    model, seed, idx, n = make_model(proc), 9, range(5), 20
    r = solverzoo.sample(model, "euler_maruyama", steps=n, num_samples=5, seed=seed, dtype=F64)
    assert r.nfe == n and r.grid.final == "sigma_min"
    p = model.process
    if proc == "ve":
        t = torch.linspace(1.0, p.t_min, n + 1, dtype=F64).tolist()  # score_sde: linspace(1, eps)
        sig = [0.01 * 5000.0**u for u in t]
        f = [0.0] * (n + 1)
        g2 = [v**2 * 2 * math.log(5000.0) for v in sig]
        s = [1.0] * (n + 1)
        x = sig[0] * init_noise(seed, idx, model.shape)
    else:
        t = torch.linspace(1.0, p.t_min, n + 1, dtype=F64).tolist()
        beta = [0.1 + u * 19.9 for u in t]
        lmc = [-0.25 * u**2 * 19.9 - 0.5 * u * 0.1 for u in t]
        s = [math.exp(v) for v in lmc]
        sig = [math.sqrt(1 - math.exp(2 * v)) / math.exp(v) for v in lmc]
        f = [-0.5 * b for b in beta]
        g2 = beta
        x = init_noise(seed, idx, model.shape)
    torch.testing.assert_close(r.grid.t, torch.tensor(t, dtype=F64), rtol=1e-9, atol=1e-12)
    path = NoiseSource(seed, idx, PATH, dtype=F64)
    for i in range(n):
        xh = x / s[i]
        score = (gauss_D(model, xh, sig[i]) - xh) / (s[i] * sig[i] ** 2)
        dt = t[i] - t[i + 1]
        x_mean = x - (f[i] * x - g2[i] * score) * dt
        if i < n - 1:
            x = x_mean + math.sqrt(g2[i] * dt) * path.randn_like(x)
    torch.testing.assert_close(r.samples, x_mean / s[-1], rtol=1e-9, atol=1e-10)


def test_euler_maruyama_final_zero_on_ve_raises():
    with pytest.raises(ValueError, match="sigma_min"):
        solverzoo.sample(make_model("ve"), "euler_maruyama", steps=5, num_samples=2, final="zero")


# ---------------------------------------------------------------------------------
# convergence in distribution
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("proc", ["ve", "vp"])
@pytest.mark.parametrize("name,steps,tol", [("euler_maruyama", 100, 0.03), ("pc", 100, 0.04)])
def test_sde_samplers_converge_in_distribution(name, steps, tol, proc):
    """N(0.25, 0.5) per coordinate.  1000 samples x 256 coordinates: the same 256k draws as
    4000 x 64 (std error of the variance 0.3%, of the mean 0.0014) at a quarter of the
    cost, which is per-sample generator calls.  Measured: em var 0.497 (ve), 0.506 (vp);
    pc 0.513 (both; the Langevin corrector at snr 0.16 keeps a ~2.5% excess at any NFE)."""
    model = GaussianModel((256,), mean=0.25, var=0.5, process=proc)
    r = solverzoo.sample(model, name, steps=steps, num_samples=1000, seed=11)
    x = r.samples.double()
    assert torch.isfinite(x).all()
    mean, var = x.mean(0), x.var(0)
    assert abs(mean.mean().item() - 0.25) < 0.01
    assert abs(var.mean().item() / 0.5 - 1) < tol
    # coordinates are independent: no spurious correlation (|corr| ~ 1/sqrt(1000))
    c = torch.corrcoef(x[:, :32].T)
    assert (c - torch.eye(32, dtype=F64)).abs().max() < 0.15


def test_rk2_is_heun_at_alpha_one_and_the_alpha_step_elsewhere():
    """rk2 (Karras et al. 2022, App. D.2, Eq. 47): alpha = 1 is EDM Heun; at alpha = 1/2 one step from
    sigma s to t > 0 is x + h D-slope at the midpoint (weights 0 and 1)."""
    model = solverzoo.get_model("gmm-2d")
    heun = solverzoo.sample(model, "heun", nfe=19, num_samples=8, dtype=torch.float64).samples
    rk2 = solverzoo.sample(model, "rk2", nfe=19, num_samples=8, alpha=1.0, dtype=torch.float64).samples
    assert (heun - rk2).abs().max() < 1e-13
    x = solverzoo.sample(model, "rk2", steps=1, grid=[2.0, 1.0], num_samples=4, alpha=0.5, dtype=torch.float64)
    z = 2.0 * solverzoo.noise.NoiseSource(0, range(4), solverzoo.noise.INIT, dtype=torch.float64).randn(model.shape)
    model64 = model.to("cpu", torch.float64)
    denoise = lambda y, s: model64.denoise(y, torch.full((len(y),), s, dtype=torch.float64))  # noqa: E731
    d = (z - denoise(z, 2.0)) / 2.0
    mid = z - 0.5 * d
    expected = z - (mid - denoise(mid, 1.5)) / 1.5
    assert (x.samples - expected).abs().max() < 1e-13
