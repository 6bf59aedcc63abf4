#!/usr/bin/env bash
# EDM vs FDM training at patches scale (3x32x32 photograph patches, the shipped patches-unet's recipe):
# the FDM twin differs from the EDM run only in --precond fdm_edm --fdm-multiplier 2 --warmup-ite 200
# (sail-sg/FDM's train.py default and its EDM-FDM warm-up); same width, batch, seed, held-out set, and its
# --iterations is the EDM run's final iteration.  One job at a time, one thread, resumable (--resume).
# RUNS is outside the repository.
set -euo pipefail
RUNS=${RUNS:-/work/runs}
HERE=benchmarks/fdm_training
export OMP_NUM_THREADS=1
COMMON=(--data patches --batch-size 64 --channels 24 --channel-mult 1,2,2,2 --ema-halflife-kimg 10
        --checkpoint-every 100 --threads 1 --heldout 1024 --heldout-every 200)
# 1. the EDM run, until its held-out loss flattens (the shipped patches-unet):
solverzoo train --out "$RUNS/patches" --precond edm --iterations 20000 "${COMMON[@]}" --until-flattened \
    --export "$RUNS/patches_unet_fp16.pt"
ITERATIONS=$(python -c "import torch; print(torch.load('$RUNS/patches/training-state.pt', weights_only=True)['iteration'])")
# 2. its FDM twin at the same budget:
solverzoo train --out "$RUNS/patches_fdm" --precond fdm_edm --fdm-multiplier 2 --warmup-ite 200 \
    --iterations "$ITERATIONS" "${COMMON[@]}" --export "$HERE/models/patches_unet_fdm_edm.pt"
# 3. quality against training iterations (snapshots every 1000 iterations), heun at NFE 35, pool:8 FD:
python "$HERE/fd_vs_steps.py" --run edm="$RUNS/patches" --run fdm_edm="$RUNS/patches_fdm" --every 1000 \
    --solver heun --nfe 35 --num-samples 256 --feature pool:8 --out "$HERE/results/patches_fd_vs_steps/fd_vs_steps"
