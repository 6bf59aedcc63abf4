#!/usr/bin/env python
"""A/B of the DFT FrequencyFilter: the full complex fft2/ifft2 (before commit "preconditioners: ...
rfft2") against the current half-spectrum rfft2/irfft2, on PDS/TDAS runs of target 1's conv UNet.

    python benchmarks/perf/precond_ab.py --threads 1 --reps 2

The old operator is restored by patching ``FrequencyFilter._apply`` in this process only; each run's
overhead ratio (total - model) / model is measured as in run.py, runs alternate old/new."""

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as perf  # noqa: E402

from solverzoo.preconditioners import base as pb  # noqa: E402

NEW = pb.FrequencyFilter._apply


def old_apply(self, x, power):
    if self.basis != "dft":
        return NEW(self, x, power)
    dt = self._prep(x)
    f = self.effective.to(device=x.device, dtype=dt)
    if power == 2:
        f = f.square()
    return torch.fft.ifft2(f * torch.fft.fft2(x.to(dt))).real.to(x.dtype)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--nfe", type=int, default=20)
    p.add_argument("--solvers", default="pds,tdas")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = perf.TimedConvModel("edm", args.resolution, 3, 32)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution)
    model.denoise(x, torch.ones(args.batch))
    out = {}
    for name in args.solvers.split(","):
        runs = {"old": [], "new": []}
        for rep in range(args.reps):
            for which in (("old", "new") if rep % 2 == 0 else ("new", "old")):
                pb.FrequencyFilter._apply = old_apply if which == "old" else NEW
                filters = perf.explicit_filters((3, args.resolution, args.resolution))
                total, inside, noise, res = perf.run_sample(model, name, {"filters": filters}, args.nfe, args.batch,
                                                            "cpu")
                runs[which].append((total - inside) / inside)
                print(f"  {name} {which}: overhead {100 * runs[which][-1]:.2f}% (total {total:.1f} s)", flush=True)
        pb.FrequencyFilter._apply = NEW
        out[name] = {k: statistics.median(v) for k, v in runs.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
