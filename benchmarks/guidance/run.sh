#!/usr/bin/env bash
# Classifier-free guidance across samplers (see README.md).  Run from the repository root.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
SZ=${SZ:-.venv/bin/solverzoo}
OUT=benchmarks/guidance/results
SOLVERS=euler,heun,dpm2,dpmpp_2s,dpmpp_2m,unipc,dpmpp_3m

# gmm-image conditional (3x32x32, VE, 8 classes): pathwise error to a guided reference solve
for W in 1 4 8; do
  $SZ bench --model gmm-image -m conditional=true --guidance $W --labels all --solvers $SOLVERS \
    --nfe 10,20,50 --num-samples 200 --batch-size 200 --out $OUT/gmm_w$W --overwrite
done

# digits-cond-unet (shipped): FD in the digits classifier's features and its accuracy on the labels
for W in 4 1 8; do
  $SZ bench --model digits-cond-unet --guidance $W --labels all --solvers heun,dpm2,dpmpp_2s,dpmpp_2m \
    --nfe 10,20 --num-samples 200 --batch-size 200 --out $OUT/digits_w$W --overwrite
done
