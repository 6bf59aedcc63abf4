"""NFE-versus-FD sweeps: the runner and its reports."""

from .runner import DEFAULT_NFE, BenchConfig, Row, default_solvers, run_bench

__all__ = ["DEFAULT_NFE", "BenchConfig", "Row", "default_solvers", "run_bench"]
