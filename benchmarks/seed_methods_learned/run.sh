#!/usr/bin/env bash
# The seed methods' claims on the shipped patches-unet (run from the repository root), N = 256 per cell.
# results/n256/results.json gets one row per cell as it finishes (a rerun skips the done cells), one PNG of
# 16 samples per cell and sheet_<part>.png; the ref_*.npz reference statistics (20,000 patches in pool:8 space,
# 2000 through Inception-v3) are built on the first run and not committed.
set -euo pipefail
export OMP_NUM_THREADS=1
HERE=benchmarks/seed_methods_learned
# PC / PDS / TDAS and Euler-Maruyama / SEEDS-1/2/3 at NFE 20, 50, 100:
python "$HERE/run.py" --model patches-unet --out "$HERE/results/n256" --num-samples 256 --parts seeds,pds_tdas,peers
# EDM vs FDM training at the same budget: heun and euler on the EDM run's snapshot at the FDM twin's
# final iteration and on the twin (recipes: benchmarks/fdm_training/run.sh patches):
if [ -n "${FDM_MODEL:-}" ]; then
  python "$HERE/run.py" --edm-model "$EDM_MODEL" --fdm-model "$FDM_MODEL" --out "$HERE/results/n256" \
    --num-samples 256 --parts fdm
fi
python "$HERE/run.py" --table "$HERE/results/n256"
