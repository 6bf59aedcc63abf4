"""FDM, the Fast Diffusion Model (Wu, Zhou, Kawaguchi & Zhang 2023/2024, "Fast Diffusion
Model", arXiv:2306.06991; code sail-sg/FDM).

FDM is a training-time change: the forward process gets the critically damped (momentum)
scale s(sigma) = exp(-m B)(1 + m B) (``solverzoo.processes.FDMEDMProcess`` / ``FDMVPProcess`` /
``FDMVEProcess``, processes ``fdm-edm``, ``fdm-vp``, ``fdm-ve``).  There is no momentum state at
sampling time: FDM samples its models with EDM's deterministic Heun sampler (``generate.py``,
``edm_sampler``; DPM-Solver++ with ``--solver=dpm``), which is what ``fdm`` runs.  The gain
FDM reports (about 3x fewer steps for the same FID) comes from the trained model, so ``fdm``
only accepts models trained under an FDM process.
"""

from __future__ import annotations

from ..models.base import Model
from .base import SolverInfo, register
from .edm import EDM, Heun

__all__ = ["FDM", "FDM_PROCESSES", "FDM_SIGMA_MIN", "FDM_SIGMA_MAX"]

FDM_PAPER = "Wu et al. 2023, Fast Diffusion Model (arXiv:2306.06991)"
FDM_PROCESSES = ("fdm-edm", "fdm-vp", "fdm-ve")
# generate.py's edm_sampler defaults, clamped to the network's range
FDM_SIGMA_MIN, FDM_SIGMA_MAX, FDM_RHO = 0.002, 80.0, 7.0


@register
class FDM(Heun):
    """EDM Heun (Karras et al. 2022, Algorithm 1; ``s_churn`` etc. as in ``heun``) on a model
    trained under an FDM process, on FDM's sampling grid (``generate.py``, ``edm_sampler``):

        sigma_min = max(0.002, net.sigma_min),  sigma_max = min(80, net.sigma_max),  Karras rho = 7,

    with a final step to sigma = 0 (NFE = 2N - 1).  That is 0.002..80 for fdm-edm and fdm-vp
    (the VP network supports 0.001..152) and 0.02..80 for fdm-ve (network range 0.02..100).
    ``grid_options`` override these; ``grid`` picks another grid.
    """

    info = SolverInfo(name="fdm", family="fdm", kind="ode", order=2, calls_per_step=2, zero_step_calls=1,
                      paper=FDM_PAPER + "; sampler: " + EDM + ", Algorithm 1 (Heun)", grid="karras")

    def check_model(self, model: Model) -> None:
        process = getattr(model.process, "name", str(model.process))
        if process not in FDM_PROCESSES:
            raise ValueError(
                f"fdm samples a model trained under an FDM process ({', '.join(FDM_PROCESSES)}); model "
                f"{getattr(model, 'name', type(model).__name__)!r} was trained under {process!r}. Use heun for "
                f"it, or build the analytic model with process='fdm-edm'"
            )
        super().check_model(model)

    def make_grid(self, process, steps: int):
        if self.grid_for(process) != "karras":
            return super().make_grid(process, steps)
        return super().make_grid(process, steps, sigma_min=max(FDM_SIGMA_MIN, process.sigma_min),
                                 sigma_max=min(FDM_SIGMA_MAX, process.sigma_max), rho=FDM_RHO)
