"""Rectified flow in the EDM frame: the ``flow`` process, its shifted grids against diffusers'
FlowMatchEulerDiscreteScheduler, euler against diffusers' flow-matching Euler loop, the flow network
adapters (velocity / sample / epsilon, diffusers folders) and the flow-matching training objective."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

import solverzoo
from solverzoo.cli import main
from solverzoo.grids import diffusers_flow_times, make_grid
from solverzoo.models import get_model
from solverzoo.models.adapters import FlowNetworkModel, flow_denoised, flow_process_from_scheduler, load_model
from solverzoo.noise import INIT, NoiseSource
from solverzoo.processes import FlowProcess, flow_dynamic_shift_mu, flow_inverse_time_shift, flow_time_shift
from solverzoo.solvers import get_solver

F64 = torch.float64
diffusers = pytest.importorskip("diffusers")


# ----------------------------------------------------------------------------- the process
def test_flow_process_is_the_rectified_flow_interpolation():
    """s (x0 + sigma n) = (1 - t) x0 + t n; derivatives against finite differences; t(sigma(t)) = t; the
    forward SDE of the interpolation: f = -1 / (1 - t), g^2 = 2 t / (1 - t)."""
    p = FlowProcess()
    t = torch.linspace(0.01, 0.99, 50, dtype=F64)
    x0, n = torch.randn(50, dtype=F64), torch.randn(50, dtype=F64)
    assert torch.allclose(p.s(t) * (x0 + p.sigma(t) * n), (1 - t) * x0 + t * n, atol=1e-13)
    h = 1e-6
    assert torch.allclose(p.sigma_deriv(t), (p.sigma(t + h) - p.sigma(t - h)) / (2 * h), rtol=1e-7)
    assert torch.allclose(p.s_deriv(t), (p.s(t + h) - p.s(t - h)) / (2 * h), rtol=1e-7)
    assert torch.allclose(p.t_of_sigma(p.sigma(t)), t, atol=1e-15)
    assert torch.allclose(p.s_of_sigma(p.sigma(t)), 1 - t, atol=1e-15)
    assert torch.allclose(p.lambda_(t), -torch.log(p.sigma(t)), atol=1e-13)
    assert torch.allclose(p.drift_coef(t), -1 / (1 - t), rtol=1e-13)
    assert torch.allclose(p.diffusion_sq(t), 2 * t / (1 - t), rtol=1e-13)
    assert p.sigma_min == pytest.approx(1e-3 / (1 - 1e-3)) and p.sigma_max == pytest.approx(999.0)
    assert solverzoo.processes.get_process("flow", shift=3.0).describe()["shift"] == 3.0
    for bad in ({"t_max": 1.0}, {"t_min": 0.0}, {"shift": 0.0}, {"time_shift_type": "cubic"}):
        with pytest.raises(ValueError):
            FlowProcess(**bad)


def test_time_shift_forms():
    """SD3's shift, its inverse, and diffusers' exponential time shift = the shift with shift = e^mu."""
    u = torch.linspace(0.001, 0.999, 101, dtype=F64)
    for shift in (0.5, 1.0, 3.0):
        t = flow_time_shift(u, shift)
        assert torch.allclose(t, shift * u / (1 + (shift - 1) * u), atol=0)
        assert torch.allclose(flow_inverse_time_shift(t, shift), u, atol=1e-15)
        assert bool((t[1:] > t[:-1]).all())
    mu = 0.7
    assert torch.allclose(flow_time_shift(u, mu=mu), flow_time_shift(u, math.exp(mu)), atol=1e-15)
    assert torch.allclose(flow_time_shift(u, mu=mu, time_shift_type="linear"), mu / (mu + 1 / u - 1), atol=0)
    assert flow_dynamic_shift_mu(256) == pytest.approx(0.5) and flow_dynamic_shift_mu(4096) == pytest.approx(1.15)


@pytest.mark.parametrize("steps", [1, 4, 10, 28])
@pytest.mark.parametrize("config,mu", [({"shift": 1.0}, None), ({"shift": 3.0}, None),
                                       ({"use_dynamic_shifting": True}, 0.8),
                                       ({"use_dynamic_shifting": True, "time_shift_type": "linear"}, 1.3)])
def test_flow_shift_grid_is_diffusers_schedule(steps, config, mu):
    """flow_shift(diffusers=True) = FlowMatchEulerDiscreteScheduler.set_timesteps(steps) (float32 values), its
    t = 1 (sigma = inf) replaced by shift(t_max)."""
    sched = diffusers.FlowMatchEulerDiscreteScheduler(**config)
    sched.set_timesteps(steps, mu=mu)
    ref = sched.sigmas.to(F64)
    times = diffusers_flow_times(steps, config.get("shift", 1.0), mu, config.get("time_shift_type", "exponential"))
    assert torch.equal(times, ref[:-1])
    process = flow_process_from_scheduler(config, shape=(1, 8, 8), mu=mu)
    grid = make_grid("flow_shift", process, steps, diffusers=True)
    assert grid.steps == steps and float(grid.sigma[-1]) == 0.0
    assert ref[0] == 1.0 and float(grid.t[0]) == pytest.approx(float(process.time_shift(process.t_max)), abs=1e-15)
    assert torch.allclose(grid.t[1:], ref[1:], rtol=1e-15, atol=0)


def test_flow_shift_grid_native_and_on_other_processes():
    p = FlowProcess(shift=3.0)
    g = make_grid(p.native_grid, p, 8)
    u = torch.linspace(p.t_max, p.t_min, 8, dtype=F64)
    assert torch.allclose(g.t[:-1], flow_time_shift(u, 3.0), rtol=1e-14)
    assert torch.allclose(g.s, 1 - g.t, atol=1e-15) and g.name == "flow_shift(shift=3)"
    # on EDM the same flow times become a sigma grid over EDM's range
    edm = solverzoo.processes.get_process("edm")
    ge = make_grid("flow_shift", edm, 8, final="sigma_min")
    assert float(ge.sigma[0]) == pytest.approx(80.0) and float(ge.sigma[-1]) == pytest.approx(0.002)
    with pytest.raises(ValueError, match="t_min < t_max"):
        make_grid("flow_shift", p, 8, t_min=0.5, t_max=0.2)
    with pytest.raises(ValueError, match="final='zero'"):
        make_grid("flow_shift", p, 8, final="sigma_min", diffusers=True)


# ----------------------------------------------------------------------------- euler = diffusers' loop
def _exact_velocity(model, x: torch.Tensor, t: float) -> torch.Tensor:
    """v(x_t, t) = (x_t - D) / t of an analytic model; at t = 1 D = E[x0] (the sigma -> inf limit)."""
    if t == 1.0:
        denoised = model.data_mean().reshape(1, *model.shape).expand_as(x)
    else:
        denoised = model.denoise(x / (1 - t), torch.full((len(x),), t / (1 - t), dtype=F64))
    return (x - denoised) / t


@pytest.mark.parametrize("config,mu", [({"shift": 1.0}, None), ({"shift": 3.0}, None),
                                       ({"use_dynamic_shifting": True}, 0.9)])
def test_euler_equals_diffusers_flow_matching_loop(config, mu):
    """euler on the flow process with flow_shift(diffusers=True) = diffusers' loop (x <- x + (t_{i+1} - t_i) v,
    FlowMatchEulerDiscreteScheduler.step) from x = n at t = 1, to 1e-10 in float64 (t_max = 1 - 1e-12 stands
    for t = 1: the model is smooth there, so the difference is O(1e-12)); diffusers' own float32 step agrees to
    float32 rounding."""
    steps = 10
    process = flow_process_from_scheduler(config, shape=(1, 8, 8), mu=mu, t_max=1 - 1e-12)
    model = get_model("gmm-image", resolution=8, channels=1, process=process)
    solver = get_solver("euler", grid="flow_shift", grid_options={"diffusers": True})
    zoo = solverzoo.sample(model, solver, steps=steps, num_samples=4, seed=3, dtype=F64).samples

    sched = diffusers.FlowMatchEulerDiscreteScheduler(**config)
    sched.set_timesteps(steps, mu=mu)
    t = sched.sigmas.to(F64).tolist()
    x = NoiseSource(3, range(4), INIT, dtype=F64).randn(model.shape)
    x32 = x.to(torch.float32)
    for i, timestep in enumerate(sched.timesteps):
        x = x + (t[i + 1] - t[i]) * _exact_velocity(model, x, t[i])
        v32 = _exact_velocity(model, x32.to(F64), t[i]).to(torch.float32)
        x32 = sched.step(v32, timestep, x32).prev_sample
    assert (zoo - x).abs().max().item() < 1e-10
    assert (x32.to(F64) - x).abs().max().item() < 1e-4


# ----------------------------------------------------------------------------- analytic models on flow
def test_analytic_models_on_flow_keep_their_denoiser():
    """D(x_hat; sigma) does not depend on s: gmm-image, gmm-2d and the Gaussian under flow and EDM agree."""
    for name, options in (("gmm-image", {"resolution": 4, "channels": 1}), ("gmm-2d", {}), ("gaussian", {})):
        flow, edm = get_model(name, process="flow", **options), get_model(name, process="edm", **options)
        assert flow.process.name == "flow"
        x = torch.randn(3, *flow.shape, dtype=F64)
        sigma = torch.tensor([0.01, 1.0, 50.0], dtype=F64)
        assert torch.equal(flow.denoise(x, sigma), edm.denoise(x, sigma))


def test_bench_flow_every_solver_with_oracle_floors(tmp_path):
    """``bench -m process=flow`` with every registered solver: each runs (finite, with the exact oracle floor)
    except fdm, which refuses by name before any work (it samples FDM-trained models only; ``--solvers all``
    includes it, so on any non-FDM model 'all' stops at that refusal)."""
    from solverzoo.solvers import list_solvers

    tiny = ["bench", "--model", "gmm-image", "-m", "resolution=4", "-m", "channels=1", "-m", "process=flow"]
    refused = CliRunner().invoke(main, [*tiny, "--solvers", "all", "--nfe", "12", "--out", str(tmp_path / "a")])
    assert refused.exit_code == 2 and "FDM process" in refused.output
    names = [n for n in list_solvers() if n != "fdm"]
    out = tmp_path / "b"
    r = CliRunner().invoke(main, [*tiny, "--solvers", ",".join(names), "--nfe", "12", "--num-samples", "16",
                                  "--batch-size", "16", "--out", str(out)])
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["process"]["name"] == "flow"
    rows = {row["solver"]: row for row in results["rows"]}
    assert sorted(rows) == sorted(names)
    assert all(row["status"] == "ok" for row in rows.values()), {n: row.get("error") for n, row in rows.items()}
    floor = results["oracle_floor"]
    assert isinstance(floor, float) and all(row["oracle_floor"] == floor for row in rows.values())
    assert all(math.isfinite(row["value"]) for row in rows.values())


# ----------------------------------------------------------------------------- network adapters
class _ExactFlowNet(torch.nn.Module):
    """A 'network' net(x_t, t) returning the exact velocity / x0 / noise of an analytic model."""

    def __init__(self, model, prediction: str):
        super().__init__()
        self.model, self.prediction = model, prediction
        self.scale = torch.nn.Parameter(torch.ones((), dtype=F64))  # a parameter: net_dtype float64

    def forward(self, x_t, t):
        t = t.reshape(-1, *([1] * (x_t.ndim - 1)))
        sigma = t / (1 - t)
        x_hat = x_t / (1 - t)
        d = self.model.denoise(x_hat, sigma.flatten())
        if self.prediction == "sample":
            return d
        if self.prediction == "epsilon":
            return (x_hat - d) / sigma
        return (x_t - d) / t


@pytest.mark.parametrize("prediction", ["velocity", "sample", "epsilon"])
def test_flow_network_model_recovers_the_denoiser(prediction):
    model = get_model("gmm-image", resolution=4, channels=1, process="flow")
    wrapped = FlowNetworkModel(_ExactFlowNet(model, prediction), model.process, model.shape, prediction=prediction)
    x = torch.randn(3, *model.shape, dtype=F64) * 3
    sigma = torch.tensor([0.05, 1.0, 30.0], dtype=F64)
    assert torch.allclose(wrapped.denoise(x, sigma), model.denoise(x, sigma), atol=1e-10)


def test_flow_denoised_formulas():
    x_hat, sigma = torch.randn(2, 3, dtype=F64), torch.tensor([0.5, 4.0], dtype=F64)
    x0, n = torch.randn(2, 3, dtype=F64), torch.randn(2, 3, dtype=F64)
    x_hat = x0 + sigma[:, None] * n  # consistent with x0 and n
    assert torch.allclose(flow_denoised(n - x0, x_hat, sigma, "velocity"), x0, atol=1e-13)
    assert torch.allclose(flow_denoised(n, x_hat, sigma, "epsilon"), x0, atol=1e-13)
    assert torch.equal(flow_denoised(x0, x_hat, sigma, "sample"), x0)
    with pytest.raises(ValueError, match="velocity"):
        flow_denoised(n, x_hat, sigma, "score")


def _tiny_unet():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    ).eval()


@pytest.fixture(scope="module")
def flow_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("flow-tiny")
    _tiny_unet().save_pretrained(path / "unet")
    diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(path / "scheduler")
    return path


def test_diffusers_flow_folder_loads_as_a_velocity_model(flow_dir):
    model = load_model(str(flow_dir))
    assert isinstance(model, FlowNetworkModel) and model.prediction == "velocity" and model.time_scale == 1000.0
    assert model.process.name == "flow" and model.process.shift == 3.0 and model.process.t_min == 1e-3
    assert model.shape == (1, 8, 8)
    unet = _tiny_unet()
    x_hat, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 7.0])
    t = sigma / (1 + sigma)
    x_t = x_hat / (1 + sigma)[:, None, None, None]
    with torch.no_grad():
        v = unet(x_t, 1000 * t).sample
    expected = x_t - t[:, None, None, None] * v
    assert torch.allclose(model.denoise(x_hat, sigma), expected, atol=1e-5)
    eps = load_model(str(flow_dir), prediction="epsilon")
    assert eps.prediction == "epsilon"
    with pytest.raises(ValueError, match="use_dynamic_shifting"):
        load_model(str(flow_dir), mu=0.5)


def test_dynamic_shift_folder_takes_mu_from_the_resolution(tmp_path):
    _tiny_unet().save_pretrained(tmp_path / "unet")
    diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=4, max_image_seq_len=64,
                                              base_shift=0.5, max_shift=1.15).save_pretrained(tmp_path / "scheduler")
    model = load_model(str(tmp_path))
    assert model.process.mu == pytest.approx(flow_dynamic_shift_mu(16, 4, 64, 0.5, 1.15))  # (8/2) (8/2) tokens
    assert load_model(str(tmp_path), mu=0.25).process.mu == 0.25


def test_bench_diffusers_flow_folder(flow_dir, tmp_path):
    """``bench --model FOLDER`` on a flow-matching folder: pixel FD against the model's own samples is not
    available, so rank by a reference array of 'real' images."""
    ref = tmp_path / "ref.npy"
    import numpy as np

    np.save(ref, np.random.default_rng(0).uniform(-1, 1, size=(32, 1, 8, 8)).astype(np.float32))
    out = tmp_path / "b"
    r = CliRunner().invoke(main, ["bench", "--model", str(flow_dir), "--solvers", "euler,dpmpp_2m,unipc",
                                  "--nfe", "4", "--num-samples", "8", "--feature", "pixels", "--reference", str(ref),
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["process"]["name"] == "flow" and results["model"]["prediction"] == "velocity"
    assert [row["status"] for row in results["rows"]] == ["ok"] * 3
    assert all(row["nfe"] == 4 for row in results["rows"])


def test_module_factory_flow_network(tmp_path, monkeypatch):
    """module:factory with flow_prediction: a net(x_t, t) velocity network under the flow process."""
    (tmp_path / "flownet.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def forward(self, x, t):\n"
        "        return -x\n"
        "def make():\n"
        "    return Net()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = load_model("flownet:make", flow_prediction="velocity", shape=[1, 4, 4], time_scale=1000.0,
                       process_options={"shift": 2.0})
    assert isinstance(model, FlowNetworkModel) and model.process.shift == 2.0 and model.time_scale == 1000.0
    x_hat, sigma = torch.randn(2, 1, 4, 4, dtype=F64), torch.tensor([1.0, 3.0], dtype=F64)
    x_t = x_hat / (1 + sigma)[:, None, None, None]
    t = (sigma / (1 + sigma))[:, None, None, None]
    assert torch.allclose(model.denoise(x_hat, sigma), x_t + t * x_t.float().double(), atol=1e-6)
    with pytest.raises(ValueError, match="flow process"):
        load_model("flownet:make", flow_prediction="velocity", shape=[1, 4, 4], process="edm")


# ----------------------------------------------------------------------------- training objective
def test_flow_training_loss_is_the_flow_matching_loss():
    """The flow preconditioner's weighted denoiser loss = |F(x_t, t) - (n - y)|^2, with t logit-normal."""
    from solverzoo.models.learned import build_denoiser
    from solverzoo.train import TrainConfig, loss_sigma_weight

    config = TrainConfig(precond="flow", unet={"channels": 8, "channel_mult": [1, 2], "attn_levels": [],
                                               "dropout": 0.0})
    net = build_denoiser({"resolution": 8, "in_channels": 1, **config.unet}, {"kind": "flow"})
    gen = torch.Generator().manual_seed(0)
    sigma, weight = loss_sigma_weight(config, net, 4096, gen, 0)
    t = sigma / (1 + sigma)
    logit = torch.log(t / (1 - t)).flatten()
    assert abs(logit.mean().item()) < 0.06 and abs(logit.std().item() - 1) < 0.05  # SD3's lognorm(0, 1)
    sigma, weight = sigma[:3], weight[:3]
    t = sigma / (1 + sigma)
    y, n = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        denoised = net(y + sigma * n, sigma.flatten())
        velocity = net.net((1 - t) * y + t * n, t.flatten())
    loss = (weight * (denoised - y) ** 2).mean()
    assert loss.item() == pytest.approx(((velocity - (n - y)) ** 2).mean().item(), rel=1e-4)
    assert net.process().name == "flow"


# ----------------------------------------------------------------------------- the shipped flow model
def test_shipped_digits_flow_unet_benches_out_of_the_box(tmp_path):
    """digits-flow-unet: a float16 checkpoint under 2 MB with its training command, a velocity UNet under the
    flow process (-m shift=S sets the sampling shift only), benched against the digits with the default feature."""
    from solverzoo.models.learned import SHIPPED, shipped_checkpoint

    path = shipped_checkpoint("digits-flow-unet")
    assert SHIPPED["digits-flow-unet"] == path.name and path.stat().st_size <= 2_000_000
    payload = torch.load(path, weights_only=True)
    assert payload["precond"]["kind"] == "flow" and all(
        v.dtype == torch.float16 for v in payload["state_dict"].values() if v.is_floating_point())
    assert "--precond flow" in payload["meta"]["command"] and payload["meta"]["iterations"] == 4000
    model = get_model("digits-flow-unet")
    assert model.process.name == "flow" and model.process.shift == 1.0 and model.shape == (1, 8, 8)
    shifted = get_model("digits-flow-unet", shift=3.0)
    assert shifted.process.shift == 3.0
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.5, 5.0])
    assert torch.equal(model.denoise(x, sigma), shifted.denoise(x, sigma))
    out = tmp_path / "b"
    r = CliRunner().invoke(main, ["bench", "--model", "digits-flow-unet", "--solvers", "euler,dpmpp_2m", "--nfe", "6",
                                  "--num-samples", "16", "--out", str(out)])
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "fd_digits_classifier" and results["model"]["process"]["name"] == "flow"
    assert all(row["status"] == "ok" and math.isfinite(row["value"]) for row in results["rows"])
