#!/usr/bin/env bash
# The seed methods' claims on the shipped patches-unet (run from the repository root), N = 256 per cell.
# results/<run>/results.json gets one row per cell as it finishes (a rerun skips the done cells), one PNG of
# 16 samples per cell and sheet_<part>.png; the ref_*.npz reference statistics (20,000 patches in pool:8
# space, 2000 through Inception-v3) are built on the first run of a folder and not committed (copy or link
# them into a new folder to skip the 9 minutes of Inception).
set -euo pipefail
export OMP_NUM_THREADS=1
HERE=benchmarks/seed_methods_learned
RUNS=${RUNS:-/work/runs}
# The held-out curve of the shipped model:
python "$HERE/training_curve.py" --checkpoint solverzoo/checkpoints/patches_unet.pt --out "$HERE/results/n256/heldout_curve"
# ODE/SDE peers at NFE 50, Euler-Maruyama / SEEDS-1/2/3 and PC / PDS / TDAS at NFE 20, 50, 100:
python "$HERE/run.py" --model patches-unet --out "$HERE/results/n256" --num-samples 256 --parts peers,seeds,pds_tdas
# EDM vs FDM training (the runs of benchmarks/fdm_training/run.sh patches): held-out curves, then both EMA
# models at iteration 4000 and at the twin's last iteration, heun at NFE 50:
python "$HERE/training_curve.py" --checkpoint edm=solverzoo/checkpoints/patches_unet.pt \
  --checkpoint fdm=benchmarks/fdm_training/models/patches_unet_fdm_edm.pt --out "$HERE/results/fdm_4000/heldout_edm_fdm"
python "$HERE/run.py" --edm-model "$RUNS/patches/snapshots/model-004000.pt" \
  --fdm-model "$RUNS/patches_fdm/snapshots/model-004000.pt" --out "$HERE/results/fdm_4000" --num-samples 256 \
  --parts fdm --nfe 50
python "$HERE/run.py" --edm-model patches-unet --fdm-model benchmarks/fdm_training/models/patches_unet_fdm_edm.pt \
  --out "$HERE/results/n256" --num-samples 256 --parts fdm --nfe 50
python "$HERE/run.py" --table "$HERE/results/n256"
python "$HERE/run.py" --table "$HERE/results/fdm_4000"
