#!/usr/bin/env python
"""Solver overhead and noise cost per step against the model call, and the bench's wall time, on one
device (CUDA first).

Run through ``benchmarks/gpu/run.sh`` (one command, results in ``$OUT`` or
``benchmarks/gpu/results/<UTC time>/``); see README.md beside this file.

Two measurements:

* ``noise``: one draw of per-sample Gaussian noise for a whole batch, three ways, on the target
  device: ``torch.randn`` (the floor: one generator, no per-sample guarantee), solverzoo's CPU
  source (``noise="cpu"``: one CPU generator per sample, then a copy to the device) and the
  device-side Philox source (``noise="philox"``).  Median milliseconds and the ratio to
  ``torch.randn``.
* ``solvers``: ``solverzoo.sample`` on real models at a realistic batch: ``gmm-image`` (analytic,
  FFT-based denoiser), ``digits-unet`` and ``patches-unet`` (the shipped UNets; an untrained
  stand-in of the same architecture times the same when the checkpoint is not there).  Every
  model call is timed inside the model (synchronised on CUDA), and so is every noise draw.  Per
  step, in units of one model call: ``overhead = (total - model) / steps / (model / nfe)`` and
  ``noise = noise time / steps / (model / nfe)``, for each noise source on the stochastic solvers.

* ``bench``: the wall time of whole ``solverzoo bench`` commands (a subprocess each, as a user runs
  them) with ``--noise cpu`` and ``--noise philox`` side by side, each first with an empty disk cache
  (``$SOLVERZOO_CACHE`` in a fresh folder: the reference statistics, floors and pathwise reference are
  computed) and then again with the cache it left (what every later run costs).  The commands: the
  default bench (``solverzoo bench``, every default solver on ``gmm-image``) and the learned-model
  bench ``--model patches-unet --solvers pc,seeds2 --nfe 10 --num-samples 32``; ``--quick``: one tiny
  gmm-image bench.  One run each (a bench is long; its time is its own repetition).

Every number of ``noise`` and ``solvers`` is the median over ``--reps`` repetitions after one warm-up run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

import solverzoo  # noqa: E402
from solverzoo.io import atomic_write_json, atomic_write_text  # noqa: E402
from solverzoo.models import get_model  # noqa: E402
from solverzoo.noise import PATH, NoiseSource, PhiloxNoiseSource  # noqa: E402
from solverzoo.sampling import resolve_device  # noqa: E402

ODE_SOLVERS = ["euler", "heun", "dpmpp_2m", "unipc"]
SDE_SOLVERS = ["euler_ancestral", "dpmpp_sde", "seeds2", "pc"]
QUICK_SOLVERS = ["euler", "euler_ancestral", "seeds2"]
SOLVER_OPTIONS = {"pc": {"corrector_norm": "sample"}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, reps: int) -> float:
    """Median seconds of ``fn()`` over ``reps`` runs after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ----------------------------------------------------------------------------- noise
def bench_noise(device: torch.device, shapes: list[tuple[int, ...]], reps: int) -> list[dict]:
    rows = []
    for shape in shapes:
        batch, one = shape[0], shape[1:]
        cpu = NoiseSource(0, range(batch), PATH, device)
        philox = PhiloxNoiseSource(0, range(batch), PATH, device)
        t_randn = timed(partial(torch.randn, shape, device=device), device, reps)
        t_cpu = timed(partial(cpu.randn, one), device, reps)
        t_philox = timed(partial(philox.randn, one), device, reps)
        row = {"shape": list(shape), "randn_ms": 1e3 * t_randn, "cpu_source_ms": 1e3 * t_cpu,
               "philox_ms": 1e3 * t_philox, "cpu_source_over_randn": t_cpu / t_randn,
               "philox_over_randn": t_philox / t_randn}
        rows.append(row)
        print(f"noise {tuple(shape)}: randn {row['randn_ms']:.3f} ms, cpu source {row['cpu_source_ms']:.3f} ms "
              f"({row['cpu_source_over_randn']:.2f}x), philox {row['philox_ms']:.3f} ms "
              f"({row['philox_over_randn']:.2f}x)", flush=True)
    return rows


# ----------------------------------------------------------------------------- solvers
class Clock:
    """Wall time spent inside model calls and noise draws (synchronised before and after on CUDA)."""

    def __init__(self, device: torch.device):
        self.device, self.model_s, self.noise_s, self.calls = device, 0.0, 0.0, 0

    def wrap(self, fn, kind: str):
        def inner(*args, **kwargs):
            sync(self.device)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(self.device)
            dt = time.perf_counter() - t0
            if kind == "model":
                self.model_s += dt
                self.calls += 1
            else:
                self.noise_s += dt
            return out

        return inner


@contextmanager
def timing(model, clock: Clock):
    """Time ``model.denoise`` and both noise sources' ``randn`` while active."""
    model.denoise = clock.wrap(type(model).denoise.__get__(model), "model")
    saved = {cls: cls.randn for cls in (NoiseSource, PhiloxNoiseSource)}
    for cls, fn in saved.items():
        cls.randn = clock.wrap(fn, "noise")
    try:
        yield clock
    finally:
        del model.denoise
        for cls, fn in saved.items():
            cls.randn = fn


def stand_in_unet(name: str):
    """The shipped UNet when its checkpoint is there, else an untrained network of the same
    architecture (timing only: the cost of a call does not depend on the weights)."""
    try:
        return get_model(name), "shipped"
    except ValueError:
        pass
    from solverzoo.models.learned import DenoiserModel, build_denoiser

    config = {"digits-unet": ({"resolution": 8, "in_channels": 1, "channels": 16, "channel_mult": [1, 2, 2]}, "digits"),
              "patches-unet": ({"resolution": 32, "in_channels": 3, "channels": 24, "channel_mult": [1, 2, 2, 2]},
                               "patches")}[name]
    torch.manual_seed(0)
    net = build_denoiser(config[0], {"kind": "edm"})
    c = config[0]
    return DenoiserModel(net, net.process(), (c["in_channels"], c["resolution"], c["resolution"]), name=name,
                         data=config[1]), "untrained stand-in"


def bench_solvers(device: torch.device, models: list[tuple[str, object, str, int]], nfe: int, reps: int,
                  budget_s: float, start: float, solvers: list[str]) -> list[dict]:
    rows = []
    for label, model, source, batch in models:
        model = model.to(device, torch.float32)
        for name in solvers:
            for noise in (["cpu", "philox"] if name in SDE_SOLVERS else ["cpu"]):
                if time.perf_counter() - start > budget_s:
                    print(f"time budget of {budget_s:.0f} s reached: {label} {name} {noise} and the rest skipped",
                          flush=True)
                    return rows
                opts = SOLVER_OPTIONS.get(name, {})

                run = partial(solverzoo.sample, model, name, nfe=nfe, num_samples=batch, batch_size=batch, seed=0,
                              device=device, noise=noise, **opts)

                run()  # warm-up (cuDNN autotuning, lazy init, caches)
                runs = []
                for _ in range(reps):
                    clock = Clock(device)
                    with timing(model, clock):
                        sync(device)
                        t0 = time.perf_counter()
                        res = run()
                        sync(device)
                        total = time.perf_counter() - t0
                    per_call = clock.model_s / clock.calls
                    runs.append({"total_s": total, "model_s": clock.model_s, "noise_s": clock.noise_s,
                                 "calls": clock.calls, "steps": res.steps, "nfe": res.nfe,
                                 "overhead_per_step": (total - clock.model_s) / res.steps / per_call,
                                 "noise_per_step": clock.noise_s / res.steps / per_call,
                                 "model_call_ms": 1e3 * per_call})
                med = {k: statistics.median(r[k] for r in runs) for k in
                       ("total_s", "model_s", "noise_s", "overhead_per_step", "noise_per_step", "model_call_ms")}
                row = {"model": label, "model_source": source, "batch": batch, "solver": name, "noise": noise,
                       "nfe": runs[0]["nfe"], "steps": runs[0]["steps"], **med, "reps": reps}
                rows.append(row)
                print(f"{label:>22} {name:>16} noise={noise:<6} nfe {row['nfe']:>3} steps {row['steps']:>3}: "
                      f"model call "
                      f"{row['model_call_ms']:8.3f} ms, overhead/step {100 * row['overhead_per_step']:7.2f}% "
                      f"noise/step {100 * row['noise_per_step']:7.2f}% of a call", flush=True)
    return rows


# ----------------------------------------------------------------------------- whole bench commands
BENCH_COMMANDS = {  # the learned-model bench first: it is the shorter one
    "patches-unet pc,seeds2 NFE 10 N 32": ["--model", "patches-unet", "--solvers", "pc,seeds2", "--nfe", "10",
                                           "--num-samples", "32"],
    "default bench": [],
}
QUICK_BENCH_COMMANDS = {
    "gmm-image 8x8 euler,seeds2 NFE 4 N 20": ["--model", "gmm-image", "-m", "resolution=8", "--solvers",
                                              "euler,seeds2", "--nfe", "4", "--num-samples", "20"],
}


def bench_commands(device: torch.device, commands: dict[str, list[str]], budget_s: float, start: float,
                   threads: int | None) -> list[dict]:
    """Wall seconds of each ``solverzoo bench`` command per noise source, with a cold and a warm disk cache
    (one cache folder per noise source).  The order is cpu cold, philox cold, cpu warm, philox warm, so that
    a run stopped by the budget still has both sources side by side."""
    rows = []
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    for label, extra in commands.items():
        by_noise = {noise: {"command": label, "noise": noise, "args": extra, "device": str(device)}
                    for noise in ("cpu", "philox")}
        with tempfile.TemporaryDirectory() as tmp:
            for cache in ("cold", "warm"):
                for noise, row in by_noise.items():
                    env["SOLVERZOO_CACHE"] = str(Path(tmp) / f"cache-{noise}")
                    if time.perf_counter() - start > budget_s:
                        print(f"time budget of {budget_s:.0f} s reached: bench {label} {noise} {cache} skipped",
                              flush=True)
                        row[f"{cache}_s"], row[f"{cache}_status"] = None, "skipped (time budget)"
                        continue
                    cmd = [sys.executable, "-m", "solverzoo", "bench", *extra, "--device", str(device), "--noise",
                           noise, "--out", str(Path(tmp) / f"out-{noise}-{cache}")]
                    t0 = time.perf_counter()
                    left = max(30.0, budget_s - (t0 - start))  # a run is stopped at the budget, not after it
                    try:
                        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=left)
                        row[f"{cache}_status"] = "ok" if proc.returncode == 0 else \
                            f"exit {proc.returncode}: {(proc.stderr.strip().splitlines() or [''])[-1]}"
                    except subprocess.TimeoutExpired:
                        row[f"{cache}_status"] = f"stopped after {left:.0f} s (time budget)"
                    row[f"{cache}_s"] = time.perf_counter() - t0
                    print(f"bench {label} noise={noise} {cache} cache: {row[f'{cache}_s']:.1f} s "
                          f"[{row[f'{cache}_status']}]", flush=True)
        rows += by_noise.values()
    return rows


# ----------------------------------------------------------------------------- report
def machine(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "device": str(device), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                        timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def markdown(results: dict) -> str:
    lines = [f"# GPU benchmark: {results['machine'].get('gpu', results['machine']['device'])}", "",
             f"Command: `{results['command']}`", "", "## Noise: one draw for the whole batch", "",
             "| shape | torch.randn ms | cpu source ms (x randn) | philox ms (x randn) |", "|---|---|---|---|"]
    for r in results["noise"]:
        lines.append(f"| {'x'.join(map(str, r['shape']))} | {r['randn_ms']:.3f} | {r['cpu_source_ms']:.3f} "
                     f"({r['cpu_source_over_randn']:.2f}x) | {r['philox_ms']:.3f} ({r['philox_over_randn']:.2f}x) |")
    lines += ["", "## Solvers: per step, in units of one model call", "",
              "| model (batch) | solver | noise | NFE | model call ms | overhead / step | noise / step |",
              "|---|---|---|---|---|---|---|"]
    for r in results["solvers"]:
        lines.append(f"| {r['model']} ({r['batch']}) | {r['solver']} | {r['noise']} | {r['nfe']} | "
                     f"{r['model_call_ms']:.3f} | {100 * r['overhead_per_step']:.2f}% | "
                     f"{100 * r['noise_per_step']:.2f}% |")
    lines += ["", "## Bench commands: wall seconds (a fresh disk cache, then again with it)", "",
              "| bench | cpu noise, cold | cpu noise, warm | philox noise, cold | philox noise, warm |",
              "|---|---|---|---|---|"]
    by_command: dict[str, dict] = {}
    for r in results.get("bench", []):
        by_command.setdefault(r["command"], {})[r["noise"]] = r

    def cell(r: dict | None, cache: str) -> str:
        if r is None or r.get(f"{cache}_s") is None:
            return "—"
        status = r[f"{cache}_status"]
        return f"{r[f'{cache}_s']:.1f}" + ("" if status == "ok" else f" ({status})")

    for label, by_noise in by_command.items():
        cpu, philox = by_noise.get("cpu"), by_noise.get("philox")
        lines.append(f"| {label} | {cell(cpu, 'cold')} | {cell(cpu, 'warm')} | {cell(philox, 'cold')} | "
                     f"{cell(philox, 'warm')} |")
    return "\n".join(lines) + "\n"


def write(out: Path, results: dict) -> None:
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", markdown(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (cuda if available)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / time.strftime("%Y%m%d-%H%M%S", time.gmtime()),
                        help="output folder (default: results/<UTC time>/ beside this file)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--nfe", type=int, default=None, help="NFE budget of every solver run (default 20; quick 6)")
    parser.add_argument("--targets", default="noise,solvers,bench", help="comma-separated: noise, solvers, bench")
    parser.add_argument("--resolution", type=int, default=None, help="gmm-image resolution (default 64; quick 8)")
    parser.add_argument("--batch", type=int, default=None, help="batch of every model (default 256; quick 4)")
    parser.add_argument("--budget-s", type=float, default=240.0,
                        help="noise and solvers: stop starting new cells after this long")
    parser.add_argument("--bench-budget-s", type=float, default=240.0,
                        help="bench commands: the time they may take together (a run is stopped at it)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    reps = args.reps or (1 if args.quick else 5)
    batch = args.batch or (4 if args.quick else 256)
    res = args.resolution or (8 if args.quick else 64)
    shapes = [(batch, 3, 32, 32), (batch, 3, res, res)] if args.quick else \
        [(64, 3, 32, 32), (batch, 3, 32, 32), (batch, 3, res, res), (16, 3, 256, 256)]
    print(f"device {device}, reps {reps}, batch {batch}, gmm-image {res}x{res}", flush=True)
    targets = args.targets.split(",")
    noise_rows = bench_noise(device, shapes, reps) if "noise" in targets else []
    solver_rows = []
    if "solvers" in targets:
        models = [(f"gmm-image {res}x{res}", get_model("gmm-image", resolution=res), "analytic", batch)]
        for name in ("digits-unet", "patches-unet"):
            model, source = stand_in_unet(name)
            models.append((name, model, source, batch))
        solvers = QUICK_SOLVERS if args.quick else ODE_SOLVERS + SDE_SOLVERS
        nfe = args.nfe or (6 if args.quick else 20)
        solver_rows = bench_solvers(device, models, nfe, reps, args.budget_s, start, solvers)
    results = {"command": " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "machine": machine(device), "seconds": time.perf_counter() - start, "noise": noise_rows,
               "solvers": solver_rows, "bench": []}
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out, results)  # what is measured so far survives a stopped bench phase
    if "bench" in targets:
        results["bench"] = bench_commands(device, QUICK_BENCH_COMMANDS if args.quick else BENCH_COMMANDS,
                                          args.bench_budget_s, time.perf_counter(), args.threads)
        results["seconds"] = time.perf_counter() - start
        write(args.out, results)
    print(f"{time.perf_counter() - start:.1f} s -> {args.out / 'results.json'}, {args.out / 'results.md'}", flush=True)


if __name__ == "__main__":
    main()
