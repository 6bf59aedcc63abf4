"""solverzoo.k_diffusion: a ``sample_<name>`` for every registered solver, and k-diffusion's own names
equal to ``k_diffusion.sampling`` in float64 on the same model, sigmas, initial state and noise sampler
(the Brownian noise sampler of tests/test_parity.py), callbacks included."""

from __future__ import annotations

import inspect

import pytest
import torch

import solverzoo
import solverzoo.k_diffusion as zoo_kd

k_sampling = pytest.importorskip("k_diffusion.sampling", reason="needs k-diffusion (pip install '.[parity]')")
from test_parity import BrownianNoiseSampler, N, initial, karras_sigmas  # noqa: E402

TOL = 1e-10
STEPS = 8
#: solvers that need a solverzoo Model, not a bare function: FDM's process, PDS/TDAS filters from data statistics
NEEDS_A_MODEL = ("fdm", "pds", "tdas")


@pytest.fixture(scope="module")
def model():
    return solverzoo.get_model("gmm-image", resolution=8, num_components=3, process="edm").to("cpu", torch.float64)


def run_both(model, name, **options):
    """(ours, theirs, our callbacks, their callbacks) of ``name`` from the same start and noise."""
    sigmas = karras_sigmas(STEPS)
    x = initial(model, float(sigmas[0]))
    takes_noise = "noise_sampler" in inspect.signature(getattr(k_sampling, name)).parameters
    results, calls = [], []
    for module in (zoo_kd, k_sampling):
        seen: list[dict] = []
        kwargs = dict(options, disable=True, callback=seen.append)
        if takes_noise:
            kwargs["noise_sampler"] = BrownianNoiseSampler(model.shape)
        results.append(getattr(module, name)(lambda x, s: model.denoise(x, s), x.clone(), sigmas.clone(), **kwargs))
        calls.append(seen)
    return results[0], results[1], calls[0], calls[1]


def callback_diff(ours: list[dict], theirs: list[dict]) -> float:
    assert len(ours) == len(theirs) == STEPS
    worst = 0.0
    for a, b in zip(ours, theirs):
        assert list(a) == ["x", "i", "sigma", "sigma_hat", "denoised"] and set(b) == set(a) and a["i"] == b["i"]
        for key in ("x", "sigma", "sigma_hat", "denoised"):
            worst = max(worst, (torch.as_tensor(a[key]) - torch.as_tensor(b[key])).abs().max().item())
    return worst


CASES = [(name, {}) for name in zoo_kd.K_DIFFUSION_NAMES] + [
    ("sample_euler_ancestral", {"eta": 0.5, "s_noise": 0.9}),
    ("sample_dpmpp_sde", {"eta": 0.7, "r": 0.4}),
    ("sample_dpmpp_2m_sde", {"solver_type": "heun", "eta": 0.6}),
    ("sample_dpmpp_3m_sde", {"eta": 0.5}),
    ("sample_lms", {"order": 3}),
]


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}{options or ''}" for n, options in CASES])
def test_k_diffusion_names_equal_k_diffusion(model, name, options):
    ours, theirs, our_calls, their_calls = run_both(model, name, **options)
    assert ours.dtype == torch.float64 and ours.shape == (N, *model.shape)
    diff = (ours - theirs).abs().max().item()
    assert diff <= TOL, f"{name}: max |solverzoo - k-diffusion| = {diff:.3e}"
    assert callback_diff(our_calls, their_calls) <= TOL


def test_every_registered_solver_has_a_drop_in():
    names = set(zoo_kd.samplers())
    assert {f"sample_{n}" for n in solverzoo.list_solvers()} <= names and set(zoo_kd.K_DIFFUSION_NAMES) <= names
    for name in names - set(zoo_kd.K_DIFFUSION_RANGE_NAMES):  # those two take (sigma_min, sigma_max) as k-diffusion's
        fn = getattr(zoo_kd, name)
        params = list(inspect.signature(fn).parameters)
        assert params[:7] == ["model", "x", "sigmas", "extra_args", "callback", "disable", "noise_sampler"]
    for name in zoo_kd.K_DIFFUSION_RANGE_NAMES:
        ours, theirs = (inspect.signature(getattr(module, name)).parameters for module in (zoo_kd, k_sampling))
        assert [(p.name, p.default) for p in ours.values()] == [(p.name, p.default) for p in theirs.values()]
    assert set(zoo_kd.__all__) >= names
    with pytest.raises(AttributeError, match="sample_<solver>"):
        zoo_kd.sample_nosuch  # noqa: B018


def test_k_diffusion_defaults_differ_from_the_zoo_default_where_documented(model):
    """sample_dpmpp_3m_sde is the references' third-order form; the zoo's default is the exact one."""
    sigmas = karras_sigmas(STEPS)
    x = initial(model, float(sigmas[0]))
    upstream = zoo_kd.sample_dpmpp_3m_sde(model, x, sigmas, noise_sampler=BrownianNoiseSampler(model.shape))
    exact = zoo_kd.sampler("dpmpp_3m_sde")(model, x, sigmas, noise_sampler=BrownianNoiseSampler(model.shape))
    assert (upstream - exact).abs().max().item() > 1e-4


def test_drop_in_for_every_solver_runs_with_k_diffusion_arguments():
    """A ComfyUI-style call (extra_args passed to the model, a seed in extra_args) on every solver: the
    model sees the extra args, and the seed makes a stochastic run reproducible."""
    model = solverzoo.get_model("gmm-2d").to("cpu", torch.float64)
    sigmas = karras_sigmas(6)
    x = float(sigmas[0]) * torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    seen = []

    def denoiser(x, sigma, cond=None, seed=None):
        seen.append((cond, seed))
        return model.denoise(x, sigma)

    for name in solverzoo.list_solvers():
        if name in NEEDS_A_MODEL:
            continue
        fn = getattr(zoo_kd, f"sample_{name}")
        a = fn(denoiser, x, sigmas, extra_args={"cond": "c", "seed": 3}, disable=True)
        b = fn(denoiser, x, sigmas, extra_args={"cond": "c", "seed": 3}, disable=True)
        assert torch.isfinite(a).all() and torch.equal(a, b), name
    assert set(seen) == {("c", 3)}
