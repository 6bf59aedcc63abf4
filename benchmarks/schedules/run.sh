#!/usr/bin/env bash
# Tuned 10-NFE schedules on gmm-image (3x32x32, VE 0.01..50) vs Karras rho 3/5/7/9 and kl_optimal.
# Tuning noises: seed 0, samples 0-127.  Evaluation: seed 1 (other noises).
# Run from the repository root with the package installed: bash benchmarks/schedules/run.sh
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
D=benchmarks/schedules
for S in dpmpp_2m unipc; do
  solverzoo tune-grid --model gmm-image --solver $S --nfe 10 --num-samples 128 --seed 0 \
      --max-evals 200 --out $D/${S}_nfe10.json --overwrite
  solverzoo tune-grid --model gmm-image --solver $S --nfe 10 --num-samples 128 --seed 0 \
      --max-evals 200 --fixed-end --out $D/${S}_nfe10_fixed_end.json --overwrite
done
python $D/evaluate.py          # pathwise error on 256 held-out noises (seed 1) -> $D/pathwise.json
for S in dpmpp_2m unipc; do     # the bench's metrics, 500 samples of seed 1, one folder per schedule
  solverzoo bench --solvers $S --nfe 10 --seed 1 -o $S.grid=@$D/${S}_nfe10.json --out $D/bench/${S}_tuned --overwrite
  solverzoo bench --solvers $S --nfe 10 --seed 1 -o $S.grid=@$D/${S}_nfe10_fixed_end.json \
      --out $D/bench/${S}_tuned_fixed_end --overwrite
  solverzoo bench --solvers $S --nfe 10 --seed 1 -o $S.grid=kl_optimal --out $D/bench/${S}_kl_optimal --overwrite
  for R in 3 5 7 9; do
    solverzoo bench --solvers $S --nfe 10 --seed 1 -o $S.grid=karras -o "$S.grid_options={\"rho\": $R}" \
        --out $D/bench/${S}_karras$R --overwrite
  done
done
python $D/table.py             # the README table from pathwise.json and bench/*/results.json
# The first attempt tuned on 64 noises (--num-samples 64 --max-evals 300); its grids and held-out
# errors are kept in $D/n64/ (see the README: it overfits).
# PDS default vs discretize="official": python $D/pds_official.py -> $D/pds_official.json
