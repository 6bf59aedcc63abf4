#!/usr/bin/env bash
# Performance benchmarks (see README.md): every command behind results/cpu/results.json (the README's
# "How to run").  Run from the repository root with the package installed:
#   bash benchmarks/perf/run.sh
# Recorded: overhead 497 s, kdiff 684 s, fd 109 s, gmm and noise a few seconds.  run.py merges each target into
# results/<device>/results.json (--device cuda: results/cuda/); `run.py --report` prints the README tables.
set -euo pipefail
PYTHON=${PYTHON:-python}
D=benchmarks/perf

$PYTHON $D/run.py --threads 1 --reps 2 --targets overhead     # target 1 (~10 min here)
$PYTHON $D/run.py --threads 1 --reps 4 --targets kdiff        # target 4 (~15 min)
$PYTHON $D/run.py --threads 1 --targets gmm                   # target 2 (threads 1 and 2 inside)
$PYTHON $D/run.py --threads 1 --targets fd noise              # target 3 + per-sample noise cost
# rows re-measured after later commits (marked [2] in README.md; they replace only their own rows)
$PYTHON $D/run.py --threads 1 --reps 2 --targets overhead --solvers lms,deis
$PYTHON $D/run.py --threads 1 --reps 4 --targets kdiff --solvers lms
$PYTHON $D/run.py --report

# A/B of the DFT preconditioner (commit 8c54642, README "Changes made"); its numbers are in that table.
mkdir -p $D/results/precond_ab
$PYTHON $D/precond_ab.py --threads 1 --reps 2 > $D/results/precond_ab/precond_ab.txt
