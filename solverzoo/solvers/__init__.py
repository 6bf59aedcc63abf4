"""The solver registry.  Importing this package registers every solver family."""

from .base import SOLVERS, Context, Solver, SolverInfo, get_solver, list_solvers, register, solver_info
from . import edm, fdm, preconditioned, score_sde, seeds  # noqa: F401  (registration)
from . import dpm_solver, k_diffusion_family, momentum, multistep, reference  # noqa: F401  (registration: peers)

__all__ = ["SOLVERS", "Context", "Solver", "SolverInfo", "get_solver", "list_solvers", "register", "solver_info"]
