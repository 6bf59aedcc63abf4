"""The ``solverzoo`` command line (a click group), one module per command group:

- :mod:`.common`: the group, shared options, error handling (bad input -> exit code 2, before any work),
  option parsing, progress bars and the results tables
- :mod:`.solvers` (``list``), :mod:`.sample` (``sample``), :mod:`.bench` (``bench``, with :mod:`.distributed`
  for torchrun), :mod:`.report` (``report``, ``score``), :mod:`.filters` (``filters estimate`` /
  ``tdas-estimate``), :mod:`.train` (``train``, ``train-classifier``, ``fid-ref``), :mod:`.schedules` (``tune-grid``)

Bad input (an unknown solver, an NFE below a solver's minimum, a malformed file...) exits with code 2 and a
message that names the problem and the valid choices, before any work starts; nothing already written is
overwritten by a failed command.
"""

from __future__ import annotations

from . import bench, filters, report, sample, schedules, solvers, train  # noqa: F401  (each registers its commands)
from .common import main

__all__ = ["main"]
