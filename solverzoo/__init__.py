"""solverzoo: diffusion-sampling acceleration methods side by side.

    import solverzoo
    model = solverzoo.get_model("gmm-image")
    result = solverzoo.sample(model, "heun", nfe=35, num_samples=64, seed=0)
    result.samples, result.nfe
"""

from .grids import Grid, list_grids, make_grid
from .processes import get_process, list_processes
from .sampling import SampleResult, sample
from .solvers import get_solver, list_solvers, solver_info

__version__ = "0.1.0"

__all__ = [
    "Grid", "SampleResult", "evaluate", "get_model", "get_process", "get_solver", "list_grids", "list_models",
    "list_processes", "list_solvers", "make_grid", "sample", "solver_info",
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
