"""NFE-versus-quality sweeps: plan (every check, before any work), then run, then report.

    p = plan(BenchConfig(model="gmm-2d", solvers=["heun"], nfe=[10, 20]))
    results = run_plan(p)
"""

from .planner import Plan, default_solvers, plan
from .runner import run_bench
from .schema import DEFAULT_NFE, BenchConfig, Row
from .sweep import run_plan

__all__ = ["DEFAULT_NFE", "BenchConfig", "Row", "Plan", "plan", "run_plan", "default_solvers", "run_bench"]
