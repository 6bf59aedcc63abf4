#!/usr/bin/env bash
# Tuned 10-NFE schedules on gmm-image (3x32x32, VE 0.01..50) vs Karras rho 3/5/7/9 and kl_optimal.
# Tuning noises: seed 0, samples 0-127.  Evaluation: seed 1 (other noises).
# Run from the repository root with the package installed: bash benchmarks/schedules/run.sh
# Every run's output goes to results/<run>/: tuned/ (the grids), pathwise/, bench/<solver>_<schedule>/,
# pds_official/.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PYTHON=${PYTHON:-python}
D=benchmarks/schedules
R=$D/results
mkdir -p $R/tuned
for S in dpmpp_2m unipc; do
  solverzoo tune-grid --model gmm-image --solver $S --nfe 10 --num-samples 128 --seed 0 \
      --max-evals 200 --out $R/tuned/${S}_nfe10.json --overwrite
  solverzoo tune-grid --model gmm-image --solver $S --nfe 10 --num-samples 128 --seed 0 \
      --max-evals 200 --fixed-end --out $R/tuned/${S}_nfe10_fixed_end.json --overwrite
done
$PYTHON $D/evaluate.py         # pathwise error on 256 held-out noises (seed 1) -> $R/pathwise/pathwise.json
for S in dpmpp_2m unipc; do     # the bench's metrics, 500 samples of seed 1, one folder per schedule
  solverzoo bench --solvers $S --nfe 10 --seed 1 -o $S.grid=@$R/tuned/${S}_nfe10.json \
      --out $R/bench/${S}_tuned --overwrite
  solverzoo bench --solvers $S --nfe 10 --seed 1 -o $S.grid=@$R/tuned/${S}_nfe10_fixed_end.json \
      --out $R/bench/${S}_tuned_fixed_end --overwrite
  solverzoo bench --solvers $S --nfe 10 --seed 1 -o $S.grid=kl_optimal --out $R/bench/${S}_kl_optimal --overwrite
  for RHO in 3 5 7 9; do
    solverzoo bench --solvers $S --nfe 10 --seed 1 -o $S.grid=karras -o "$S.grid_options={\"rho\": $RHO}" \
        --out $R/bench/${S}_karras$RHO --overwrite
  done
done
$PYTHON $D/table.py            # the README table from results/pathwise/ and results/bench/*/results.json
# PDS default vs discretize="official" -> $R/pds_official/pds_official.json
$PYTHON $D/pds_official.py
# The first attempt tuned on 64 noises (--num-samples 64 --max-evals 300); its grids and held-out
# errors are kept in $R/tuned_n64/ (see the README: it overfits); its commands are recorded in those files.
