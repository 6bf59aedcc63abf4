#!/usr/bin/env bash
# EDM vs FDM (EDM-FDM) training at the same budget on scikit-learn's digits, then FD versus
# training steps and FD versus NFE under the same sampler (heun).  CPU only, ~1 h on 2 busy cores.
# RUNS is outside the repository (training states and snapshots are not committed).
# `run.sh` (or `run.sh digits`) runs the digits study; `run.sh patches` the patches-scale one below.
set -euo pipefail
RUNS=${RUNS:-/work/runs}
HERE=benchmarks/fdm_training
export OMP_NUM_THREADS=1

if [ "${1:-digits}" = patches ]; then
# Patches scale (3x32x32 photograph patches, the shipped patches-unet's recipe): the FDM twin differs from
# the EDM run only in --precond fdm_edm --fdm-multiplier 2 --warmup-ite 200 (sail-sg/FDM's train.py default
# and its EDM-FDM warm-up); same width, batch, seed and held-out set, and its --iterations is the EDM run's
# final iteration.  One job at a time, one thread, resumable (--resume).
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
exit 0
fi

# 1. train (both runs at once, one thread each); identical options except the preconditioner
solverzoo train --out "$RUNS/edm" --precond edm --iterations 4000 --threads 1 \
    --export "$RUNS/digits_unet_edm_fp16.pt" &
solverzoo train --out "$RUNS/fdm_edm" --precond fdm_edm --fdm-multiplier 2 --warmup-ite 200 \
    --iterations 4000 --threads 1 --export "$RUNS/digits_unet_fdm_edm_fp16.pt" &
wait
cp "$RUNS/digits_unet_edm_fp16.pt" solverzoo/checkpoints/digits_unet.pt          # the shipped digits-unet
cp "$RUNS/digits_unet_fdm_edm_fp16.pt" "$HERE/models/digits_unet_fdm_edm.pt"

# 2. FD versus training steps (snapshots every 500 iterations), heun at NFE 19 and 35
python "$HERE/fd_vs_steps.py" --run edm="$RUNS/edm" --run fdm_edm="$RUNS/fdm_edm" --solver heun --nfe 19 35 --repeats 3 \
    --num-samples 500 --out "$HERE/results/fd_vs_steps/fd_vs_steps"

# 3. FD versus NFE of the two final (shipped, float16) models under heun, 2 disjoint seed ranges
solverzoo bench --model solverzoo/checkpoints/digits_unet.pt --solvers heun,euler --nfe 5,7,9,13,19,27,35,59 \
    --num-samples 500 --repeats 3 --out "$HERE/results/nfe_edm" --overwrite
solverzoo bench --model "$HERE/models/digits_unet_fdm_edm.pt" --solvers heun,euler --nfe 5,7,9,13,19,27,35,59 \
    --num-samples 500 --repeats 3 --out "$HERE/results/nfe_fdm_edm" --overwrite

# 4. the same at low NFE with the grid's sigma_max lowered to 10 (the denoisers are poor above sigma ~ 20)
solverzoo bench --model solverzoo/checkpoints/digits_unet.pt --solvers heun --nfe 7,9,13,19 --num-samples 500 \
    --repeats 3 -o 'heun.grid_options={"sigma_max": 10}' --out "$HERE/results/nfe_edm_smax10" --overwrite
solverzoo bench --model "$HERE/models/digits_unet_fdm_edm.pt" --solvers heun --nfe 7,9,13,19 --num-samples 500 \
    --repeats 3 -o 'heun.grid_options={"sigma_max": 10}' --out "$HERE/results/nfe_fdm_edm_smax10" --overwrite
