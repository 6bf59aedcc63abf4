#!/usr/bin/env bash
# The bench's plan-then-run figures: where a requested NFE goes, and path_rms's robust summary.
set -euo pipefail
python benchmarks/bench_plan/trace_nfe.py
solverzoo bench --solvers unipc,dpmpp_2m --nfe 20,50 --num-samples 100 --batch-size 100 \
    --out benchmarks/bench_plan/results/path_summary --overwrite
