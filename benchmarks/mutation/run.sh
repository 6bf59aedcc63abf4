#!/usr/bin/env bash
# The mutation lane (benchmarks/mutation/README.md): low priority, one thread.
# PYTHON selects the interpreter (default: python on PATH); arguments go to run.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec nice -n 10 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "${PYTHON:-python}" benchmarks/mutation/run.py "$@"
