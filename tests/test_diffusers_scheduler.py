"""``solverzoo.diffusers.SolverzooScheduler``: zoo solvers inside diffusers' own loop and pipelines.

A tiny randomly initialised ``UNet2DModel`` in float64 is sampled twice: by diffusers' manual loop
with the scheduler, and by the zoo's own run of the same solver on the same network through the
diffusers adapter (``DiffusersEpsModel``; ``FlowNetworkModel`` when the UNet is a flow-matching velocity
network under a FlowMatchEulerDiscreteScheduler config), from the same initial noise on the same grid.
The two agree to float64 round-off, with one UNet call per timestep."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading

import pytest
import torch

import solverzoo

diffusers = pytest.importorskip("diffusers")

from solverzoo.diffusers import SolverzooScheduler, _plan  # noqa: E402
from solverzoo.models.adapters import (  # noqa: E402
    DiffusersEpsModel,
    DiscreteVPProcess,
    FlowNetworkModel,
    flow_process_from_scheduler,
)
from solverzoo.models.base import CountingDenoiser  # noqa: E402
from solverzoo.noise import PATH, NoiseSource  # noqa: E402
from solverzoo.solvers import get_solver, list_solvers  # noqa: E402
from solverzoo.solvers.base import Context, Solver, SolverInfo  # noqa: E402

F64 = torch.float64
SHAPE = (1, 8, 8)
BATCH = 2
SEED = 3
TOL = 1e-10
#: solvers the scheduler refuses, and a word of why (adaptive steps, filters from the model's data)
REFUSED = {"ode_adaptive": "adaptive", "dpm_solver_adaptive": "adaptive", "pds": "filters", "tdas": "filters",
           "fdm": "FDM process"}


def tiny_unet(out_channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=out_channels, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    ).eval()


def ddpm_config(**changes):
    return diffusers.DDPMScheduler(num_train_timesteps=100, beta_start=1e-4, beta_end=0.05, clip_sample=False,
                                   **changes).config


class CountedUNet:
    """The UNet with a forward hook counting its calls."""

    def __init__(self, unet: torch.nn.Module):
        self.unet, self.calls = unet, 0
        unet.register_forward_hook(self._count)

    def _count(self, *_):
        self.calls += 1

    def __call__(self, x, t):
        return self.unet(x, t)


@pytest.fixture(scope="module")
def unet64():
    return CountedUNet(tiny_unet().to(F64))


def adapted(unet: torch.nn.Module, config) -> DiffusersEpsModel:
    """The network as a solverzoo model through the existing diffusers adapter."""
    process = DiscreteVPProcess(diffusers.DDPMScheduler.from_config(config).alphas_cumprod.to(F64))
    return DiffusersEpsModel(unet, process, SHAPE, prediction_type=config.prediction_type)


def initial_noise() -> torch.Tensor:
    return torch.randn((BATCH, *SHAPE), generator=torch.Generator().manual_seed(SEED + 100), dtype=F64)


def zoo_run(model, solver: str, sigmas: list[float], z: torch.Tensor, seed: int | None = None, **options):
    """``solverzoo.solve`` of ``model`` with ``solver`` on the explicit grid ``sigmas`` from x_hat_0 = the
    solver's prior of standard normal ``z`` (sigma_0 z; z / s_0 for score_sde on VP), its noise path from
    the per-sample streams of ``seed``: (sample, counted NFE)."""
    built = get_solver(solver, grid=list(sigmas), **options)
    x0 = built.prior(Context(CountingDenoiser(model), built.make_grid(model.process, len(sigmas) - 1), None), z)
    x, info = solverzoo.solve(model, x0, sigmas, solver, noise=seed, return_info=True, **options)
    return x, info.nfe


def diffusers_loop(unet: CountedUNet, scheduler, z: torch.Tensor, generator=None, start: int = 0, x=None):
    """diffusers' manual loop from ``z * init_noise_sigma`` (or ``x`` at ``timesteps[start]``):
    (sample, UNet calls)."""
    x = z * scheduler.init_noise_sigma if x is None else x
    before = unet.calls
    with torch.no_grad():
        for t in scheduler.timesteps[start:]:
            out = unet(scheduler.scale_model_input(x, t), t).sample
            x = scheduler.step(out, t, x, generator=generator).prev_sample
    return x, unet.calls - before


def path_generators(seed: int) -> list[torch.Generator]:
    """solverzoo's per-sample PATH generators, as a list for step's ``generator``."""
    return NoiseSource(seed, range(BATCH), PATH).generators


def compare(unet, solver: str, steps: int = 4, prediction_type: str = "epsilon", **options):
    """(max |scheduler - zoo|, UNet calls, len(timesteps), zoo NFE) for one solver."""
    config = ddpm_config(prediction_type=prediction_type)
    scheduler = SolverzooScheduler.from_config(config, solver=solver, solver_options=options)
    scheduler.set_timesteps(steps)
    z = initial_noise()
    ours, calls = diffusers_loop(unet, scheduler, z, generator=path_generators(SEED))
    ref, nfe = zoo_run(adapted(unet.unet, config), solver, scheduler.grid.sigma.tolist(), z, seed=SEED, **options)
    return float((ours - ref).abs().max()), calls, len(scheduler.timesteps), nfe


# ----------------------------------------------------------------------------- equality with the zoo
@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp_2m", "unipc", "dpm2", "euler_ancestral",
                                    "dpmpp_2m_sde"])
def test_loop_equals_zoo_sampling_with_one_unet_call_per_timestep(unet64, solver):
    diff, calls, timesteps, nfe = compare(unet64, solver)
    assert calls == timesteps == nfe
    assert diff < TOL, f"{solver}: max difference {diff:.3g}"


def test_multi_call_solvers_list_one_timestep_per_call(unet64):
    """heun lists each step's two levels (as HeunDiscreteScheduler does): 2N - 1 calls on N steps."""
    scheduler = SolverzooScheduler.from_config(ddpm_config(), solver="heun")
    scheduler.set_timesteps(5)
    assert scheduler.order == 2 and len(scheduler.timesteps) == 9
    assert torch.equal(scheduler.timesteps[1:-1:2], scheduler.timesteps[2::2])  # corrector level = next level
    assert scheduler.num_inference_steps == 5


@pytest.mark.parametrize("solver", [n for n in list_solvers() if n not in REFUSED])
def test_every_fixed_grid_solver_matches_zoo(unet64, solver):
    options = {"n_corrector": 1} if solver == "pc" else {}
    diff, calls, timesteps, nfe = compare(unet64, solver, steps=4, **options)
    assert calls == timesteps == nfe
    assert diff < TOL, f"{solver}: max difference {diff:.3g}"


@pytest.mark.parametrize("solver", sorted(REFUSED))
def test_refused_solvers_say_why(solver):
    with pytest.raises(ValueError, match=REFUSED[solver]):
        SolverzooScheduler.from_config(ddpm_config(), solver=solver)


class _LevelFollowsSample(Solver):
    """A one-step solver whose call level depends on the sample (as a step-size controller's does)."""

    info = SolverInfo(name="level_follows_sample", family="test", kind="ode", order=1, calls_per_step=1, paper="-")

    def run(self, ctx, x):
        return ctx.denoise(x, ctx.sigma[0] * (1 + float(x.abs().mean()) % 0.1))


def test_a_solver_whose_call_levels_follow_the_sample_is_refused():
    process = DiscreteVPProcess(diffusers.DDPMScheduler.from_config(ddpm_config()).alphas_cumprod.to(F64))
    solver = _LevelFollowsSample()
    with pytest.raises(ValueError, match="noise levels that depend on the sample"):
        _plan(solver, solver.make_grid(process, 3), process)
    euler = get_solver("euler")
    grid = euler.make_grid(process, 3)
    assert _plan(euler, grid, process).sigmas == tuple(grid.sigma[:-1].tolist())


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_prediction_types_match_zoo(unet64, prediction_type):
    diff, calls, timesteps, nfe = compare(unet64, "dpmpp_2m", prediction_type=prediction_type)
    assert calls == timesteps == nfe
    assert diff < TOL


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_denoised_equals_ddpm_schedulers_x0_prediction(prediction_type):
    """Independent of the adapter: at an integer timestep, the scheduler's D from a model output is
    DDPMScheduler's predicted x_0 from the same output (one Euler step to sigma = 0 returns D)."""
    config = ddpm_config(prediction_type=prediction_type)
    ddpm = diffusers.DDPMScheduler.from_config(config)
    t = 60
    abar = ddpm.alphas_cumprod[t].to(F64)
    sigma = float(((1 - abar) / abar).sqrt())
    ours = SolverzooScheduler.from_config(config, solver="euler")
    ours.set_timesteps(sigmas=[sigma, 0.0])
    assert ours.timesteps.tolist() == pytest.approx([t], abs=1e-9)
    gen = torch.Generator().manual_seed(0)
    x, out = (torch.randn((BATCH, *SHAPE), generator=gen, dtype=F64) for _ in range(2))
    step = ours.step(out, ours.timesteps[0], x)
    expected = ddpm.step(out, t, x).pred_original_sample
    torch.testing.assert_close(step.prev_sample, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(step.pred_original_sample, expected, rtol=1e-6, atol=1e-6)


def test_learned_variance_output_keeps_the_mean_part():
    unet = CountedUNet(tiny_unet(out_channels=2).to(F64))
    diff, calls, timesteps, _ = compare(unet, "dpmpp_2m")
    assert diff < TOL and calls == timesteps


# ----------------------------------------------------------------------------- pipelines
def test_ddpm_pipeline_runs_and_equals_the_manual_loop():
    unet = CountedUNet(tiny_unet())
    scheduler = SolverzooScheduler.from_config(ddpm_config(), solver="dpmpp_2m")
    pipe = diffusers.DDPMPipeline(unet=unet.unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=BATCH, num_inference_steps=4, generator=torch.Generator().manual_seed(0),
                  output_type="pt").images
    assert unet.calls == len(scheduler.timesteps) == 4
    assert images.shape == (BATCH, 1, 8, 8) and bool(torch.isfinite(images).all())
    # DDPMPipeline starts from unscaled noise and feeds it as is: the scheduler's units (module docstring)
    z = diffusers.utils.torch_utils.randn_tensor((BATCH, *SHAPE), generator=torch.Generator().manual_seed(0))
    scheduler.set_timesteps(4)
    x, _ = diffusers_loop(unet, scheduler, z, x=z)
    assert torch.equal(images, (x / 2 + 0.5).clamp(0, 1).cpu())


def test_ddpm_pipeline_with_a_stochastic_solver_is_reproducible_per_generator():
    scheduler = SolverzooScheduler.from_config(ddpm_config(), solver="euler_ancestral")
    pipe = diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)

    def run(seed):
        return pipe(batch_size=BATCH, num_inference_steps=3, generator=torch.Generator().manual_seed(seed),
                    output_type="np").images

    first, again, other = run(0), run(0), run(1)
    assert first.shape == (BATCH, 8, 8, 1)
    assert (first == again).all() and not (first == other).all()


def test_image_to_image_start_from_a_later_timestep(unet64):
    """set_begin_index(k * order) with the sample noised to timesteps[k * order] runs the solver on the
    rest of its grid: the zoo's run on sigma[k:] from that sample."""
    config = ddpm_config()
    for solver in ("dpmpp_2m", "heun"):
        scheduler = SolverzooScheduler.from_config(config, solver=solver)
        scheduler.set_timesteps(5)
        begin = 2 * scheduler.order
        scheduler.set_begin_index(begin)
        gen = torch.Generator().manual_seed(1)
        x0, n = (torch.randn((BATCH, *SHAPE), generator=gen, dtype=F64) for _ in range(2))
        start = scheduler.add_noise(x0, n, scheduler.timesteps[begin:begin + 1])
        ours, calls = diffusers_loop(unet64, scheduler, None, start=begin, x=start)
        rest = scheduler.grid.sigma[2:].tolist()
        model = adapted(unet64.unet, config)
        s = 1 / (1 + rest[0] ** 2) ** 0.5
        ref, nfe = zoo_run(model, solver, rest, start / s / rest[0])  # prior sigma_0 z = start / s
        assert calls == nfe == len(scheduler.timesteps) - begin
        assert float((ours - ref).abs().max()) < TOL


def test_begin_index_inside_a_step_is_refused(unet64):
    scheduler = SolverzooScheduler.from_config(ddpm_config(), solver="heun")
    scheduler.set_timesteps(4)
    scheduler.set_begin_index(1)  # heun's corrector call of the first step
    x = initial_noise()
    out = unet64(x, scheduler.timesteps[1]).sample
    with pytest.raises(ValueError, match="first model call of a heun step"):
        scheduler.step(out, scheduler.timesteps[1], x)


def test_add_noise_equals_ddpm_at_integer_timesteps():
    config = ddpm_config()
    ddpm, ours = diffusers.DDPMScheduler.from_config(config), SolverzooScheduler.from_config(config)
    gen = torch.Generator().manual_seed(2)
    x0, n = (torch.randn((3, *SHAPE), generator=gen) for _ in range(2))
    t = torch.tensor([0, 41, 99])
    torch.testing.assert_close(ours.add_noise(x0, n, t), ddpm.add_noise(x0, n, t), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- config
def test_save_config_round_trip_keeps_solver_and_options(tmp_path, unet64):
    options = {"order": 3, "variant": "bh1", "grid": "uniform_lambda"}
    scheduler = SolverzooScheduler.from_config(ddpm_config(prediction_type="v_prediction"), solver="unipc",
                                               solver_options=options)
    scheduler.save_config(tmp_path)
    loaded = SolverzooScheduler.from_pretrained(tmp_path)
    assert loaded.config.solver == "unipc" and dict(loaded.config.solver_options) == options
    assert loaded.solver.options() == scheduler.solver.options()
    assert loaded.config.prediction_type == "v_prediction" and loaded.config.num_train_timesteps == 100
    z = initial_noise()
    runs = []
    for s in (scheduler, loaded):
        s.set_timesteps(4)
        runs.append(diffusers_loop(unet64, s, z)[0])
    assert torch.equal(*runs)
    # and back: a DDPM scheduler from this config has the same schedule
    back = diffusers.DDPMScheduler.from_config(loaded.config)
    assert torch.equal(back.alphas_cumprod, diffusers.DDPMScheduler.from_config(ddpm_config()).alphas_cumprod)
    assert "DDPMScheduler" in [c.__name__ for c in loaded.compatibles]


def test_bad_solver_names_and_options_name_the_valid_choices():
    with pytest.raises(ValueError, match=r"unknown solver 'dpmpp2m'.*did you mean 'dpmpp_2m'.*euler"):
        SolverzooScheduler(solver="dpmpp2m")
    with pytest.raises(ValueError, match=r"unknown option\(s\) ordr for solver 'unipc'.*valid options: .*order"):
        SolverzooScheduler(solver="unipc", solver_options={"ordr": 3})
    with pytest.raises(ValueError, match="prediction_type 'flow'.*epsilon, sample, v_prediction"):
        SolverzooScheduler(prediction_type="flow")
    with pytest.raises(ValueError, match="beta_schedule 'cosine'.*squaredcos_cap_v2"):
        SolverzooScheduler(beta_schedule="cosine")
    with pytest.raises(ValueError, match="zero terminal SNR"):
        SolverzooScheduler.from_config(ddpm_config(rescale_betas_zero_snr=True))
    with pytest.raises(ValueError, match="first model call"):
        SolverzooScheduler(solver="heun", solver_options={"s_churn": 10.0})
    with pytest.raises(ValueError, match=r"order: options of solver 'unipc' go in solver_options"):
        SolverzooScheduler.from_config(ddpm_config(), solver="unipc", order=3)


def test_other_flow_matching_and_edm_configs_are_refused_naming_what_is_supported():
    heun = {**diffusers.FlowMatchHeunDiscreteScheduler(shift=3.0).config,
            "_class_name": "FlowMatchHeunDiscreteScheduler"}
    with pytest.raises(ValueError, match="flow-matching.*DDPM-type configs with discrete betas.*FlowMatchEuler"):
        SolverzooScheduler.from_config(heun, solver="euler")
    with pytest.raises(ValueError, match="no discrete betas.*sigma_data"):
        SolverzooScheduler.from_config(diffusers.EDMEulerScheduler().config)
    flow_dpm = diffusers.DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction").config
    with pytest.raises(ValueError, match="flow-matching"):
        SolverzooScheduler.from_config(flow_dpm)


def test_configs_saved_by_other_schedulers_are_checked_by_class(tmp_path):
    """A saved config names its class: a DDPM-type or FlowMatchEulerDiscreteScheduler one loads, another
    flow-matching one or an EDM one is refused."""
    for scheduler in (diffusers.DPMSolverMultistepScheduler(num_train_timesteps=100, beta_end=0.05),
                      diffusers.FlowMatchEulerDiscreteScheduler(shift=2.0), diffusers.FlowMatchHeunDiscreteScheduler(),
                      diffusers.EDMEulerScheduler()):
        folder = tmp_path / type(scheduler).__name__
        scheduler.save_config(folder)
        if hasattr(scheduler, "alphas_cumprod"):
            loaded = SolverzooScheduler.from_pretrained(folder, solver="heun")
            assert torch.equal(loaded.process.alphas_cumprod, scheduler.alphas_cumprod.to(F64))
        elif isinstance(scheduler, diffusers.FlowMatchEulerDiscreteScheduler):
            loaded = SolverzooScheduler.from_pretrained(folder, solver="heun")
            assert loaded.process.name == "flow" and loaded.process.shift == 2.0
        else:
            with pytest.raises(ValueError, match="flow-matching|has no discrete betas"):
                SolverzooScheduler.from_pretrained(folder)


# ----------------------------------------------------------------------------- the loop's contract
def test_step_refuses_an_edited_sample_and_misuse(unet64):
    scheduler = SolverzooScheduler.from_config(ddpm_config(), solver="dpmpp_2m")
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(torch.zeros(1), 0, torch.zeros(1))
    scheduler.set_timesteps(3)
    x = initial_noise() * scheduler.init_noise_sigma
    t0, t1 = scheduler.timesteps[:2]
    with torch.no_grad():
        x = scheduler.step(unet64(x, t0).sample, t0, x).prev_sample
        with pytest.raises(ValueError, match="not the prev_sample"):
            scheduler.step(unet64(x, t1).sample, t1, x + 1)


def test_a_failing_solver_ends_the_run_with_its_error(unet64):
    scheduler = SolverzooScheduler.from_config(ddpm_config(), solver="euler_ancestral")
    scheduler.set_timesteps(3)
    x = initial_noise() * scheduler.init_noise_sigma
    t = scheduler.timesteps[0]
    out = unet64(x, t).sample
    with pytest.raises(RuntimeError):  # a model output of the wrong shape: refused before the solver sees it
        scheduler.step(out[..., :4], t, x)
    with pytest.raises(AttributeError):  # the solver's noise draw fails in the worker: raised here
        scheduler.step(out, t, x, generator="not a generator")
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(unet64(x, t).sample, t, x)


def test_a_copy_mid_run_samples_anew(unet64):
    scheduler = SolverzooScheduler.from_config(ddpm_config(), solver="heun")
    scheduler.set_timesteps(3)
    x = initial_noise() * scheduler.init_noise_sigma
    t = scheduler.timesteps[0]
    with torch.no_grad():
        scheduler.step(unet64(x, t).sample, t, x)
    copy = pickle.loads(pickle.dumps(scheduler))
    assert copy.step_index is None
    assert torch.equal(diffusers_loop(unet64, copy, initial_noise())[0],
                       diffusers_loop(unet64, scheduler_with_timesteps("heun", 3), initial_noise())[0])


def scheduler_with_timesteps(solver: str, steps: int) -> SolverzooScheduler:
    scheduler = SolverzooScheduler.from_config(ddpm_config(), solver=solver)
    scheduler.set_timesteps(steps)
    return scheduler


def test_abandoned_loops_leave_no_thread_behind(unet64):
    scheduler = SolverzooScheduler.from_config(ddpm_config(), solver="unipc")
    before = threading.active_count()
    for _ in range(3):
        scheduler.set_timesteps(4)
        x = initial_noise() * scheduler.init_noise_sigma
        t = scheduler.timesteps[0]
        with torch.no_grad():
            scheduler.step(unet64(x, t).sample, t, x)  # then abandoned
        assert threading.active_count() == before + 1
    scheduler.set_timesteps(4)
    assert threading.active_count() == before
    x, calls = diffusers_loop(unet64, scheduler, initial_noise())
    assert calls == 4 and threading.active_count() == before


def test_import_solverzoo_does_not_import_diffusers():
    code = "import sys, solverzoo; assert 'diffusers' not in sys.modules, 'diffusers imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- flow matching
#: the flow process's largest time standing in for diffusers' t = 1 (as in tests/test_flow.py)
FLOW_T_MAX = 1 - 1e-12
#: FlowMatchEulerDiscreteScheduler configs: a fixed shift, and the resolution-dependent shift with its mu
FLOW_CASES = [({"shift": 3.0}, None), ({"use_dynamic_shifting": True}, 0.8)]


def flow_config(**options):
    return diffusers.FlowMatchEulerDiscreteScheduler(**options).config


def flow_scheduler(config, solver: str, mu=None, steps: int = 5, t_max=FLOW_T_MAX, **options) -> SolverzooScheduler:
    scheduler = SolverzooScheduler.from_config(config, solver=solver, solver_options=options, t_max=t_max)
    scheduler.set_timesteps(steps, mu=mu)
    return scheduler


@pytest.mark.parametrize("options,mu", FLOW_CASES)
def test_flow_euler_loop_equals_flow_match_euler_loop(unet64, options, mu):
    """SolverzooScheduler(euler) in diffusers' loop = the loop of FlowMatchEulerDiscreteScheduler's schedule
    (x <- x + (t_{i+1} - t_i) v from x = n, the UNet at 1000 t_i) in float64, to 1e-10: the grid is
    diffusers' to the bit but for the first node t = 1, which t_max = 1 - 1e-12 stands in for.  diffusers'
    own step (float32 arithmetic) agrees to float32 rounding."""
    steps = 6
    config = flow_config(**options)
    ours = flow_scheduler(config, "euler", mu, steps)
    reference = diffusers.FlowMatchEulerDiscreteScheduler.from_config(config)
    reference.set_timesteps(steps, mu=mu)
    t = reference.sigmas.to(F64)
    assert len(ours.timesteps) == len(reference.timesteps) == steps
    assert float(ours.timesteps[0]) == pytest.approx(1000.0, abs=1e-8)
    torch.testing.assert_close(ours.timesteps[1:], 1000 * t[1:-1], rtol=1e-14, atol=0)
    z = initial_noise()
    x, calls = diffusers_loop(unet64, ours, z)
    assert calls == steps
    ref, ref32 = z.clone(), z.clone()
    with torch.no_grad():
        for i, timestep in enumerate(reference.timesteps):
            ref = ref + (t[i + 1] - t[i]) * unet64(ref, 1000 * t[i]).sample
            ref32 = reference.step(unet64(ref32, timestep).sample, timestep, ref32).prev_sample
    diff = float((x - ref).abs().max())
    assert diff < TOL, f"max difference {diff:.3g}"
    assert float((ref32 - ref).abs().max()) < 1e-4


def flow_adapted(unet: torch.nn.Module, config, mu=None, t_max=None) -> FlowNetworkModel:
    """The network as a solverzoo model through the flow adapter (velocity, timestep 1000 t)."""
    process = flow_process_from_scheduler(dict(config), mu=mu, t_max=t_max)
    return FlowNetworkModel(unet, process, SHAPE, prediction="velocity",
                            time_scale=float(config["num_train_timesteps"]))


@pytest.mark.parametrize("options,mu", FLOW_CASES)
@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp_2m", "unipc", "euler_ancestral"])
def test_flow_loop_equals_zoo_sampling_with_one_unet_call_per_timestep(unet64, solver, options, mu):
    """On the flow process's default range (t_max = 1 - 1e-3: heun's trapezoid across the first step from
    sigma ~ 3000 is ill-conditioned enough nearer t = 1 that round-off in the initial sample shows)."""
    config = flow_config(**options)
    scheduler = flow_scheduler(config, solver, mu, steps=4, t_max=None)
    z = initial_noise()
    ours, calls = diffusers_loop(unet64, scheduler, z, generator=path_generators(SEED))
    model = flow_adapted(unet64.unet, config, mu)
    assert model.process.describe() == scheduler.process.describe()
    ref, nfe = zoo_run(model, solver, scheduler.grid.sigma.tolist(), z, seed=SEED)
    assert calls == len(scheduler.timesteps) == nfe
    diff = float((ours - ref).abs().max())
    assert diff < TOL, f"{solver}: max difference {diff:.3g}"


def test_flow_timesteps_sigmas_and_add_noise_are_diffusers():
    """timesteps are 1000 t; set_timesteps(sigmas=...) takes diffusers' unshifted flow times (as the Flux
    pipelines pass them); add_noise / scale_noise give (1 - t) x_0 + t n."""
    config = flow_config(shift=3.0)
    ours = flow_scheduler(config, "dpmpp_2m")
    reference = diffusers.FlowMatchEulerDiscreteScheduler.from_config(config)
    flux_sigmas = [1.0, 0.75, 0.5, 0.25]
    ours.set_timesteps(sigmas=flux_sigmas)
    reference.set_timesteps(sigmas=flux_sigmas)
    torch.testing.assert_close(ours.timesteps[1:], reference.timesteps[1:].to(F64), rtol=1e-6, atol=0)
    assert float(ours.timesteps[0]) == pytest.approx(1000.0, abs=1e-8) and ours.num_inference_steps == 4
    assert float(ours.sigmas[-1]) == 0.0
    gen = torch.Generator().manual_seed(4)
    x0, n = (torch.randn((BATCH, *SHAPE), generator=gen, dtype=F64) for _ in range(2))
    t = torch.tensor([250.0, 900.0], dtype=F64)
    expected = (1 - t / 1000).reshape(-1, 1, 1, 1) * x0 + (t / 1000).reshape(-1, 1, 1, 1) * n
    torch.testing.assert_close(ours.add_noise(x0, n, t), expected, rtol=0, atol=1e-14)
    on_schedule = reference.timesteps[1:3]  # diffusers' scale_noise looks its timesteps up in its schedule
    torch.testing.assert_close(ours.scale_noise(x0, on_schedule, n), reference.scale_noise(x0, on_schedule, n),
                               rtol=0, atol=1e-6)  # diffusers' float32 sigmas


def test_flow_config_round_trip_keeps_the_flow_schedule(tmp_path, unet64):
    config = flow_config(use_dynamic_shifting=True, time_shift_type="linear", base_shift=0.4)
    scheduler = SolverzooScheduler.from_config(config, solver="unipc", solver_options={"order": 3},
                                               t_max=FLOW_T_MAX)
    scheduler.save_config(tmp_path)
    loaded = SolverzooScheduler.from_pretrained(tmp_path)
    assert loaded.config.prediction_type == "flow_prediction" and loaded.config.use_dynamic_shifting
    assert loaded.config.time_shift_type == "linear" and loaded.config.t_max == FLOW_T_MAX
    assert loaded.solver.options() == scheduler.solver.options()
    assert SolverzooScheduler.from_config(scheduler.config).config == scheduler.config
    z = initial_noise()
    runs = []
    for s in (scheduler, loaded):
        s.set_timesteps(4, mu=1.2)
        assert s.process.describe()["mu"] == 1.2
        runs.append(diffusers_loop(unet64, s, z)[0])
    assert torch.equal(*runs)
    # and back: FlowMatchEulerDiscreteScheduler reads the same schedule from this config
    back = diffusers.FlowMatchEulerDiscreteScheduler.from_config(loaded.config)
    assert back.config.time_shift_type == "linear" and back.config.base_shift == 0.4
    assert "FlowMatchEulerDiscreteScheduler" in [c.__name__ for c in loaded.compatibles]


def test_flow_configs_it_cannot_reproduce_are_refused():
    with pytest.raises(ValueError, match="use_dynamic_shifting: pass mu"):
        SolverzooScheduler.from_config(flow_config(use_dynamic_shifting=True)).set_timesteps(4)
    for bad in ({"shift_terminal": 0.1}, {"stochastic_sampling": True}, {"invert_sigmas": True}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))}.*FlowMatchEulerDiscreteScheduler configs"):
            SolverzooScheduler.from_config(flow_config(**bad))
    with pytest.raises(ValueError, match="velocity"):
        SolverzooScheduler.from_config(flow_config(), prediction_type="epsilon")
    with pytest.raises(ValueError, match="mu applies to flow-matching"):
        SolverzooScheduler.from_config(ddpm_config()).set_timesteps(4, mu=0.5)
