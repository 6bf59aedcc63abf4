"""solverzoo: diffusion-sampling acceleration methods side by side.

    import solverzoo
    model = solverzoo.get_model("gmm-image")
    result = solverzoo.sample(model, "heun", nfe=35, num_samples=64, seed=0)
    result.samples, result.nfe

In research code, any solver on your own denoiser ``D(x, sigma)``, initial state and sigmas::

    x0 = solverzoo.solve(D, x, sigmas, "seeds2", noise=0, callback=print)

(``solverzoo.k_diffusion`` holds k-diffusion-signature drop-ins; ``register`` and ``from_k_diffusion``
bring your own sampler into the registry and the bench.)
"""

from .api import SolveInfo, get_sigmas, solve, wrap_denoiser
from .grids import Grid, from_sigmas, list_grids, make_grid
from .models.base import Model
from .plugins import from_k_diffusion, load_plugins
from .processes import get_process, list_processes
from .sampling import SampleResult, sample
from .solvers import Solver, SolverInfo, get_solver, list_solvers, register, solver_info

__version__ = "0.1.0"

# research code: solve, wrap_denoiser, get_sigmas, register, from_k_diffusion, load_plugins, Solver, Model;
# the zoo: get_model, sample (per-sample seeds), evaluate
__all__ = [
    "Grid", "Model", "SampleResult", "SolveInfo", "Solver", "SolverInfo", "evaluate", "from_k_diffusion", "from_sigmas",
    "get_model", "get_process", "get_sigmas", "get_solver", "list_grids", "list_models", "list_processes",
    "list_solvers", "load_plugins", "make_grid", "register", "sample", "solve", "solver_info", "wrap_denoiser",
]


def get_model(name: str, **options):
    """Build a registered model (``gmm-image``, ``gmm-2d``, ...)."""
    from .models import get_model as _get_model

    return _get_model(name, **options)


def evaluate(model, samples, feature: str | None = None, **options) -> dict:
    """Score samples on the bench's scale (see :func:`solverzoo.metrics.evaluate`): keys ``metric``,
    ``value``, ``uncertainty``, ``oracle_floor``, ``excess``, ``num_samples``, ``secondaries``."""
    from .metrics.evaluate import evaluate as _evaluate

    return _evaluate(model, samples, feature, **options)


def list_models() -> list[str]:
    from .models import list_models as _list_models

    return _list_models()
