#!/usr/bin/env python
"""solverzoo performance benchmarks: solver overhead, analytic-score cost, streaming FD memory and
speed parity with k-diffusion.  See README.md beside this file for the results and how to read them.

Every number is a RATIO measured within one run (the machines this runs on are shared: absolute
times drift by tens of percent between runs, ratios within a run much less).  Repeated runs are
interleaved and the median ratio is reported.

    python benchmarks/perf/run.py                          # all four targets, results/cpu/results.json updated
    python benchmarks/perf/run.py --targets overhead --reps 3 --device cuda
    python benchmarks/perf/run.py --report                 # print the README table from results/cpu/results.json

Targets (keys of results.json; --device cuda writes results/cuda/results.json):

* ``overhead``: for every registered solver, (total - model) / model where ``model`` is the time
  spent inside model calls (timed inside the model wrapper, synchronised on CUDA) and ``total`` the
  whole ``solverzoo.sample`` call; a small conv UNet at 3x64x64, batch 64, NFE ~20.  The time spent
  drawing per-sample noise (``NoiseSource.randn``) is reported as a share of the overhead.
* ``gmm``: one ``gmm-image`` denoiser call (3x256x256, K = 8, batch 16) over one rfft2 + irfft2
  pair on the same batch, with torch threads = 1 and = 2.
* ``fd``: peak RSS growth of a streaming FD (``FeatureStats``) over 50,000 vs 5,000 exact samples
  (32x32x3, pixel features), each in a fresh process.
* ``kdiff``: solverzoo / k-diffusion wall time for the shared samplers on the same model, grid,
  batch and NFE, alternating runs; and each library's overhead per step relative to one model call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

import solverzoo  # noqa: E402
from solverzoo.models.base import Model  # noqa: E402
from solverzoo.processes import get_process  # noqa: E402

RESULTS = HERE / "results"  # results/<device>/results.json by default
TARGETS = ("overhead", "gmm", "fd", "kdiff", "noise")

# target thresholds (README table)
OVERHEAD_TARGET = 0.05  # (total - model) / model
GMM_TARGET = 3.0  # denoiser call / (rfft2 + irfft2)
KDIFF_TARGET = 1.0  # solverzoo time / k-diffusion time
STEP_OVERHEAD_TARGET = 0.05  # overhead per step / one model call


# ----------------------------------------------------------------------------------------- timing
def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class Stopwatch:
    """The one timer of this script: wall time of a ``with`` block, synchronised with the device at
    the end (and at the start unless ``sync_start=False``), so queued CUDA work is counted where it
    runs.  ``with Stopwatch(device) as t: ...`` then ``t.seconds``."""

    def __init__(self, device="cpu", sync_start: bool = True):
        self.device, self.sync_start, self.seconds = device, sync_start, 0.0

    def __enter__(self) -> Stopwatch:
        if self.sync_start:
            sync(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self._t0


def timed(fn, device="cpu"):
    """(seconds, fn()) measured by a :class:`Stopwatch`."""
    with Stopwatch(device) as t:
        value = fn()
    return t.seconds, value


class TinyUNet(nn.Module):
    """A small conv UNet: 5 conv layers, 32-64 channels, one down/up level with a skip.  The noise
    level enters as an extra input channel (c_noise)."""

    def __init__(self, channels: int = 3, width: int = 32):
        super().__init__()
        self.inp = nn.Conv2d(channels + 1, width, 3, padding=1)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x, c_noise):
        b, _, h, w = x.shape
        h0 = F.silu(self.inp(torch.cat([x, c_noise.view(-1, 1, 1, 1).expand(b, 1, h, w)], 1)))
        h1 = F.silu(self.mid(F.silu(self.down(h0))))
        return self.out(F.silu(self.up(h1)) + h0)


class TimedConvModel(Model):
    """The conv net behind EDM preconditioning (Karras et al. 2022, Table 1) as a solverzoo Model.
    ``seconds`` accumulates the wall time spent inside ``denoise`` (synchronised on CUDA),
    ``calls`` counts the calls; ``reset()`` zeroes both."""

    name = "perf-conv-unet"

    def __init__(self, process="edm", resolution=64, channels=3, width=32, device="cpu", seed=0):
        torch.manual_seed(seed)
        self.net = TinyUNet(channels, width).eval().to(device)
        self.process = get_process(process) if isinstance(process, str) else process
        self.shape = (channels, resolution, resolution)
        self.device = torch.device(device)
        self.sigma_data = 0.5
        self.seconds, self.calls = 0.0, 0

    def reset(self):
        self.seconds, self.calls = 0.0, 0

    def to(self, device, dtype=None):
        self.net.to(device)
        return self

    def __call__(self, x, sigma):  # the k-diffusion model interface: model(x, sigma) -> denoised
        return self.denoise(x, sigma)

    def denoise(self, x, sigma):
        with Stopwatch(x.device) as t:
            out = self._denoise(x, sigma)
        self.seconds += t.seconds
        self.calls += 1
        return out

    def _denoise(self, x, sigma):
        s = sigma.to(device=x.device, dtype=torch.float32).reshape(-1, 1, 1, 1)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (s * s + sd2)
        c_out = s * self.sigma_data / (s * s + sd2).sqrt()
        c_in = 1 / (s * s + sd2).sqrt()
        c_noise = s.reshape(-1).clamp_min(1e-20).log() / 4
        with torch.no_grad():
            out = c_skip * x.float() + c_out * self.net(c_in * x.float(), c_noise)
        return out.to(x.dtype)


class NoiseTimer:
    """Times ``NoiseSource.randn`` (per-sample noise) while active."""

    def __init__(self, device):
        from solverzoo.noise import NoiseSource

        self.cls, self.device, self.seconds = NoiseSource, device, 0.0
        self.original = NoiseSource.randn

    def __enter__(self):
        original, timer = self.original, self

        def randn(src, shape):
            with Stopwatch(timer.device, sync_start=False) as t:
                out = original(src, shape)
            timer.seconds += t.seconds
            return out

        self.cls.randn = randn
        return self

    def __exit__(self, *exc):
        self.cls.randn = self.original


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def machine_note(device) -> dict:
    note = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                note["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.device(device).type == "cuda":
        note["gpu"] = torch.cuda.get_device_name()
    try:
        note["git"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip()
    except OSError:
        pass
    return note


# ----------------------------------------------------------------------------------------- target 1
def explicit_filters(shape, seed=0):
    """PDS/TDAS operator M = F^-1 diag(f) F diag(s) with fixed positive random filters (no pilot run,
    no data statistics timed): the FFT filtering cost is what is measured."""
    from solverzoo.preconditioners import Composed, FrequencyFilter, SpaceFilter

    g = torch.Generator().manual_seed(seed)
    space = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
    freq = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
    return Composed(SpaceFilter(space), FrequencyFilter(freq))


def solver_cases(args, shape):
    """(label, solver name, options, process) for every registered solver, plus stochastic variants of
    the solvers that are deterministic by default (the noise path is what target 1 is about)."""
    cases = []
    for name in solverzoo.list_solvers():
        opts, process = {}, "edm"
        if name in ("pds", "tdas"):
            opts = {"filters": "explicit"}  # built per run (see run_overhead)
        elif name == "ode_adaptive":
            opts = {"rtol": args.adaptive_tol, "atol": args.adaptive_tol}
        elif name == "fdm":
            process = "fdm-edm"  # fdm refuses EDM models (it samples FDM-trained models only)
        cases.append((name, name, opts, process))
    if args.variants:
        cases += [
            ("heun s_churn=40", "heun", {"s_churn": 40.0}, "edm"),
            ("dpm2 eta=1", "dpm2", {"eta": 1.0}, "edm"),
            ("dpmpp_2s eta=1", "dpmpp_2s", {"eta": 1.0}, "edm"),
            ("ddim eta=1", "ddim", {"eta": 1.0}, "edm"),
        ]
    if args.solvers:
        keep = set(args.solvers.split(","))
        cases = [c for c in cases if c[0] in keep or c[1] in keep]
    return cases


def run_sample(model, name, opts, batch, device, seed=0, **budget):
    """One solverzoo.sample call at ``nfe=`` or ``steps=``: (total seconds, model seconds, noise seconds, result)."""
    model.reset()
    with NoiseTimer(device) as noise:
        total, res = timed(lambda: solverzoo.sample(model, name, num_samples=batch, batch_size=batch, seed=seed,
                                                    device=device, **budget, **opts), device)
    return total, model.seconds, noise.seconds, res


def run_overhead(args, device) -> dict:
    models = {}

    def model_for(process):
        if process not in models:
            models[process] = TimedConvModel(process, args.resolution, 3, args.width, device)
        return models[process]

    cases = solver_cases(args, (3, args.resolution, args.resolution))
    for module in ("torchdiffeq", "torchsde"):  # first-use imports of the reference integrators are not timed
        try:
            __import__(module)
        except ImportError:
            pass
    warm = model_for("edm")
    x = torch.randn(args.batch, 3, args.resolution, args.resolution, device=device)
    for _ in range(2):
        warm.denoise(x, torch.ones(args.batch, device=device))
    rows = {label: {"solver": name, "options": dict(opts), "process": process, "runs": []}
            for label, name, opts, process in cases}
    skipped = {}
    for rep in range(args.reps):
        order = cases if rep % 2 == 0 else cases[::-1]
        for label, name, opts, process in order:
            if label in skipped:
                continue
            run_opts = dict(opts)
            if run_opts.get("filters") == "explicit":
                run_opts["filters"] = explicit_filters((3, args.resolution, args.resolution))
            model = model_for(process)
            try:
                total, inside, noise, res = run_sample(model, name, run_opts, args.batch, device, nfe=args.nfe)
            except ValueError as err:  # a solver that refuses the model
                skipped[label] = str(err)
                print(f"  {label}: skipped ({err})", flush=True)
                continue
            run = {"total_s": total, "model_s": inside, "noise_s": noise, "nfe": res.nfe, "calls": model.calls,
                   "steps": res.steps, "overhead": (total - inside) / inside,
                   "noise_share_of_model": noise / inside}
            rows[label]["runs"].append(run)
            print(f"  rep {rep} {label:18s} nfe {res.nfe:3d} total {total:7.2f}s model {inside:7.2f}s "
                  f"overhead {100 * run['overhead']:6.2f}% noise {100 * run['noise_share_of_model']:5.2f}%",
                  flush=True)
    out = {}
    for label, row in rows.items():
        if label in skipped:
            out[label] = {**row, "skipped": skipped[label]}
            continue
        runs = row["runs"]
        ov = median([r["overhead"] for r in runs])
        out[label] = {
            **row,
            "nfe": runs[0]["nfe"],
            "steps": runs[0]["steps"],
            "overhead_ratio": ov,
            "noise_share_of_model": median([r["noise_share_of_model"] for r in runs]),
            "model_call_ms": 1e3 * median([r["model_s"] / r["calls"] for r in runs]),
            "target": OVERHEAD_TARGET,
            "pass": ov < OVERHEAD_TARGET,
        }
    return {"config": {"resolution": args.resolution, "batch": args.batch, "nfe": args.nfe, "width": args.width,
                       "reps": args.reps, "model": "TinyUNet (5 conv layers, 32-64 channels) + EDM preconditioning",
                       "ode_adaptive_tol": args.adaptive_tol},
            "solvers": out}


# ----------------------------------------------------------------------------------------- target 2
def run_gmm(args, device) -> dict:
    from solverzoo.models.gmm_image import GMMImage

    model = GMMImage(3, args.gmm_resolution, num_components=args.gmm_k, process="edm").to(device, torch.float32)
    g = torch.Generator().manual_seed(0)
    shape = (args.gmm_batch, 3, args.gmm_resolution, args.gmm_resolution)
    x0 = model.sample_data(0, range(args.gmm_batch), device=device)
    x = x0 + torch.randn(shape, generator=g).to(device)  # sigma = 1
    shared = torch.full((args.gmm_batch,), 1.0, device=device)
    per_sample = torch.linspace(0.5, 2.0, args.gmm_batch, device=device)
    hw = (args.gmm_resolution, args.gmm_resolution)

    def fft_pair():
        return torch.fft.irfft2(torch.fft.rfft2(x, norm="ortho"), s=hw, norm="ortho")

    old = torch.get_num_threads()
    out = {}
    try:
        for threads in args.gmm_threads:
            torch.set_num_threads(threads)
            fns = {"fft_pair": fft_pair, "denoise_shared_sigma": lambda: model.denoise(x, shared),
                   "denoise_per_sample_sigma": lambda: model.denoise(x, per_sample)}
            for f in fns.values():
                f(), f()  # warm-up (buffers, FFT plans)
            times = {k: [] for k in fns}
            for rep in range(args.gmm_reps):
                for k, f in (fns.items() if rep % 2 == 0 else reversed(list(fns.items()))):
                    times[k].append(timed(f, device)[0])
            med = {k: median(v) for k, v in times.items()}
            ratio_shared = median([d / f for d, f in zip(times["denoise_shared_sigma"], times["fft_pair"])])
            ratio_per = median([d / f for d, f in zip(times["denoise_per_sample_sigma"], times["fft_pair"])])
            out[str(threads)] = {
                "ms": {k: 1e3 * v for k, v in med.items()},
                "ratio_shared_sigma": ratio_shared,
                "ratio_per_sample_sigma": ratio_per,
                "target": GMM_TARGET,
                "pass": ratio_shared <= GMM_TARGET and ratio_per <= GMM_TARGET,
            }
            print(f"  threads {threads}: fft pair {1e3 * med['fft_pair']:.1f} ms, denoise (shared sigma) "
                  f"{1e3 * med['denoise_shared_sigma']:.1f} ms = {ratio_shared:.2f}x, (per-sample sigma) "
                  f"{1e3 * med['denoise_per_sample_sigma']:.1f} ms = {ratio_per:.2f}x", flush=True)
    finally:
        torch.set_num_threads(old)
    return {"config": {"resolution": args.gmm_resolution, "batch": args.gmm_batch, "K": args.gmm_k,
                       "reps": args.gmm_reps, "sigma": "1.0 (shared) / linspace(0.5, 2) (per sample)"},
            "threads": out}


# ----------------------------------------------------------------------------------------- target 3
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Samples the resident set size every ``interval`` seconds in a thread; ``peak`` is the max."""

    def __init__(self, interval=0.002):
        self.interval, self.peak, self._stop = interval, _rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def fd_child(args) -> dict:
    """One streaming FD in this (fresh) process; prints its measurements as JSON."""
    import gc

    from solverzoo.metrics import FeatureStats, exact_reference
    from solverzoo.models.gmm_image import GMMImage

    n = args.fd_child
    model = GMMImage(3, args.fd_resolution, num_components=8, process="edm")
    ref = exact_reference(model, args.fd_feature)
    # warm the per-batch code path once, then measure from a settled baseline
    FeatureStats(args.fd_feature).update(model.sample_data(1, range(args.fd_batch)))
    gc.collect()
    base = _rss_bytes()
    batches = list(range(0, n, args.fd_batch))
    trace = []  # (samples so far, current RSS MB) at 10 points of the stream
    marks = set(batches[max(0, len(batches) * k // 10 - 1)] for k in range(1, 11))
    with Stopwatch() as stream_time, _PeakRSS() as stream_peak:
        stats = FeatureStats(args.fd_feature)
        for start in batches:
            stats.update(model.sample_data(0, range(start, min(start + args.fd_batch, n))))
            if start in marks:
                trace.append((stats.count, _rss_bytes() / 2**20))
    with Stopwatch() as distance_time, _PeakRSS() as final_peak:
        fd = ref.distance_stats(stats)
    return {"n": n, "fd": fd, "seconds": stream_time.seconds + distance_time.seconds,
            "stream_seconds": stream_time.seconds, "rss_before_mb": base / 2**20,
            "stream_growth_mb": (stream_peak.peak - base) / 2**20,
            "distance_growth_mb": (final_peak.peak - base) / 2**20,
            "growth_mb": (max(stream_peak.peak, final_peak.peak) - base) / 2**20,
            "rss_trace_mb": trace,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_fd(args, device) -> dict:
    runs = {}
    for rep in range(args.fd_reps):
        for n in ((args.fd_small, args.fd_n) if rep % 2 == 0 else (args.fd_n, args.fd_small)):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--fd-child", str(n), "--fd-resolution",
                   str(args.fd_resolution), "--fd-batch", str(args.fd_batch), "--fd-feature", args.fd_feature]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"FD child failed:\n{proc.stderr}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            runs.setdefault(str(n), []).append(r)
            print(f"  N = {n}: FD {r['fd']:.5f}, {r['seconds']:.1f} s, RSS before {r['rss_before_mb']:.0f} MB, peak "
                  f"growth while streaming {r['stream_growth_mb']:.1f} MB, in the final distance "
                  f"{r['distance_growth_mb']:.1f} MB, RSS trace {[round(m) for _, m in r['rss_trace_mb']]}", flush=True)
    worst = {n: max(r["stream_growth_mb"] for r in rs) for n, rs in runs.items()}
    small, big = worst[str(args.fd_small)], worst[str(args.fd_n)]
    # pass: streaming 10x more samples grows the peak by no more than 10% of the small run's + 16 MB
    # (allocator and page noise); the final distance is O(m^2) and independent of N by construction
    allowed = 1.1 * small + 16.0
    return {"config": {"resolution": args.fd_resolution, "feature": args.fd_feature, "batch": args.fd_batch,
                       "reps": args.fd_reps,
                       "data": "GMMImage(3, 32, K=8).sample_data (exact samples), exact pixel moments"},
            "runs": runs, "stream_growth_mb": worst, "growth_ratio": big / max(small, 1e-9),
            "allowed_growth_mb": allowed, "pass": big <= allowed}


# ----------------------------------------------------------------------------------------- target 4
# (solverzoo name, solverzoo options, k-diffusion sampler, k-diffusion options, steps for NFE ~20)
KDIFF_CASES = [
    ("euler", {}, "sample_euler", {}, 20),
    ("heun", {}, "sample_heun", {}, 10),
    ("euler_ancestral", {}, "sample_euler_ancestral", {}, 20),
    ("dpm2", {}, "sample_dpm_2", {}, 10),
    ("lms", {}, "sample_lms", {}, 20),
    ("dpmpp_2s", {"eta": 1.0}, "sample_dpmpp_2s_ancestral", {}, 10),
    ("dpmpp_2m", {}, "sample_dpmpp_2m", {}, 20),
    ("dpmpp_sde", {}, "sample_dpmpp_sde", {}, 10),
    ("dpmpp_2m_sde", {}, "sample_dpmpp_2m_sde", {}, 20),
    ("dpmpp_3m_sde", {"third_order": "upstream"}, "sample_dpmpp_3m_sde", {}, 20),
]


def run_kdiff(args, device) -> dict:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import k_diffusion.sampling as ks
    # torchsde's BrownianTree warns on float32 round-off at the ends of its interval at every run
    warnings.filterwarnings("ignore", category=UserWarning, module="torchsde")

    model = TimedConvModel("edm", args.resolution, 3, args.width, device)
    shape = (args.batch, 3, args.resolution, args.resolution)
    x = torch.randn(shape, device=device)
    for _ in range(2):
        model.denoise(x, torch.ones(args.batch, device=device))
    cases = KDIFF_CASES
    if args.solvers:
        keep = set(args.solvers.split(","))
        cases = [c for c in cases if c[0] in keep or c[2] in keep]

    def run_theirs(sampler, opts, steps):
        def theirs():
            sigmas = ks.get_sigmas_karras(steps, model.process.sigma_min, model.process.sigma_max, rho=7.0,
                                          device=device)
            x = torch.randn(shape, device=device) * sigmas[0]
            return getattr(ks, sampler)(model, x, sigmas, disable=True, **opts).to("cpu")  # as solverzoo returns

        model.reset()
        return timed(theirs, device)[0], model.seconds, model.calls

    out = {}
    for name, opts, sampler, kd_opts, steps in cases:
        ours, theirs, noise = [], [], []
        for rep in range(args.reps):
            pair = ("ours", "theirs") if rep % 2 == 0 else ("theirs", "ours")
            for who in pair:
                if who == "ours":
                    total, inside, nz, res = run_sample(model, name, opts, args.batch, device, steps=steps)
                    ours.append((total, inside, res.nfe))
                    noise.append(nz)
                else:
                    theirs.append(run_theirs(sampler, kd_opts, steps))
        nfe_ours, nfe_theirs = ours[0][2], theirs[0][2]
        ratio = median([a[0] / b[0] for a, b in zip(ours, theirs)])
        # model-normalised: each run's total in units of its own model time (removes the drift of the
        # model's speed between runs on a shared machine; both do the same model work)
        norm = median([(a[0] / a[1]) / (b[0] / b[1]) for a, b in zip(ours, theirs)])
        ov_ours = median([(t - m) / m for t, m, _ in ours])
        ov_theirs = median([(t - m) / m for t, m, _ in theirs])
        calls_per_step_ours = nfe_ours / steps
        calls_per_step_theirs = nfe_theirs / steps
        step_ours = ov_ours * calls_per_step_ours  # overhead per step / one model call
        step_theirs = ov_theirs * calls_per_step_theirs
        out[name] = {
            "solverzoo_options": opts, "k_diffusion": sampler, "k_diffusion_options": kd_opts, "steps": steps,
            "nfe_solverzoo": nfe_ours, "nfe_k_diffusion": nfe_theirs,
            "seconds_solverzoo": median([a[0] for a in ours]), "seconds_k_diffusion": median([b[0] for b in theirs]),
            "time_ratio": ratio, "time_ratio_model_normalised": norm,
            "overhead_solverzoo": ov_ours, "overhead_k_diffusion": ov_theirs,
            "step_overhead_solverzoo": step_ours, "step_overhead_k_diffusion": step_theirs,
            "noise_share_of_model_solverzoo": median([n / a[1] for n, a in zip(noise, ours)]),
            "target_ratio": KDIFF_TARGET, "target_step_overhead": STEP_OVERHEAD_TARGET,
            "pass_ratio": ratio <= KDIFF_TARGET or norm <= KDIFF_TARGET,
            "pass_step_overhead": step_ours < STEP_OVERHEAD_TARGET,
        }
        print(f"  {name:16s} nfe {nfe_ours}/{nfe_theirs} time ratio {ratio:.3f} (model-normalised {norm:.3f}) "
              f"step overhead ours {100 * step_ours:.2f}% theirs {100 * step_theirs:.2f}%", flush=True)
    return {"config": {"resolution": args.resolution, "batch": args.batch, "width": args.width, "reps": args.reps,
                       "grid": "karras (sigma 0.002..80, rho 7)", "process": "edm",
                       "k_diffusion_noise": "its defaults: torch.randn_like (default_noise_sampler) for the ancestral "
                                            "samplers, BrownianTreeNoiseSampler (torchsde) for the *_sde samplers"},
            "samplers": out}


# ----------------------------------------------------------------------------------------- noise
def run_noise(args, device) -> dict:
    """Per-sample noise (NoiseSource.randn, one CPU generator per sample) against one torch.randn of the
    whole batch from a single generator: the price of batch-independent noise paths."""
    from solverzoo.noise import PATH, NoiseSource

    out = {}
    for res in args.noise_resolutions:
        shape = (3, res, res)
        src = NoiseSource(0, range(args.batch), PATH, device)
        gen = torch.Generator().manual_seed(0)
        n = max(1, int(2e6 // (args.batch * 3 * res * res)))  # ~2M numbers per timing

        def per_sample(src=src, shape=shape, n=n):
            for _ in range(n):
                src.randn(shape)
            sync(device)

        def one_generator(shape=shape, gen=gen, n=n):
            for _ in range(n):
                torch.randn((args.batch, *shape), generator=gen).to(device)
            sync(device)

        per_sample(), one_generator()
        ratios, a_t, b_t = [], [], []
        for rep in range(9):
            pair = (per_sample, one_generator) if rep % 2 == 0 else (one_generator, per_sample)
            t = {f: timed(f, device)[0] / n for f in pair}
            a_t.append(t[per_sample])
            b_t.append(t[one_generator])
            ratios.append(t[per_sample] / t[one_generator])
        out[f"3x{res}x{res}"] = {"per_sample_us": 1e6 * median(a_t), "one_generator_us": 1e6 * median(b_t),
                                 "ratio": median(ratios)}
        print(f"  3x{res}x{res}, batch {args.batch}: per-sample {1e6 * median(a_t):.0f} us, one generator "
              f"{1e6 * median(b_t):.0f} us, ratio {median(ratios):.2f}", flush=True)
    return {"config": {"batch": args.batch, "reps": 9}, "shapes": out}


# ----------------------------------------------------------------------------------------- report
def _rerun_note(rows: dict) -> list:
    cmds = sorted({r["command"] for r in rows.values() if "command" in r})
    return ["", *[f"[2] re-measured after a later commit: `{c}`" for c in cmds]] if cmds else []


def report(results: dict) -> str:
    lines = []
    if "overhead" in results:
        sec = results["overhead"]
        c = sec["config"]
        lines += [f"### 1. Solver overhead (conv UNet, 3x{c['resolution']}x{c['resolution']}, batch {c['batch']}, "
                  f"NFE ~{c['nfe']}; target (total - model) / model < {100 * OVERHEAD_TARGET:.0f}%)", "",
                  f"Command: `{sec['command']}`", "",
                  "| solver | NFE | model call (ms) | overhead / model | noise draws / model | target | pass |",
                  "|---|---:|---:|---:|---:|---:|:---:|"]
        for label, r in sec["solvers"].items():
            if "skipped" in r:
                lines.append(f"| {label} | - | - | skipped: {r['skipped'][:90]} | - | < 5% | n/a |")
                continue
            note = f" ({r['process']})" if r["process"] != "edm" else ""
            if "command" in r:
                note += " [2]"
            lines.append(f"| {label}{note} | {r['nfe']} | {r['model_call_ms']:.0f} | "
                         f"{100 * r['overhead_ratio']:.2f}% | "
                         f"{100 * r['noise_share_of_model']:.2f}% | < 5% | {'pass' if r['pass'] else 'FAIL'} |")
        lines += _rerun_note(sec["solvers"])
        lines.append("")
    if "gmm" in results:
        sec = results["gmm"]
        c = sec["config"]
        lines += [f"### 2. Analytic score cost (gmm-image 3x{c['resolution']}x{c['resolution']}, K = {c['K']}, "
                  f"batch {c['batch']}; target denoiser / (rfft2 + irfft2) <= {GMM_TARGET:g}x)", "",
                  f"Command: `{sec['command']}`", "",
                  "| torch threads | rfft2+irfft2 (ms) | denoise, shared sigma (ms) | ratio | "
                  "denoise, per-sample sigma (ms) "
                  "| ratio | target | pass |", "|---:|---:|---:|---:|---:|---:|---:|:---:|"]
        for t, r in sec["threads"].items():
            ms = r["ms"]
            lines.append(f"| {t} | {ms['fft_pair']:.1f} | {ms['denoise_shared_sigma']:.1f} | "
                         f"{r['ratio_shared_sigma']:.2f}x | "
                         f"{ms['denoise_per_sample_sigma']:.1f} | {r['ratio_per_sample_sigma']:.2f}x | <= 3x | "
                         f"{'pass' if r['pass'] else 'FAIL'} |")
        lines.append("")
    if "fd" in results:
        sec = results["fd"]
        c = sec["config"]
        lines += [f"### 3. Streaming FD memory ({c['feature']} features, 3x{c['resolution']}x{c['resolution']}, "
                  f"batches of {c['batch']}; target: peak RSS growth does not grow with N)", "",
                  f"Command: `{sec['command']}`", "",
                  "| N | FD | seconds | RSS before (MB) | peak growth while streaming (MB) | peak growth in the final "
                  "distance (MB) | RSS at 10%, 50%, 100% of the stream (MB) |", "|---:|---:|---:|---:|---:|---:|---|"]
        for n, rs in sec["runs"].items():
            for r in rs:
                tr = [m for _, m in r["rss_trace_mb"]]
                pts = ", ".join(f"{tr[k]:.0f}" for k in (0, len(tr) // 2 - 1, len(tr) - 1)) if tr else ""
                lines.append(f"| {n} | {r['fd']:.5f} | {r['seconds']:.1f} | {r['rss_before_mb']:.0f} | "
                             f"{r['stream_growth_mb']:.1f} | {r['distance_growth_mb']:.1f} | {pts} |")
        sg = sec["stream_growth_mb"]
        lines += ["", f"Worst streaming growth: {', '.join(f'N = {n}: {v:.1f} MB' for n, v in sg.items())}; ratio "
                  f"{sec['growth_ratio']:.2f} (allowed: growth(large N) <= 1.1 growth(small N) + 16 MB = "
                  f"{sec['allowed_growth_mb']:.1f} MB): **{'pass' if sec['pass'] else 'FAIL'}**", ""]
    if "kdiff" in results:
        sec = results["kdiff"]
        c = sec["config"]
        lines += [f"### 4. Speed parity with k-diffusion (conv UNet 3x{c['resolution']}x{c['resolution']}, batch "
                  f"{c['batch']}, karras grid; targets: time ratio <= 1.0, overhead per step < 5% of a model call)", "",
                  f"Command: `{sec['command']}`", "",
                  "| solverzoo | k-diffusion | NFE (sz/kd) | time sz/kd | model-normalised sz/kd | step overhead sz | "
                  "step overhead kd | sz noise / model | pass (ratio, step) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|:---:|"]
        for name, r in sec["samplers"].items():
            opts = ",".join(f"{k}={v}" for k, v in r["solverzoo_options"].items())
            if "command" in r:
                opts += " [2]"
            lines.append(f"| {name}{' ' + opts if opts else ''} | {r['k_diffusion']} | "
                         f"{r['nfe_solverzoo']}/{r['nfe_k_diffusion']} | "
                         f"{r['time_ratio']:.3f} | {r['time_ratio_model_normalised']:.3f} | "
                         f"{100 * r['step_overhead_solverzoo']:.2f}% | {100 * r['step_overhead_k_diffusion']:.2f}% | "
                         f"{100 * r['noise_share_of_model_solverzoo']:.2f}% | "
                         f"{'pass' if r['pass_ratio'] else 'FAIL'}, {'pass' if r['pass_step_overhead'] else 'FAIL'} |")
        lines += _rerun_note(sec["samplers"])
        lines.append("")
    if "noise" in results:
        sec = results["noise"]
        lines += [f"### Per-sample noise cost (batch {sec['config']['batch']}; no target: what the per-sample "
                  f"generators cost)", "", f"Command: `{sec['command']}`", "",
                  "| shape | NoiseSource.randn (us) | one generator torch.randn (us) | ratio |", "|---|---:|---:|---:|"]
        for shape, r in sec["shapes"].items():
            lines.append(f"| {shape} | {r['per_sample_us']:.0f} | {r['one_generator_us']:.0f} | {r['ratio']:.2f}x |")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS[:4]))
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own setting)")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions (medians are reported)")
    p.add_argument("--out", default=None,
                   help="results JSON (sections of other targets are kept; default results/<device>/results.json)")
    p.add_argument("--report", action="store_true", help="print the README table from --out and exit")
    g = p.add_argument_group("targets 1 and 4 (conv UNet)")
    g.add_argument("--resolution", type=int, default=64)
    g.add_argument("--batch", type=int, default=64)
    g.add_argument("--nfe", type=int, default=20)
    g.add_argument("--width", type=int, default=32, help="conv UNet base channels (2x at the low resolution)")
    g.add_argument("--solvers", default=None, help="comma-separated subset of solvers / labels")
    g.add_argument("--no-variants", dest="variants", action="store_false",
                   help="skip the stochastic variants of the default-deterministic solvers")
    g.add_argument("--adaptive-tol", type=float, default=1e-2, help="rtol = atol of ode_adaptive")
    g = p.add_argument_group("target 2 (gmm-image)")
    g.add_argument("--gmm-resolution", type=int, default=256)
    g.add_argument("--gmm-batch", type=int, default=16)
    g.add_argument("--gmm-k", type=int, default=8)
    g.add_argument("--gmm-reps", type=int, default=15)
    g.add_argument("--gmm-threads", type=int, nargs="+", default=[1, 2])
    g = p.add_argument_group("target 3 (streaming FD)")
    g.add_argument("--fd-n", type=int, default=50_000)
    g.add_argument("--fd-small", type=int, default=5_000)
    g.add_argument("--fd-resolution", type=int, default=32)
    g.add_argument("--fd-batch", type=int, default=500)
    g.add_argument("--fd-feature", default="pixels")
    g.add_argument("--fd-reps", type=int, default=2, help="fresh processes per N (alternating)")
    g.add_argument("--fd-child", type=int, default=None, help=argparse.SUPPRESS)
    g = p.add_argument_group("per-sample noise cost (uses --batch)")
    g.add_argument("--noise-resolutions", type=int, nargs="+", default=[8, 32, 64])
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.fd_child is not None:
        print(json.dumps(fd_child(args)))
        return
    out_path = Path(args.out) if args.out else RESULTS / args.device / "results.json"
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    if args.report:
        print(report(results))
        return
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available")
    given = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/perf/run.py " + " ".join(shlex.quote(a) for a in given)
    runners = {"overhead": run_overhead, "gmm": run_gmm, "fd": run_fd, "kdiff": run_kdiff, "noise": run_noise}
    for target in args.targets:
        print(f"== {target}", flush=True)
        seconds, section = timed(partial(runners[target], args, device))
        stamp = dict(command=command, machine=machine_note(device), seconds=seconds,
                     date=time.strftime("%Y-%m-%d %H:%M:%S"))
        rows = {"overhead": "solvers", "kdiff": "samplers"}.get(target)
        if args.solvers and rows and target in results:
            # a subset run replaces only its rows, each stamped with the command that produced it
            for row in section[rows].values():
                row["command"], row["date"] = command, stamp["date"]
            results[target][rows].update(section[rows])
        else:
            section.update(stamp)
            results[target] = section
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1, default=str) + "\n")  # after each target
    print(report({k: results[k] for k in args.targets}))


if __name__ == "__main__":
    main()
