#!/usr/bin/env bash
# Why the headline metric is mmd_whitened (see README.md): every result in results/<run>/.
# Run from the repository root with the package installed:  bash benchmarks/metric/run.sh
# Recorded wall times on the project's shared 2-core machine: degradations 531 s, candidates 346 s,
# rank_agreement 3227 s, path_reference 8 s of CPU.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PYTHON=${PYTHON:-python}
D=benchmarks/metric
R=$D/results
mkdir -p $R/degradations $R/candidates $R/candidates_first $R/rank_agreement $R/path_reference

# 1. The default bench run of README.md's first table (gmm-image, NFE 10/20/50, N = 500). It was made
#    before seven solvers left the default set, so the 32 solvers of that run are named here.
solverzoo bench --solvers ddim,deis,dpm2,dpmpp_2m,dpmpp_2m_hb,dpmpp_2m_sde,dpmpp_2s,dpmpp_3m,dpmpp_3m_sde,\
dpmpp_sde,er_sde,etd_erk,euler,euler_ancestral,euler_maruyama,ghvb,gradient_estimation,heun,ipndm,ipndm_v,lms,pc,\
pds,plms_hb,res_multistep,restart,sa_solver,seeds1,seeds2,seeds3,tdas,unipc --out $R/default --overwrite

# 2. Exact vs degraded samples under fd_pixels and mmd_whitened, 6 seeds x N = 500.
$PYTHON $D/measure.py > $R/degradations/degradations.md

# 3. The candidate kernels and bases (KID / Gaussian / energy; whitened / half-whitened / pixels).
$PYTHON $D/candidates.py > $R/candidates/candidates.txt
$PYTHON $D/candidates_first.py 2000 > $R/candidates_first/candidates_first.txt

# 4. Rank agreement of six solvers' cells at N = 500 and N = 5000.
$PYTHON $D/rank_agreement.py > $R/rank_agreement/rank_agreement.md

# 5. Convergence of the pathwise reference (heun at 511 vs 1023 calls).
$PYTHON $D/path_reference.py > $R/path_reference/path_reference.txt
