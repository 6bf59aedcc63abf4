#!/usr/bin/env bash
# The seed methods' claims on the shipped patches-unet (run from the repository root).
# Each part writes results/<run>/results.json and one PNG per cell; the ref_*.npz reference statistics
# it builds on the first run are not committed.
set -euo pipefail
# SEEDS-1/2/3 vs Euler-Maruyama with fd_pool8, Inception FID and the spectral error:
python benchmarks/seed_methods_learned/run.py --model patches-unet --out benchmarks/seed_methods_learned/results/seeds \
  --num-samples 64 --parts seeds
# PC / PDS / TDAS at NFE 20, 50, 100 (fd_pool8 and the spectral error; no Inception: CPU time):
python benchmarks/seed_methods_learned/run.py --model patches-unet --out benchmarks/seed_methods_learned/results/pds_tdas \
  --num-samples 64 --parts pds_tdas --no-inception
