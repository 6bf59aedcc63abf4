"""solverzoo.solve and solverzoo.wrap_denoiser: a plain k-diffusion-convention denoiser, its own x and
sigmas, per-step callbacks, noise, gradients, and options checked as on the command line."""

from __future__ import annotations

import inspect

import pytest
import torch

import solverzoo
from solverzoo.api import calls_by_step
from solverzoo.noise import INIT, NoiseSource
from solverzoo.solvers import SOLVERS, get_solver

D64 = torch.float64


@pytest.fixture(scope="module")
def image_model():
    return solverzoo.get_model("gmm-image", resolution=4, num_components=3, process="edm").to("cpu", D64)


@pytest.fixture(scope="module")
def ring():
    return solverzoo.get_model("gmm-2d").to("cpu", D64)


def karras(steps: int, final: str = "zero") -> torch.Tensor:
    return solverzoo.make_grid("karras", solverzoo.get_process("edm"), steps, final=final).sigma


def start(sigmas, shape, batch=3, seed=0) -> torch.Tensor:
    return float(sigmas[0]) * torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed), dtype=D64)


def test_heun_on_a_float64_function_equals_k_diffusion(image_model):
    k_sampling = pytest.importorskip("k_diffusion.sampling")
    dtypes = set()

    def denoiser(x, sigma):
        dtypes.update({x.dtype, sigma.dtype})
        assert sigma.shape == (x.shape[0],)
        return image_model.denoise(x, sigma)

    sigmas = karras(6)  # 6 steps, the last to 0: NFE = 2 * 6 - 1
    x = start(sigmas, image_model.shape)
    seen: list[dict] = []
    out, info = solverzoo.solve(denoiser, x, sigmas, "heun", callback=seen.append, return_info=True)
    theirs = k_sampling.sample_heun(denoiser, x, sigmas, disable=True)
    assert out.dtype == D64 and dtypes == {D64}
    assert (out - theirs).abs().max().item() <= 1e-10
    assert [c["i"] for c in seen] == list(range(6))
    assert all(list(c) == ["x", "i", "sigma", "sigma_hat", "denoised"] for c in seen)
    assert info.nfe == 11 and info.steps == 6 and info.solver == "heun" and info.options["s_churn"] == 0.0


@pytest.mark.parametrize("sigmas", [karras(5), karras(5).tolist(), karras(5).float(), tuple(karras(5).tolist())],
                         ids=["tensor", "list", "float32-tensor", "tuple"])
def test_any_1d_sigmas_is_the_grid(ring, sigmas):
    x = start(karras(5), ring.shape)
    out, info = solverzoo.solve(ring, x, sigmas, "euler", return_info=True)
    assert info.steps == 5 and info.nfe == 5 and out.dtype == D64
    assert info.sigmas == pytest.approx([float(s) for s in sigmas], rel=0, abs=0)


def test_grid_ending_at_a_positive_sigma(ring):
    sigmas = karras(4, final="sigma_min")
    _, info = solverzoo.solve(ring, start(sigmas, ring.shape), sigmas, "heun", return_info=True)
    assert info.steps == 4 and info.nfe == 8  # no step to zero: 2 calls on every step


def test_nfe_and_steps_must_agree_with_the_sigmas(ring):
    sigmas = karras(5)
    x = start(sigmas, ring.shape)
    solverzoo.solve(ring, x, sigmas, "heun", nfe=9, steps=5)  # what the grid takes: fine
    with pytest.raises(ValueError, match=r"nfe=12 conflicts with the explicit grid of 6 sigmas: heun takes 9"):
        solverzoo.solve(ring, x, sigmas, "heun", nfe=12)
    with pytest.raises(ValueError, match=r"steps=3 conflicts"):
        solverzoo.solve(ring, x, sigmas, "heun", steps=3)
    with pytest.raises(ValueError, match="sigmas argument"):
        solverzoo.solve(ring, x, sigmas, "heun", grid="karras")


def test_sample_with_an_explicit_grid_refuses_a_conflicting_budget(ring):
    grid = karras(4).tolist()
    with pytest.raises(ValueError, match="conflicts with the explicit grid"):
        solverzoo.sample(ring, "euler", nfe=10, grid=grid, num_samples=2)
    result = solverzoo.sample(ring, "euler", grid=torch.tensor(grid), num_samples=2)  # a tensor grid, no budget
    assert result.steps == 4 and result.nfe == 4


def test_options_are_checked_as_on_the_command_line(ring):
    sigmas = karras(3)
    x = start(sigmas, ring.shape)
    with pytest.raises(ValueError, match=r"option heun\.s_churn='a lot': expected a number \(default 0\.0\)"):
        solverzoo.solve(ring, x, sigmas, "heun", s_churn="a lot")
    with pytest.raises(ValueError, match=r"unknown option\(s\) eta for solver 'heun'; valid options: "):
        solverzoo.solve(ring, x, sigmas, "heun", eta=1.0)
    with pytest.raises(TypeError, match=r"solve\(\) got an unexpected keyword argument 'callbak' \(did you mean "
                                        r"callback=\?\); it is not an option of solver 'heun' either"):
        solverzoo.solve(ring, x, sigmas, "heun", callbak=print)
    with pytest.raises(ValueError, match=r"unknown solver 'heum' \(did you mean 'heun'\?\)"):
        solverzoo.solve(ring, x, sigmas, "heum")
    out = solverzoo.solve(ring, x, sigmas, get_solver("heun", s_churn=1.0), noise=0)  # a built solver
    assert out.shape == x.shape


def test_extra_args_reach_the_function(ring):
    sigmas = karras(3)
    seen = []

    def denoiser(x, sigma, cond, scale=1.0):
        seen.append((cond, scale))
        return ring.denoise(x, sigma)

    solverzoo.solve(denoiser, start(sigmas, ring.shape), sigmas, "dpmpp_2m", extra_args={"cond": 7, "scale": 2.0})
    assert seen == [(7, 2.0)] * 3


def test_seeded_noise_is_per_sample_and_matches_sample(image_model):
    """noise=S gives sample b the PATH stream of (S, b): the same as solverzoo.sample's, whatever the batch."""
    sigmas = karras(6)
    z = NoiseSource(5, range(4), INIT, dtype=D64).randn(image_model.shape)
    x = float(sigmas[0]) * z
    ours = solverzoo.solve(image_model, x, sigmas, "euler_ancestral", noise=5)
    ref = solverzoo.sample(image_model, "euler_ancestral", steps=6, num_samples=4, seed=5, dtype=D64).samples
    assert torch.equal(ours, ref)
    half = solverzoo.solve(image_model, x[:2], sigmas, "euler_ancestral", noise=5)
    torch.testing.assert_close(half, ours[:2], rtol=0, atol=1e-12)  # the batched mixture maths rounds by row
    a = solverzoo.solve(image_model, x, sigmas, "dpmpp_sde", noise=torch.Generator().manual_seed(1))
    b = solverzoo.solve(image_model, x, sigmas, "dpmpp_sde", noise=torch.Generator().manual_seed(1))
    c = solverzoo.solve(image_model, x, sigmas, "dpmpp_sde", noise=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(4)
    d = solverzoo.solve(image_model, x, sigmas, "dpmpp_sde")  # noise=None: a seed from torch's generator
    torch.manual_seed(4)
    assert torch.equal(d, solverzoo.solve(image_model, x, sigmas, "dpmpp_sde"))
    with pytest.raises(ValueError, match="noise='philox'"):
        solverzoo.solve(image_model, x, sigmas, "dpmpp_sde", noise="philox")


def test_noise_sampler_is_asked_for_each_steps_interval(ring):
    sigmas = karras(5)
    asked = []

    def noise_sampler(sigma, sigma_next):
        asked.append((float(sigma), float(sigma_next)))
        return torch.zeros(3, 2, dtype=D64)

    solverzoo.solve(ring, start(sigmas, ring.shape), sigmas, "euler_ancestral", noise=noise_sampler)
    assert asked == [(float(sigmas[i]), float(sigmas[i + 1])) for i in range(4)]  # none on the step to zero
    with pytest.raises(ValueError, match="noise=an int seed or a torch.Generator"):
        solverzoo.solve(ring, start(sigmas, ring.shape), sigmas, "sde_reference", noise=noise_sampler)


@pytest.mark.parametrize("name", SOLVERS.names())
def test_every_solver_counts_its_budget_and_calls_back_once_per_step(image_model, name):
    if name == "fdm":
        pytest.skip("fdm samples models trained under an FDM process")
    sigmas = karras(8)
    seen: list[dict] = []
    x = start(sigmas, image_model.shape).requires_grad_()
    out, info = solverzoo.solve(image_model, x, sigmas, name, callback=seen.append, noise=0, return_info=True)
    assert not out.requires_grad and torch.isfinite(out).all()  # grad=False: never requires grad
    solver = SOLVERS[name](grid=sigmas.tolist())
    if solver.adaptive:
        assert info.nfe > 0 and seen[0]["i"] == 0
        return
    grid = solver.make_grid(image_model.process, 8)
    assert info.nfe == solver.nfe_for_steps(8) == sum(calls_by_step(solver, grid)) + (
        solver.info.extra_calls if name not in ("restart",) and not hasattr(solver, "warmup_steps") else 0)
    assert [c["i"] for c in seen] == list(range(8))
    for c in seen:
        assert c["sigma"] == sigmas[c["i"]] and c["denoised"].shape == x.shape and c["sigma_hat"] >= c["sigma"]


def test_restart_and_rk_warmup_steps_hold_their_extra_calls(image_model):
    sigmas = karras(10)
    grid = get_solver("restart").make_grid(image_model.process, 10)
    restart = get_solver("restart", grid=sigmas.tolist())
    plan = calls_by_step(restart, grid)
    assert sum(plan) == restart.nfe_for_steps(10) and max(plan) == 2 + restart.info.extra_calls
    warm = get_solver("dpmpp_3m", warmup="rk", grid=sigmas.tolist())
    assert calls_by_step(warm, grid)[:2] == [2, 1] and sum(calls_by_step(warm, grid)) == warm.nfe_for_steps(10)


@pytest.mark.parametrize("name,noise", [("euler", None), ("heun", None), ("dpmpp_2m", None), ("unipc", None),
                                        ("dpmpp_2m_sde", 3), ("seeds2", 3)])
def test_gradients_match_central_differences(ring, name, noise):
    """d/dx and d/dtheta of a loss on solve(grad=True), theta a weight inside the denoiser (as in guidance),
    against central finite differences along a random direction, in float64."""
    sigmas = karras(6)
    x0 = start(sigmas, ring.shape, batch=4)
    direction = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=D64)

    def loss(x, theta):
        def denoiser(x, sigma):
            return ring.denoise(x, sigma) * (1 + theta * torch.tanh(x))
        out = solverzoo.solve(denoiser, x, sigmas, name, noise=noise, grad=True)
        return (out**2).sum() + out.sin().sum()

    x = x0.clone().requires_grad_()
    theta = torch.tensor(0.1, dtype=D64, requires_grad=True)
    value = loss(x, theta)
    gx, gtheta = torch.autograd.grad(value, (x, theta))
    h = 1e-6
    with torch.no_grad():
        fd_x = (loss(x0 + h * direction, theta) - loss(x0 - h * direction, theta)) / (2 * h)
        fd_theta = (loss(x0, theta + h) - loss(x0, theta - h)) / (2 * h)
    assert abs((gx * direction).sum().item() - fd_x.item()) <= 1e-5 * abs(fd_x.item())
    assert abs(gtheta.item() - fd_theta.item()) <= 1e-5 * abs(fd_theta.item())


def test_without_grad_nothing_requires_grad(ring):
    net = torch.nn.Linear(2, 2).double()
    sigmas = karras(4)
    x = start(sigmas, ring.shape).requires_grad_()
    for name in ("euler", "heun", "dpmpp_2m", "euler_ancestral"):
        out = solverzoo.solve(lambda x, s: net(x), x, sigmas, name, noise=0)
        assert not out.requires_grad
    out = solverzoo.solve(lambda x, s: net(x), x, sigmas, "heun", grad=True)
    out.sum().backward()
    assert net.weight.grad is not None and x.grad is not None


def test_grad_reaches_a_wrapped_network():
    """A network wrapped as the command line wraps it (no_grad by default) still gets gradients under grad=True."""
    from solverzoo.models.adapters import wrap_denoiser as cli_wrap

    net = torch.nn.Linear(2, 2).double()
    model = cli_wrap(lambda x, s: net(x), shape=(2,))
    sigmas = karras(4)
    x = start(sigmas, (2,))
    assert not solverzoo.solve(model, x, sigmas, "heun").requires_grad
    out = solverzoo.solve(model, x, sigmas, "heun", grad=True)
    out.sum().backward()
    assert net.weight.grad is not None and not model.keep_grad  # the caller's model is left as it was


def test_wrap_denoiser_speaks_python():
    def net(x, sigma):
        return x

    with pytest.raises(ValueError) as err:
        solverzoo.wrap_denoiser(net)
    message = str(err.value)
    assert "wrap_denoiser(net, shape=(C, H, W))" in message and "-m" not in message
    model = solverzoo.wrap_denoiser(net, shape=(1, 4, 4), process="vp")
    assert isinstance(model, solverzoo.Model) and model.shape == (1, 4, 4) and model.process.name == "vp"
    x = torch.randn(2, 1, 4, 4, dtype=D64)
    assert model.denoise(x, torch.ones(2, dtype=D64)).dtype == D64  # a function runs in the run's dtype
    assert solverzoo.wrap_denoiser(model) is model


def test_solver_classes_show_their_options():
    sig = inspect.signature(SOLVERS["heun"])
    assert list(sig.parameters)[:4] == ["s_churn", "s_tmin", "s_tmax", "s_noise"]
    assert all(p.kind is p.KEYWORD_ONLY for p in sig.parameters.values())
    assert sig.parameters["s_churn"].default == 0.0 and "grid" in sig.parameters
    assert "pinned" not in inspect.signature(SOLVERS["restart"]).parameters
    assert "s_churn" not in inspect.signature(SOLVERS["restart"]).parameters  # restart pins the churn
    import pydoc

    assert "Heun(*, s_churn=0.0" in pydoc.render_doc(SOLVERS["heun"], renderer=pydoc.plaintext)
