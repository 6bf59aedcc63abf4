"""The solver registry.  Importing this package registers every solver family.

Layout: :mod:`.base` (``SolverInfo`` with the NFE budget as data, ``Context``, ``Solver`` with
its options walker, the registry), :mod:`.blocks` (building blocks shared by the families:
phi functions, multistep weights, churn, the ancestral split, Brownian motion in sigma, the
``ExponentialRK`` and ``Multistep`` bases), and one module per family holding only its
solvers: ``edm``, ``fdm``, ``k_diffusion_family``, ``dpm_solver``, ``multistep`` (LMS, DEIS,
UniPC), ``momentum``, ``seeds``, ``score_sde``, ``preconditioned`` (PDS, TDAS), ``reference``.
Adding a solver touches one family module: a ``@register`` class with its ``info``.
"""

from .base import SOLVERS, Context, Solver, SolverInfo, get_solver, list_solvers, register, solver_info
from . import edm, fdm, preconditioned, score_sde, seeds  # noqa: F401  (registration)
from . import dpm_solver, k_diffusion_family, momentum, multistep, reference  # noqa: F401  (registration: peers)
from . import er_sde, restart, sa_solver  # noqa: F401  (registration: 2026 solvers)

__all__ = ["SOLVERS", "Context", "Solver", "SolverInfo", "get_solver", "list_solvers", "register", "solver_info"]
