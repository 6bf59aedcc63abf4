"""The solver registry.  Importing this package registers every solver family.

:mod:`.base` holds ``SolverInfo``, ``Context``, ``Solver`` with its options walker, and the registry;
:mod:`.blocks` the building blocks shared by the families (phi functions, multistep weights, churn,
the ancestral split, Brownian motion in sigma, the ``ExponentialRK`` and ``Multistep`` bases).  One
module per family holds its solvers: ``edm``, ``fdm``, ``restart``, ``k_diffusion_family``,
``dpm_solver`` (DPM-Solver++), ``dpm_singlestep`` (DPM-Solver-fast and -adaptive), ``multistep`` (LMS, DEIS,
iPNDM, UniPC), ``momentum``, ``seeds``, ``sa_solver``, ``er_sde``, ``score_sde``, ``preconditioned`` (PDS,
TDAS), ``reference``.  A family module imports another only to build on its solver (``fdm`` and ``restart``
on EDM Heun, ``momentum`` on DPM-Solver++(2M), ``preconditioned`` on the PC sampler), to cite it
(``dpm_solver``, ``dpm_singlestep``) or to share its option values (``dpm_singlestep``: ``reference``'s error
norms).  :mod:`.readable` writes the presets that a general class serves as short readable updates.
Adding a solver touches one module: a ``@register`` class with its ``info``.
"""

from . import (  # noqa: F401  (registration)  # noqa: F401  (registration: peers)  # noqa: F401  (registration: 2026 solvers)
    dpm_singlestep,
    dpm_solver,
    edm,
    er_sde,
    fdm,
    k_diffusion_family,
    momentum,
    multistep,
    preconditioned,
    reference,
    restart,
    sa_solver,
    score_sde,
    seeds,
)
from .base import SOLVERS, Context, Solver, SolverInfo, get_solver, list_solvers, register, solver_info

__all__ = ["SOLVERS", "Context", "Solver", "SolverInfo", "get_solver", "list_solvers", "register", "solver_info"]
