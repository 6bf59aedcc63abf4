"""Shared fixtures for the solverzoo test suite."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread for each test module, restored when the module is done (no session-wide side
    effect).  The tests use tiny tensors, where intra-op threads only add synchronisation: several
    times slower on busy shared cores.  Threads do not change results: torch's CPU reductions split
    work the same way whatever the thread count for these sizes, and every determinism test compares
    runs made under the same setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def private_disk_cache(tmp_path_factory):
    """The disk cache of the metrics' fixed costs (solverzoo.metrics.caching) in a folder of this test
    session, not the user's ~/.cache/solverzoo; tests that need another set $SOLVERZOO_CACHE themselves."""
    from solverzoo.metrics.caching import CACHE_ENV

    mp = pytest.MonkeyPatch()
    mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("solverzoo-cache")))
    yield
    mp.undo()
