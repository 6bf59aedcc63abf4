"""Parity with the reference implementations: solverzoo and k-diffusion / diffusers on the same
denoiser, sigmas, initial noise and noise path, in float64.

k-diffusion: GMMImage (3x8x8, EDM process) as a k-diffusion model(x, sigma) -> denoised, the
Karras grid (k-diffusion's get_sigmas_karras with its trailing 0 equals solverzoo's ``karras`` grid),
the initial x = sigma_0 z from solverzoo's INIT stream, and a ``noise_sampler`` that serves
k-diffusion the normalised increments of a Brownian motion in sigma drawn from solverzoo's PATH
stream in the order the points are visited (what ``ctx.randn_like`` gives solverzoo).  Heun and
DPM-2 with churn draw with ``torch.randn_like``; it is patched to read the same stream.

diffusers: its schedulers are discrete VP; they run on the same model through the eps interface
(x = alpha x_hat, alpha = 1/sqrt(1 + sigma^2), eps = (x_hat - D(x_hat; sigma))/sigma) and solverzoo
runs on the explicit sigma list the scheduler produces (cast to float64 in the scheduler too, so
both do their arithmetic on the same numbers).
"""

from __future__ import annotations

import math

import pytest
import torch

import solverzoo
from solverzoo.noise import INIT, PATH, NoiseSource

k_sampling = pytest.importorskip("k_diffusion.sampling",
                                 reason="parity tests need k-diffusion (pip install '.[parity]')")

TOL = 1e-12  # float64 on both sides: measured 4e-16 .. 1.6e-14 over every case below that uses it
SEED, N = 7, 3  # samples
STEPS = 8


@pytest.fixture(scope="module")
def model():
    return solverzoo.get_model("gmm-image", resolution=8, num_components=3, process="edm").to("cpu", torch.float64)


def initial(model, sigma0: float) -> torch.Tensor:
    return sigma0 * NoiseSource(SEED, range(N), INIT, dtype=torch.float64).randn(model.shape)


class BrownianNoiseSampler:
    """k-diffusion noise_sampler(a, b) = (W(b) - W(a)) / sqrt(a - b) for a Brownian motion W in sigma,
    drawn forward from a solverzoo PATH stream: a call starting at the lowest point visited so far
    re-anchors the path there (later increments are independent of the past); a point below the
    lowest one costs one draw.  Points match within a relative 1e-12 (k-diffusion recomputes sigmas
    through exp(-log sigma))."""

    def __init__(self, shape):
        self.source = NoiseSource(SEED, range(N), PATH, dtype=torch.float64)
        self.shape = shape
        self.points: list[float] = []
        self.values: list = []

    def _find(self, s):
        for j, p in enumerate(self.points):
            if abs(p - s) <= 1e-12 * p:
                return j
        return None

    def W(self, s):
        j = self._find(s)
        if j is not None:
            return self.values[j]
        last = self.points[-1]
        assert s < last, "the reference asked for a point between visited points"
        self.values.append(self.values[-1] + math.sqrt(last - s) * self.source.randn(self.shape))
        self.points.append(s)
        return self.values[-1]

    def __call__(self, a, b):
        a, b = float(a), float(b)
        j = self._find(a)
        if j is None or j == len(self.points) - 1:
            self.points, self.values = [a], [0.0]
        return (self.W(b) - self.W(a)) / math.sqrt(a - b)


def karras_sigmas(steps: int) -> torch.Tensor:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # k-diffusion builds its ramp in the default dtype
    try:
        return k_sampling.get_sigmas_karras(steps, 0.002, 80.0, rho=7.0)
    finally:
        torch.set_default_dtype(previous)


def test_karras_grids_agree(model):
    ours = solverzoo.make_grid("karras", model.process, STEPS).sigma
    theirs = karras_sigmas(STEPS)
    assert theirs.dtype == torch.float64 and theirs[-1] == 0
    assert torch.allclose(ours, theirs, rtol=1e-13, atol=0)


# (solverzoo name, solverzoo options, k-diffusion sampler, k-diffusion options, noise: None | "sampler" | "randn_like")
KDIFF_CASES = [
    ("euler", {}, "sample_euler", {}, None),
    ("euler_ancestral", {}, "sample_euler_ancestral", {}, "sampler"),
    ("euler_ancestral", {"eta": 0.5, "s_noise": 0.9},
     "sample_euler_ancestral", {"eta": 0.5, "s_noise": 0.9}, "sampler"),
    ("heun", {}, "sample_heun", {}, None),
    ("heun", {"s_churn": 20.0}, "sample_heun", {"s_churn": 20.0}, "randn_like"),
    ("dpm2", {}, "sample_dpm_2", {}, None),
    ("dpm2", {"s_churn": 20.0}, "sample_dpm_2", {"s_churn": 20.0}, "randn_like"),
    ("dpm2", {"eta": 1.0}, "sample_dpm_2_ancestral", {}, "sampler"),
    ("lms", {}, "sample_lms", {}, None),
    ("dpmpp_2s", {"eta": 1.0}, "sample_dpmpp_2s_ancestral", {}, "sampler"),
    ("dpmpp_2m", {}, "sample_dpmpp_2m", {}, None),
    ("dpmpp_sde", {}, "sample_dpmpp_sde", {}, "sampler"),
    ("dpmpp_sde", {"eta": 0.7, "r": 0.4}, "sample_dpmpp_sde", {"eta": 0.7, "r": 0.4}, "sampler"),
    ("dpmpp_2m_sde", {}, "sample_dpmpp_2m_sde", {}, "sampler"),
    ("dpmpp_2m_sde", {"solver_type": "heun", "eta": 0.6},
     "sample_dpmpp_2m_sde", {"solver_type": "heun", "eta": 0.6}, "sampler"),
    ("dpmpp_3m_sde", {"third_order": "upstream"}, "sample_dpmpp_3m_sde", {}, "sampler"),
    ("dpmpp_3m", {"third_order": "upstream", "lower_order_final": False}, "sample_dpmpp_3m_sde", {"eta": 0.0}, None),
]


def kdiff_parity(model, name, options, sampler, kd_options, noise, monkeypatch):
    ours = solverzoo.sample(model, name, steps=STEPS, num_samples=N, seed=SEED, dtype=torch.float64, **options)
    sigmas = karras_sigmas(STEPS)
    assert torch.allclose(ours.grid.sigma, sigmas, rtol=1e-13, atol=0)
    sigmas = ours.grid.sigma.clone()  # the same numbers on both sides
    kwargs = dict(kd_options, disable=True)
    if noise == "sampler":
        kwargs["noise_sampler"] = BrownianNoiseSampler(model.shape)
    elif noise == "randn_like":
        path = NoiseSource(SEED, range(N), PATH, dtype=torch.float64)
        monkeypatch.setattr(torch, "randn_like", lambda x, *a, **k: path.randn(x.shape[1:]))
    theirs = getattr(k_sampling, sampler)(lambda x, s: model.denoise(x, s), initial(model, float(sigmas[0])), sigmas,
                                          **kwargs)
    return (ours.samples - theirs).abs().max().item()


@pytest.mark.parametrize(
    "name,options,sampler,kd_options,noise", KDIFF_CASES,
    ids=[f"{c[0]}{'-' + '-'.join(f'{k}={v}' for k, v in c[1].items()) if c[1] else ''}" for c in KDIFF_CASES],
)
def test_k_diffusion_parity(model, name, options, sampler, kd_options, noise, monkeypatch):
    diff = kdiff_parity(model, name, options, sampler, kd_options, noise, monkeypatch)
    assert diff <= TOL, f"{name} {options}: max |solverzoo - k-diffusion| = {diff:.3e}"


def test_exact_third_order_differs_from_the_references(model, monkeypatch):
    """The default dpmpp_3m_sde doubles the references' D'' weight (see solvers/dpm_solver.py)."""
    diff = kdiff_parity(model, "dpmpp_3m_sde", {}, "sample_dpmpp_3m_sde", {}, "sampler", monkeypatch)
    assert diff > 1e-4


# --- diffusers -------------------------------------------------------------------------------------


def _diffusers():
    return pytest.importorskip("diffusers", reason="parity tests need diffusers (pip install '.[parity]')")


@pytest.fixture(scope="module")
def vp_model():
    return solverzoo.get_model("gmm-image", resolution=8, num_components=3, process="vp").to("cpu", torch.float64)


def run_scheduler(scheduler, model, sigmas: list[float], noises=None):
    """Drive a diffusers scheduler on the model through eps; x_hat in and out."""
    x = initial(model, sigmas[0]) / math.sqrt(1 + sigmas[0] ** 2)
    for i, t in enumerate(scheduler.timesteps):
        s = sigmas[i]
        x_hat = x * math.sqrt(1 + s**2)
        eps = (x_hat - model.denoise(x_hat, torch.full((N,), s, dtype=torch.float64))) / s
        kwargs = {} if noises is None else {"variance_noise": noises[i]}
        x = scheduler.step(eps, t, x, **kwargs).prev_sample
    return x * math.sqrt(1 + sigmas[len(scheduler.timesteps)] ** 2)


def path_noises(model, sigmas):
    """The draws solverzoo's stochastic step makes: one per step that does not land on sigma = 0."""
    source = NoiseSource(SEED, range(N), PATH, dtype=torch.float64)
    return [source.randn(model.shape) if sigmas[i + 1] > 0 else torch.zeros(N, *model.shape, dtype=torch.float64)
            for i in range(len(sigmas) - 1)]


def ours_on(model, name, sigmas, **options):
    return solverzoo.sample(model, name, steps=len(sigmas) - 1, num_samples=N, seed=SEED, dtype=torch.float64,
                            grid=list(sigmas), **options).samples


def dpm_multistep(**config):
    d = _diffusers()
    scheduler = d.DPMSolverMultistepScheduler(**config)
    return scheduler


def prepare(scheduler, steps):
    scheduler.set_timesteps(steps)
    scheduler.sigmas = scheduler.sigmas.to(torch.float64)
    return scheduler.sigmas.tolist()


# diffusers' DPMSolverMultistepScheduler.step casts the sample to float32 ("upcast", line
# `sample = sample.to(torch.float32)`), so (sigma_t/sigma_s) x is rounded to float32 at every step:
# agreement is at float32 precision there (measured ~8e-8 on |x| < 1): its own tolerance.
DPMMS_TOL = 1e-6


@pytest.mark.parametrize("order,solver_type,final", [(2, "midpoint", "zero"), (2, "heun", "sigma_min"),
                                                     (3, "midpoint", "zero"), (3, "midpoint", "sigma_min")])
def test_diffusers_dpmsolver_multistep(vp_model, order, solver_type, final):
    scheduler = dpm_multistep(solver_order=order, algorithm_type="dpmsolver++", solver_type=solver_type,
                              final_sigmas_type=final, lower_order_final=True)
    sigmas = prepare(scheduler, 10)
    theirs = run_scheduler(scheduler, vp_model, sigmas)
    name = "dpmpp_2m" if order == 2 else "dpmpp_3m"
    extra = {"third_order": "upstream"} if order == 3 else {}
    ours = ours_on(vp_model, name, sigmas, solver_type=solver_type, lower_order_final=True, **extra)
    assert (ours - theirs).abs().max().item() <= DPMMS_TOL


def test_diffusers_sde_dpmsolver_pp(vp_model):
    scheduler = dpm_multistep(solver_order=2, algorithm_type="sde-dpmsolver++", final_sigmas_type="zero",
                              lower_order_final=True)
    sigmas = prepare(scheduler, 10)
    theirs = run_scheduler(scheduler, vp_model, sigmas, path_noises(vp_model, sigmas))
    ours = ours_on(vp_model, "dpmpp_2m_sde", sigmas, lower_order_final=True)
    assert (ours - theirs).abs().max().item() <= DPMMS_TOL


@pytest.mark.parametrize("order,variant,final", [(1, "bh2", "zero"), (2, "bh2", "zero"), (3, "bh2", "zero"),
                                                 (2, "bh1", "sigma_min"), (3, "bh1", "sigma_min"),
                                                 (3, "bh2", "sigma_min")])
def test_diffusers_unipc(vp_model, order, variant, final):
    d = _diffusers()
    scheduler = d.UniPCMultistepScheduler(solver_order=order, solver_type=variant, predict_x0=True,
                                          lower_order_final=True, final_sigmas_type=final)
    sigmas = prepare(scheduler, 10)
    theirs = run_scheduler(scheduler, vp_model, sigmas)
    ours = ours_on(vp_model, "unipc", sigmas, order=order, variant=variant, lower_order_final=True)
    assert (ours - theirs).abs().max().item() <= TOL


def test_diffusers_unipc_bh1_cannot_step_to_zero(vp_model):
    """Known diffusers behaviour: bh1 with final_sigmas_type='zero' multiplies B(h) = -h = -inf by a
    zero residual on the last step, which gives NaN; solverzoo's step to zero is x = D."""
    d = _diffusers()
    scheduler = d.UniPCMultistepScheduler(solver_order=2, solver_type="bh1", final_sigmas_type="zero")
    sigmas = prepare(scheduler, 6)
    theirs = run_scheduler(scheduler, vp_model, sigmas)
    ours = ours_on(vp_model, "unipc", sigmas, order=2, variant="bh1")
    assert torch.isnan(theirs).all() and torch.isfinite(ours).all()


@pytest.mark.parametrize("order", [1, 2, 3])
def test_diffusers_deis(vp_model, order):
    d = _diffusers()
    scheduler = d.DEISMultistepScheduler(solver_order=order, lower_order_final=True)
    sigmas = prepare(scheduler, 10)
    assert sigmas[-1] > 0  # DEIS ends at the training schedule's sigma_min
    theirs = run_scheduler(scheduler, vp_model, sigmas)
    ours = ours_on(vp_model, "deis", sigmas, order=order, lower_order_final=True)
    assert (ours - theirs).abs().max().item() <= TOL


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_diffusers_ddim(vp_model, eta):
    d = _diffusers()
    scheduler = d.DDIMScheduler(clip_sample=False, set_alpha_to_one=True)
    scheduler.set_timesteps(10)
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)
    scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    a = scheduler.alphas_cumprod
    sigmas = [math.sqrt((1 - float(a[t])) / float(a[t])) for t in scheduler.timesteps] + [0.0]
    noises = path_noises(vp_model, sigmas)

    class Eta:  # DDIMScheduler.step takes eta per call
        def __init__(self, inner):
            self.inner, self.timesteps = inner, inner.timesteps

        def step(self, eps, t, x, **kw):
            if eta == 0:
                kw.pop("variance_noise", None)
            return self.inner.step(eps, t, x, eta=eta, **kw)

    theirs = run_scheduler(Eta(scheduler), vp_model, sigmas, noises)
    ours = ours_on(vp_model, "ddim", sigmas, eta=eta)
    assert (ours - theirs).abs().max().item() <= TOL


@pytest.mark.parametrize("name,ours_options,theirs", [
    ("exponential", {}, lambda n: k_sampling.get_sigmas_exponential(n, 0.002, 80.0)),
    ("polyexponential", {"rho": 1.0}, lambda n: k_sampling.get_sigmas_polyexponential(n, 0.002, 80.0, rho=1.0)),
    ("polyexponential", {"rho": 3.0}, lambda n: k_sampling.get_sigmas_polyexponential(n, 0.002, 80.0, rho=3.0)),
    ("vp", {}, lambda n: k_sampling.get_sigmas_vp(n)),
    ("vp", {"beta_d": 15.0, "beta_min": 0.2, "eps_s": 1e-2},
     lambda n: k_sampling.get_sigmas_vp(n, beta_d=15.0, beta_min=0.2, eps_s=1e-2)),
])
def test_k_diffusion_grids(model, name, ours_options, theirs):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        reference = theirs(12)
    finally:
        torch.set_default_dtype(previous)
    ours = solverzoo.make_grid(name, model.process, 12, **ours_options).sigma
    assert torch.allclose(ours, reference, rtol=1e-12, atol=0)


# --- SA-Solver: diffusers SASolverScheduler in float64 ---------------------------------------------------

SA_TOL = 1e-12  # measured 5e-16 .. 2e-14 on |x| < 2.2


@pytest.mark.parametrize("predictor,corrector,tau,lof", [(2, 2, 0.0, True), (2, 2, 1.0, True), (3, 4, 1.0, False),
                                                          (1, 1, 0.7, True), (3, 3, 0.0, False), (2, 0, 1.0, True)])
def test_diffusers_sa_solver(vp_model, monkeypatch, predictor, corrector, tau, lof):
    """diffusers' step in float64 (sigmas cast to float64 after set_timesteps), its noise draws replaced by
    solverzoo's PATH stream (one per step, as sa_solver draws), its tau_func 'tau for timesteps 200..800'
    matched by tau_sigma_min/max around sigma(200), sigma(800) of the linear-beta schedule."""
    d = _diffusers()
    from diffusers.schedulers import scheduling_sasolver
    scheduler = d.SASolverScheduler(predictor_order=predictor, corrector_order=max(corrector, 1),
                                    lower_order_final=lof, tau_func=lambda t: tau if 200 <= t <= 800 else 0.0)
    sigmas = prepare(scheduler, 12)
    noises = iter(path_noises(vp_model, sigmas))
    monkeypatch.setattr(scheduling_sasolver, "randn_tensor", lambda shape, **kw: next(noises))
    if corrector == 0:  # diffusers has no switch: a corrector is used from the second step on
        monkeypatch.setattr(scheduler, "stochastic_adams_moulton_update",
                            lambda this_model_output, **kw: kw["this_sample"])
    theirs = run_scheduler(scheduler, vp_model, sigmas)
    alphas = torch.cumprod(1 - scheduler.betas.to(torch.float64), 0)
    s200, s800 = (((1 - alphas) / alphas).sqrt()[[200, 800]]).tolist()
    ours = ours_on(vp_model, "sa_solver", sigmas, order=predictor, corrector_order=corrector, eta=tau,
                   lower_order_final=lof, tau_sigma_min=s200 * (1 - 1e-9), tau_sigma_max=s800 * (1 + 1e-9))
    assert (ours - theirs).abs().max().item() <= SA_TOL, (ours - theirs).abs().max().item()


@pytest.mark.parametrize("steps", [5, 12, 20])
def test_diffusers_sa_solver_defaults(vp_model, monkeypatch, steps):
    """sa_solver with every option at its default equals diffusers' SASolverScheduler with its defaults (tau_func
    1 for timesteps 200..800) on diffusers' sigmas; 5 and 20 steps visit timestep 200 itself."""
    d = _diffusers()
    from diffusers.schedulers import scheduling_sasolver
    scheduler = d.SASolverScheduler()
    sigmas = prepare(scheduler, steps)
    noises = iter(path_noises(vp_model, sigmas))
    monkeypatch.setattr(scheduling_sasolver, "randn_tensor", lambda shape, **kw: next(noises))
    theirs = run_scheduler(scheduler, vp_model, sigmas)
    ours = ours_on(vp_model, "sa_solver", sigmas)
    assert (ours - theirs).abs().max().item() <= SA_TOL * theirs.abs().max().item(), (ours - theirs).abs().max().item()
