"""Adapters: diffusers DDPM / NCSN++ folders, module:factory denoisers, solverzoo checkpoints.

Every network here is a tiny randomly initialised configuration written to a temp folder and
loaded back; conversions are checked against diffusers' own scheduler steps."""

from __future__ import annotations

import math
import sys
import textwrap

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from solverzoo.grids import from_sigmas  # noqa: E402
from solverzoo.models import get_model  # noqa: E402
from solverzoo.models.adapters import (  # noqa: E402
    DiffusersEpsModel,
    DiffusersScoreVEModel,
    DiscreteVPProcess,
    load_diffusers,
    load_model,
)
from solverzoo.models.base import CountingDenoiser  # noqa: E402
from solverzoo.models.learned import build_denoiser, load_checkpoint, save_checkpoint, save_torchscript  # noqa: E402
from solverzoo.sampling import sample  # noqa: E402
from solverzoo.solvers import get_solver  # noqa: E402
from solverzoo.solvers.base import Context  # noqa: E402


def _tiny_unet(fourier: bool = False):
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, time_embedding_type="fourier" if fourier else "positional",
    ).eval()


@pytest.fixture(scope="module")
def ddpm_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddpm-tiny")
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=100, beta_start=1e-4, beta_end=0.05,
                                        beta_schedule="linear", clip_sample=False)
    diffusers.DDPMPipeline(unet=_tiny_unet(), scheduler=scheduler).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ncsnpp_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ncsnpp-tiny")
    scheduler = diffusers.ScoreSdeVeScheduler(num_train_timesteps=20, sigma_min=0.01, sigma_max=50.0, snr=0.16,
                                              sampling_eps=1e-5)
    diffusers.ScoreSdeVePipeline(unet=_tiny_unet(fourier=True), scheduler=scheduler).save_pretrained(path)
    return path


class _FixedNoise:
    """A noise source that returns given draws (the ones diffusers is patched to use)."""

    def __init__(self, *draws):
        self.draws = list(draws)

    def randn_like(self, x):
        return self.draws.pop(0).to(x.dtype)


def _one_step(model, solver, sigmas, x_hat, noise=()):
    solver = get_solver(solver, **({"n_corrector": 0} if solver == "pc" else {}))
    grid = from_sigmas(model.process, sigmas)
    ctx = Context(CountingDenoiser(model), grid, _FixedNoise(*noise))
    with torch.no_grad():
        return solver.run(ctx, x_hat), grid


# ----------------------------------------------------------------------------- discrete VP
def test_discrete_vp_process_interpolates_log_sigma():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    proc = DiscreteVPProcess.from_betas(betas)
    ac = torch.cumprod(1 - betas, 0)
    k = torch.tensor([0.0, 1.0, 17.0, 500.0, 999.0], dtype=torch.float64)
    assert torch.allclose(proc.sigma(k), ((1 - ac) / ac).sqrt()[k.long()], rtol=1e-12)
    assert torch.allclose(proc.s(k) ** 2, ac[k.long()], rtol=1e-12)
    t = torch.tensor([0.0, 0.25, 3.5, 123.9, 998.999], dtype=torch.float64)
    assert torch.allclose(proc.t_of_sigma(proc.sigma(t)), t, atol=1e-9)
    # k-diffusion's DiscreteSchedule.sigma_to_t: linear in log sigma between neighbours, clamped at the ends
    sig = torch.tensor([1e-5, proc.sigma_max * 10], dtype=torch.float64)
    assert proc.t_of_sigma(sig).tolist() == [0.0, 999.0]
    # derivative matches finite differences inside an interval
    t0 = torch.tensor(40.3, dtype=torch.float64)
    fd = (proc.sigma(t0 + 1e-6) - proc.sigma(t0 - 1e-6)) / 2e-6
    assert torch.allclose(proc.sigma_deriv(t0), fd, rtol=1e-6)
    sd = (proc.s(t0 + 1e-6) - proc.s(t0 - 1e-6)) / 2e-6
    assert torch.allclose(proc.s_deriv(t0), sd, rtol=1e-5)


# ----------------------------------------------------------------------------- DDPM (eps) folders
def test_ddpm_folder_loads_with_scheduler_betas(ddpm_dir):
    model = get_model(str(ddpm_dir))
    assert isinstance(model, DiffusersEpsModel)
    assert model.shape == (1, 8, 8) and model.process.name == "vp-discrete"
    sched = diffusers.DDPMScheduler.from_pretrained(ddpm_dir, subfolder="scheduler")
    ac = sched.alphas_cumprod.double()
    assert torch.allclose(model.process.sigmas, ((1 - ac) / ac).sqrt())


def test_ddpm_denoiser_is_the_eps_conversion(ddpm_dir):
    model = load_model(str(ddpm_dir))
    unet = model.unet
    x_hat = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    k = torch.tensor([5, 40, 99])
    sigma = model.process.sigmas[k]
    s = (1 / (1 + sigma**2).sqrt()).reshape(-1, 1, 1, 1)
    with torch.no_grad():
        eps = unet((s * x_hat).float(), k).sample.double()
    expected = x_hat - sigma.reshape(-1, 1, 1, 1) * eps
    assert torch.allclose(model.denoise(x_hat, sigma), expected, atol=1e-5)
    # between two discrete sigmas the timestep is interpolated (k-diffusion), not rounded
    mid = (model.process.sigmas[40] * model.process.sigmas[41]).sqrt()
    assert abs(float(model.timestep(mid.reshape(1))) - 40.5) < 1e-9


def test_one_ddpm_step_matches_ddpm_scheduler(ddpm_dir, monkeypatch):
    """seeds1 (= DDPM's ancestral step) on the adapter vs DDPMScheduler.step, same noise."""
    model = load_model(str(ddpm_dir))
    sched = diffusers.DDPMScheduler.from_pretrained(ddpm_dir, subfolder="scheduler")
    sched.set_timesteps(sched.config.num_train_timesteps)
    k = 60
    torch.manual_seed(1)
    x_t = torch.randn(2, 1, 8, 8)
    z = torch.randn(2, 1, 8, 8)
    import diffusers.schedulers.scheduling_ddpm as ddpm_mod

    monkeypatch.setattr(ddpm_mod, "randn_tensor", lambda *a, **k: z.clone())
    with torch.no_grad():
        eps = model.unet(x_t, torch.tensor([k] * 2)).sample
    ref = sched.step(eps, k, x_t).prev_sample.double()

    sig = model.process.sigmas
    s_k, s_prev = 1 / math.sqrt(1 + float(sig[k]) ** 2), 1 / math.sqrt(1 + float(sig[k - 1]) ** 2)
    out, _ = _one_step(model, "seeds1", [float(sig[k]), float(sig[k - 1])], x_t.double() / s_k, noise=[z.double()])
    assert torch.allclose(s_prev * out, ref, atol=2e-5), float((s_prev * out - ref).abs().max())


# ----------------------------------------------------------------------------- NCSN++ (VE score) folders
def test_ncsnpp_folder_is_a_ve_score_model(ncsnpp_dir):
    model = load_model(f"diffusers:{ncsnpp_dir}")
    assert isinstance(model, DiffusersScoreVEModel)
    assert model.process.name == "ve" and model.process.sigma_max == 50.0 and model.process.sigma_min == 0.01
    x = torch.randn(2, 1, 8, 8)
    sigma = torch.tensor([0.5, 20.0])
    with torch.no_grad():
        score = model.unet(x, sigma).sample
    assert torch.allclose(model.denoise(x, sigma), x + sigma.reshape(-1, 1, 1, 1) ** 2 * score, atol=1e-5)


def test_one_reverse_diffusion_step_matches_score_sde_ve_scheduler(ncsnpp_dir, monkeypatch):
    """pc with n_corrector=0 on the adapter vs ScoreSdeVeScheduler.step_pred (first step, same noise)."""
    model = load_model(str(ncsnpp_dir))
    sched = diffusers.ScoreSdeVeScheduler.from_pretrained(ncsnpp_dir, subfolder="scheduler")
    n = sched.config.num_train_timesteps
    sched.set_timesteps(n)
    sched.set_sigmas(n)
    torch.manual_seed(2)
    x = torch.randn(2, 1, 8, 8) * sched.config.sigma_max
    z = torch.randn(2, 1, 8, 8)
    import diffusers.schedulers.scheduling_sde_ve as ve_mod

    monkeypatch.setattr(ve_mod, "randn_tensor", lambda *a, **k: z.clone())
    t = sched.timesteps[0]
    with torch.no_grad():
        score = model.unet(x, sched.sigmas[0] * torch.ones(2)).sample
    ref = sched.step_pred(score, t, x)
    sigmas = [float(sched.sigmas[0]), float(sched.discrete_sigmas[n - 2])]
    out, grid = _one_step(model, "pc", sigmas, x.double())
    assert abs(float(sched.discrete_sigmas[n - 1]) - sigmas[0]) < 1e-4 * sigmas[0]
    assert torch.allclose(out, ref.prev_sample_mean.double(), rtol=1e-4, atol=1e-3)
    # the stochastic part: prev_sample = prev_sample_mean + G z with G^2 = sigma_i^2 - sigma_{i+1}^2
    g = math.sqrt(sigmas[0] ** 2 - sigmas[1] ** 2)
    assert torch.allclose(ref.prev_sample, ref.prev_sample_mean + g * z, rtol=1e-4, atol=1e-3)


def test_adapted_models_sample_end_to_end(ddpm_dir, ncsnpp_dir):
    for path, solver, nfe in ((ddpm_dir, "heun", 5), (ncsnpp_dir, "pc", 4), (ddpm_dir, "euler_maruyama", 4)):
        result = sample(load_model(str(path)), solver, nfe=nfe, num_samples=3, seed=0)
        assert result.samples.shape == (3, 1, 8, 8) and torch.isfinite(result.samples).all()
        assert result.nfe == nfe


# ----------------------------------------------------------------------------- bad input
def test_bad_paths_and_configs_raise_value_errors(tmp_path, ddpm_dir):
    with pytest.raises(ValueError, match="no such file or folder"):
        get_model(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no such folder"):
        load_diffusers(tmp_path / "missing")
    with pytest.raises(ValueError, match="no diffusers model here"):
        load_diffusers(tmp_path)
    wrong = tmp_path / "sd"
    (wrong / "unet").mkdir(parents=True)
    (wrong / "unet" / "config.json").write_text('{"_class_name": "UNet2DConditionModel", "sample_size": 64}')
    with pytest.raises(ValueError, match="UNet2DConditionModel"):
        load_diffusers(wrong)
    nosched = tmp_path / "nosched"
    (nosched / "unet").mkdir(parents=True)
    (nosched / "unet" / "config.json").write_text((ddpm_dir / "unet" / "config.json").read_text())
    with pytest.raises(ValueError, match="no scheduler config"):
        load_diffusers(nosched)
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        get_model(str(bad))
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a solverzoo checkpoint"):
        get_model(str(other))
    with pytest.raises(ValueError, match="cannot import module"):
        get_model("no_such_module_xyz:factory")
    with pytest.raises(ValueError, match="unknown model"):
        get_model("no-such-model")


def test_cli_rejects_a_missing_model_path_before_work(tmp_path):
    from click.testing import CliRunner

    from solverzoo.cli import main

    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["sample", "--model", str(tmp_path / "nope"), "--solver", "heun", "--nfe", "5",
                                       "--out", str(out)])
    assert result.exit_code == 2
    assert "no such file or folder" in result.output
    assert not out.exists()


# ----------------------------------------------------------------------------- module:factory
FACTORY = textwrap.dedent('''
    import torch

    class Net(torch.nn.Module):
        """An EDM-style denoiser: the exact D of N(0, v I) data."""
        img_channels, img_resolution, sigma_min, sigma_max = 1, 4, 0.01, 20.0

        def __init__(self, v=0.25):
            super().__init__()
            self.v = torch.nn.Parameter(torch.tensor(float(v)), requires_grad=False)

        def forward(self, x, sigma):
            s2 = sigma.reshape(-1, 1, 1, 1) ** 2
            return x * self.v / (self.v + s2)

    def make(v=0.25):
        return Net(v)

    def plain(v=0.25):
        return lambda x, sigma: x * v / (v + sigma.reshape(-1, 1, 1, 1) ** 2)
''')


def test_module_factory_denoisers(tmp_path, monkeypatch):
    (tmp_path / "my_denoisers.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = get_model("my_denoisers:make", v=0.5)
    assert model.shape == (1, 4, 4) and model.process.name == "edm"
    assert (model.process.sigma_min, model.process.sigma_max) == (0.01, 20.0)
    x = torch.randn(2, 1, 4, 4)
    assert torch.allclose(model.denoise(x, torch.tensor([1.0, 2.0])),
                          x * 0.5 / (0.5 + torch.tensor([1.0, 4.0]).reshape(-1, 1, 1, 1)))
    # a file path works too; a plain callable needs the shape; the process may be named
    file_model = get_model(f"{tmp_path / 'my_denoisers.py'}:plain", shape=[1, 4, 4], process="ve")
    assert file_model.process.name == "ve" and file_model.shape == (1, 4, 4)
    with pytest.raises(ValueError, match="cannot tell the sample shape"):
        get_model("my_denoisers:plain")
    with pytest.raises(ValueError, match="has no attribute"):
        get_model("my_denoisers:missing")
    result = sample(model, "heun", nfe=59, num_samples=400, seed=0)
    assert abs(float(result.samples.var()) - 0.5) < 0.05
    sys.modules.pop("my_denoisers", None)


# ----------------------------------------------------------------------------- own checkpoints
def _tiny_precond(kind="edm"):
    torch.manual_seed(3)
    net = build_denoiser({"resolution": 8, "in_channels": 1, "channels": 8, "channel_mult": [1, 2],
                          "attn_levels": [1], "emb_channels": 16, "noise_channels": 8, "dropout": 0.0},
                         {"kind": kind})
    # non-zero output layers so the check is not trivial
    for p in net.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    return net.eval()


@pytest.mark.parametrize("kind", ["edm", "fdm_vp"])
def test_checkpoint_and_torchscript_round_trip(tmp_path, kind):
    net = _tiny_precond(kind)
    x = torch.randn(3, 1, 8, 8)
    sigma = torch.tensor([0.01, 1.0, 50.0])
    with torch.no_grad():
        want = net(x, sigma)
    ckpt = save_checkpoint(tmp_path / "m.pt", net, meta={"data": "digits"})
    ts = save_torchscript(tmp_path / "m.ts", net)
    for path in (ckpt, ts):
        model = get_model(str(path))
        assert model.shape == (1, 8, 8)
        assert model.process.name == net.process().name
        assert torch.allclose(model.denoise(x, sigma), want, atol=1e-5), path
        assert torch.allclose(model.denoise(x[:1], sigma[:1]), want[:1], atol=1e-5)  # other batch size
    half = load_checkpoint(save_checkpoint(tmp_path / "h.pt", net, half=True))
    assert float((half.denoise(x, sigma) - want).abs().max()) < 1e-2 * float(want.abs().max())  # float16 weights
    assert (tmp_path / "h.pt").stat().st_size < (tmp_path / "m.pt").stat().st_size


def test_solve_grad_reaches_a_diffusers_unet(ddpm_dir):
    """solverzoo.solve(grad=True) on a diffusers folder: gradients reach the UNet's weights and x, and they
    match a central difference; without grad=True nothing requires grad and the model stays no_grad."""
    import solverzoo

    model = get_model(str(ddpm_dir))
    model.unet.double()  # float64 throughout, so the central difference is exact to ~1e-8
    sigmas = torch.tensor([10.0, 2.0, 0.5, 0.0], dtype=torch.float64)
    x0 = torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 10
    assert not solverzoo.solve(model, x0.clone().requires_grad_(), sigmas, "euler").requires_grad
    x = x0.clone().requires_grad_()
    out = solverzoo.solve(model, x, sigmas, "euler", grad=True)
    (gx,) = torch.autograd.grad(out.pow(2).sum(), x)
    direction = torch.randn_like(x0, generator=torch.Generator().manual_seed(1))
    h = 1e-3
    with torch.no_grad():
        plus = solverzoo.solve(model, x0 + h * direction, sigmas, "euler").pow(2).sum()
        minus = solverzoo.solve(model, x0 - h * direction, sigmas, "euler").pow(2).sum()
    numeric = float((plus - minus) / (2 * h))
    assert float((gx * direction).sum()) == pytest.approx(numeric, rel=1e-6)
    out = solverzoo.solve(model, x0, sigmas, "euler", grad=True)
    out.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.unet.parameters())
    assert model.keep_grad is False  # the caller's model is left as it was
