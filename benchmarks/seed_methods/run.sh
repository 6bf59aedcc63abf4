#!/usr/bin/env bash
# The seed methods on the exact-score surrogate (issue: reproduce the seeds' claims).
# Run from the repository root with the package installed:  bash benchmarks/seed_methods/run.sh
set -euo pipefail
here=benchmarks/seed_methods

# 1. PDS and TDAS versus the vanilla PC sampler on an FFHQ-like gmm-image at 256x256 (VE process,
#    score_sde's schedule of N0 = 2000 iterations scaled down to 200, 100 and 66 iterations;
#    end time scaled with the speed-up as PDS does). Pixel FD is out of reach at 196,608 dimensions:
#    fd_pool16 (16x16 average pooled) plus the radial spectral error and high-frequency ratio.
solverzoo bench -m resolution=256 --solvers pc,pds,tdas --nfe 132,200,400 \
  --num-samples 32 --batch-size 32 --feature pool:16 -o base_steps=2000 -o tdas.pilot_samples=32 \
  --out "$here/results/pds_tdas_256" --overwrite

# 2. SEEDS-1/2/3 versus Euler-Maruyama and PC over NFE on the default 3x32x32 gmm-image (pixel FD).
solverzoo bench --solvers seeds1,seeds2,seeds3,euler_maruyama,pc --nfe 10,20,50,100,200 \
  --num-samples 1000 --out "$here/results/seeds_32" --overwrite
