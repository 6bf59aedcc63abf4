#!/usr/bin/env bash
# Flow matching against EDM: the default bench sweep (default solvers, NFE 10/20/50) on the exact
# gmm-image model under the rectified-flow process and under EDM, and on the shipped flow digits
# model against the shipped EDM digits model; each flow sweep once on every solver's own grid and
# once on the flow's native shifted grid (shift 1 and 3).  CPU only; run one bench at a time.
#
#   bash benchmarks/flow/run.sh            # all sweeps (stage "all")
#   bash benchmarks/flow/run.sh gmm        # the gmm-image sweeps only ("gmm80": flow on EDM's sigma range;
#                                          # "digits": the learned models)
#
# The flow digits model was trained with (the shipped solverzoo/checkpoints/digits_flow_unet.pt):
#   solverzoo train --out /work/runs/flow/run --precond flow --iterations 4000 --threads 1 \
#       --checkpoint-every 250 --export /work/runs/flow/digits_flow_unet.pt
set -euo pipefail
STAGE=${1:-all}
OUT=${OUT:-benchmarks/flow/results}
GMM_SAMPLES=${GMM_SAMPLES:-500}
DIGITS_SAMPLES=${DIGITS_SAMPLES:-500}
export OMP_NUM_THREADS=1
BENCH="nice -n 10 solverzoo bench --nfe 10,20,50 --overwrite"

if [[ $STAGE == all || $STAGE == gmm ]]; then
  # gmm-image (3x32x32, exact denoiser): EDM, flow on every solver's own grid, flow on flow_shift (shift 1, 3)
  $BENCH --model gmm-image -m process=edm --num-samples "$GMM_SAMPLES" --out "$OUT/gmm_edm"
  $BENCH --model gmm-image -m process=flow --num-samples "$GMM_SAMPLES" --out "$OUT/gmm_flow"
  $BENCH --model gmm-image -m process=flow -o grid=flow_shift --num-samples "$GMM_SAMPLES" \
      --out "$OUT/gmm_flow_shift1"
  $BENCH --model gmm-image -m process=flow -m 'process_options={"shift": 3.0}' -o grid=flow_shift \
      --num-samples "$GMM_SAMPLES" --out "$OUT/gmm_flow_shift3"
fi
if [[ $STAGE == all || $STAGE == gmm80 ]]; then
  # flow with EDM's sigma range (t_max = 80/81: sigma_max = 80): separates the range from the frame
  $BENCH --model gmm-image -m process=flow -m 'process_options={"t_min": 0.001996007984031936, "t_max": 0.9876543209876543}' \
      --num-samples "$GMM_SAMPLES" --out "$OUT/gmm_flow_smax80"
fi
if [[ $STAGE == all || $STAGE == digits ]]; then
  # the shipped digits models: EDM (digits-unet) and rectified flow (digits-flow-unet)
  $BENCH --model digits-unet --num-samples "$DIGITS_SAMPLES" --batch-size "$DIGITS_SAMPLES" --out "$OUT/digits_edm"
  $BENCH --model digits-flow-unet --num-samples "$DIGITS_SAMPLES" --batch-size "$DIGITS_SAMPLES" \
      --out "$OUT/digits_flow"
  $BENCH --model digits-flow-unet -o grid=flow_shift --num-samples "$DIGITS_SAMPLES" --batch-size "$DIGITS_SAMPLES" \
      --out "$OUT/digits_flow_shift1"
  $BENCH --model digits-flow-unet -m shift=3 -o grid=flow_shift --num-samples "$DIGITS_SAMPLES" \
      --batch-size "$DIGITS_SAMPLES" --out "$OUT/digits_flow_shift3"
  # a larger sample sheet of the flow model (results/digits_flow_dpmpp_2m_nfe20.png is its grid.png)
  OMP_NUM_THREADS=1 nice -n 10 solverzoo sample --model digits-flow-unet --solver dpmpp_2m --nfe 20 --num-samples 64 \
      --out "$OUT/digits_flow_sheet" --overwrite
fi
