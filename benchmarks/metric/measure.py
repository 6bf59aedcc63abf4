"""Does the headline metric rank degraded exact samples below exact ones?  (benchmarks/metric)

For the default bench model (gmm-image, 3x32x32, VE) and N = 500, over 6 seeds: exact samples
and modest, realistic degradations of the same samples (blur 0.4 / 0.6 px, unsharp sharpening,
added noise 0.05 / 0.1, contraction toward the mean 5% / 10%, a colour shift, samples of the
mixture without one component), scored by the old headline metric (``fd_pixels``: Frechet
distance against the exact moments) and by ``mmd_whitened`` (solverzoo.metrics.mmd).

    OMP_NUM_THREADS=1 python benchmarks/metric/measure.py > benchmarks/metric/results/degradations/degradations.md
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch

import solverzoo
from solverzoo.metrics import exact_reference
from solverzoo.metrics.mmd import REFERENCE_SEED, kernel_reference
from solverzoo.models.gmm_image import GMMImage

N, SEEDS = 500, range(6)


def blur(x: torch.Tensor, s: float) -> torch.Tensor:
    """Gaussian blur of std ``s`` pixels (circular, through the FFT)."""
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, dtype=torch.float64)
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)
    gain = torch.exp(-2 * math.pi**2 * s**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    return torch.fft.irfft2(torch.fft.rfft2(x.double()) * gain, s=(h, w))


def degradations(model, x: torch.Tensor, seed: int, dropped: GMMImage) -> dict[str, torch.Tensor]:
    m = model.data_mean().reshape(1, *model.shape)
    g = torch.Generator().manual_seed(1000 + seed)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    colour_shift = torch.tensor([0.05, 0.0, -0.05], dtype=torch.float64).reshape(1, 3, 1, 1)
    return {
        "exact": x,
        "blur 0.4 px": blur(x, 0.4),
        "blur 0.6 px": blur(x, 0.6),
        "sharpen (unsharp 0.5, 1 px)": x + 0.5 * (x - blur(x, 1.0)),
        "noise 0.05": x + 0.05 * noise,
        "noise 0.1": x + 0.1 * noise,
        "contract 5%": m + 0.95 * (x - m),
        "contract 10%": m + 0.9 * (x - m),
        "colour shift (+0.05 R, -0.05 B)": x + colour_shift,
        "drop 1 of 8 components": dropped.sample_data(seed, range(N)).double(),
    }


def main() -> None:
    torch.set_num_threads(1)
    start = time.time()
    model = solverzoo.get_model("gmm-image")
    dropped = GMMImage(means=model.means[1:], spectrum=model.power_spectrum())
    fd_ref = exact_reference(model, "pixels")
    mmd_ref = kernel_reference(model)
    fd, mmd, mmd_std = {}, {}, {}
    for seed in SEEDS:
        x = model.sample_data(seed, range(N)).double()
        for name, xs in degradations(model, x, seed, dropped).items():
            fd.setdefault(name, []).append(fd_ref.distance_samples(xs.reshape(N, -1)))
            s = mmd_ref.score(xs)
            mmd.setdefault(name, []).append(s.value)
            mmd_std.setdefault(name, []).append(s.std)
        print(f"seed {seed} done ({time.time() - start:.0f} s)", file=sys.stderr)
    ex_fd, ex_mmd = np.array(fd["exact"]), np.array(mmd["exact"])
    print(f"gmm-image 3x32x32 (VE), N = {N}, seeds {list(SEEDS)}; mmd reference: {len(mmd_ref.y)} exact samples "
          f"(seed {REFERENCE_SEED}).  Cells: mean over seeds ± seed-to-seed std; 'worse' = seeds in "
          f"which the set scores above the exact samples of the same seed.\n")
    print("| sample set | fd_pixels | worse | mmd_whitened | (mean analytic std) | worse |")
    print("|---|---|---|---|---|---|")
    for name in fd:
        f, k, u = np.array(fd[name]), np.array(mmd[name]), np.array(mmd_std[name])
        wf = "" if name == "exact" else f"{int((f > ex_fd).sum())}/{len(f)}"
        wk = "" if name == "exact" else f"{int((k > ex_mmd).sum())}/{len(k)}"
        print(f"| {name} | {f.mean():.1f} ± {f.std(ddof=1):.1f} | {wf} | {k.mean():.3f} ± {k.std(ddof=1):.3f} | "
              f"{u.mean():.3f} | {wk} |")
    print(f"\n({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
