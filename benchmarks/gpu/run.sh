#!/usr/bin/env bash
# Solver overhead and noise cost per step against the model call, and the wall time of whole bench commands
# with CPU and device (Philox) noise side by side, on a CUDA machine, in one command (under 9 minutes on one
# GPU: bench.py stops starting new cells after --budget-s, 240 s, and stops the bench commands at
# --bench-budget-s, 240 s more).
#
#   bash benchmarks/gpu/run.sh                         # results in $OUT, else benchmarks/gpu/results/<UTC time>/
#   bash benchmarks/gpu/run.sh --device cpu --quick    # tiny sizes: checks that it runs anywhere
#
# Extra arguments go to bench.py (python benchmarks/gpu/bench.py -h).
# The recorded CPU noise run (results/cpu_noise/, see README.md):
#   python benchmarks/gpu/bench.py --device cpu --targets noise --threads 1 --reps 7 --out benchmarks/gpu/results/cpu_noise
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT_DIR="${OUT:-benchmarks/gpu/results/$(date -u +%Y%m%d-%H%M%S)}"
"$PYTHON" -c "import solverzoo" 2>/dev/null || { echo "solverzoo is not importable by $PYTHON: pip install -e ." >&2; exit 2; }
exec "$PYTHON" benchmarks/gpu/bench.py --out "$OUT_DIR" "$@"
