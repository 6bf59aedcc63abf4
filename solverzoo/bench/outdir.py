"""An output folder belongs to one run.

* **A lock**: ``OUT/.solverzoo.lock`` holds the pid, host and start time of the run that owns the
  folder; a second run on the same folder stops (``FolderBusy``, exit code 2 on the command line)
  naming the holder.  A lock left by a process that no longer runs on this host is taken over.
* **Nothing replaced before the new run has a row**: a new run (``--overwrite`` included) writes
  into ``OUT/.staging-<pid>/`` until its first row is saved; then the previous run's artefacts
  (:data:`ARTEFACTS`) are removed and the new files moved into ``OUT``.  An interrupted run
  before that point leaves the previous results as they were; after it, the new results.
* **No stale artefacts**: the previous run's previews, plots, sample sheet and filters go with it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

__all__ = ["RunFolder", "FolderBusy", "ARTEFACTS", "LOCK_NAME", "read_lock", "check_free"]

LOCK_NAME = ".solverzoo.lock"
#: What a bench run leaves in its folder (besides nfe_vs_*.png plots): removed when a new run takes over.
ARTEFACTS = ("results.json", "results.csv", "previews.npz", "samples.png", "filters")


class FolderBusy(ValueError):
    """Another live run holds the folder's lock."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path: Path) -> dict | None:
    """The holder recorded in a lock file (None when it cannot be read)."""
    try:
        holder = json.loads(Path(path).read_text())
        return holder if isinstance(holder, dict) else None
    except (OSError, ValueError):
        return None


def _holder_text(holder: dict | None) -> str:
    if not holder:
        return "an unreadable lock"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('start')}"


def _stale(holder: dict | None) -> bool:
    if not holder:
        return False
    if holder.get("host") != socket.gethostname():
        return False  # cannot tell: another machine may still run it
    pid = holder.get("pid")
    return not isinstance(pid, int) or not _alive(pid)


def check_free(out: str | Path) -> None:
    """Raise :class:`FolderBusy` naming the holder when a live run holds ``out``'s lock (a check made
    before any work; :meth:`RunFolder.acquire` takes the lock itself)."""
    lock = Path(out) / LOCK_NAME
    if not lock.exists():
        return
    holder = read_lock(lock)
    if holder is not None and not _stale(holder):
        raise FolderBusy(f"--out {out} is in use by another run ({_holder_text(holder)}); wait for it, or choose "
                         f"another --out (a lock of a stopped run is taken over)")


class RunFolder:
    """The output folder of one run: its lock, where files go now (:meth:`path`), and the move of
    the staged first files into place (:meth:`promote`).  ``resume`` writes in place (the rows
    already there are kept and extended)."""

    def __init__(self, out: str | Path, resume: bool = False):
        self.out = Path(out)
        self.resume = resume
        self.lock_path = self.out / LOCK_NAME
        self.staging = None if resume else self.out / f".staging-{os.getpid()}"
        self.promoted = resume
        self.locked = False

    # -- the lock ---------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the folder (made if missing), or raise :class:`FolderBusy` naming the holder."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"--out {self.out}: cannot make the folder ({err.strerror or err}); choose another "
                             f"--out") from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "start": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _ in range(3):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_lock(self.lock_path)
                if holder is None:  # being written right now, or garbage: look again
                    time.sleep(0.05)
                    holder = read_lock(self.lock_path)
                if _stale(holder) or (holder is None and self._old(self.lock_path)):
                    self.lock_path.unlink(missing_ok=True)  # a dead run's lock: take it over
                    continue
                raise FolderBusy(f"--out {self.out} is in use by another run ({_holder_text(holder)}); wait for it, "
                                 f"or choose another --out (a lock of a stopped run is taken over)") from None
            except OSError as err:
                raise ValueError(f"--out {self.out}: cannot write the lock file {self.lock_path} "
                                 f"({err.strerror or err}); choose a writable --out") from None
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(json.dumps(me))
                self.locked = True
                self._clear_dead_staging()
                if self.staging is not None:
                    self.staging.mkdir(exist_ok=True)
            except OSError as err:
                self.release()
                self.lock_path.unlink(missing_ok=True)
                raise ValueError(f"--out {self.out}: cannot write there ({err.strerror or err}); free some space or "
                                 f"choose a writable --out") from None
            return
        raise FolderBusy(f"--out {self.out}: could not take the lock {self.lock_path}")

    @staticmethod
    def _old(path: Path, seconds: float = 60.0) -> bool:
        try:
            return time.time() - path.stat().st_mtime > seconds
        except OSError:
            return True

    def _clear_dead_staging(self) -> None:
        for folder in self.out.glob(".staging-*"):
            pid = folder.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)

    def release(self) -> None:
        """Give the folder back; staged files of a run that never saved a row are dropped."""
        if self.staging is not None and not self.promoted:
            shutil.rmtree(self.staging, ignore_errors=True)
        if self.locked:
            holder = read_lock(self.lock_path)
            if holder and holder.get("pid") == os.getpid():
                self.lock_path.unlink(missing_ok=True)
            self.locked = False

    def __enter__(self) -> RunFolder:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- where files go ---------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """Where the file ``name`` of this run is written now."""
        return (self.out if self.promoted else self.staging) / name

    def promote(self) -> None:
        """The run has its first row: the previous run's artefacts leave, the staged files take their place."""
        if self.promoted:
            return
        os.replace(self.staging / "results.json", self.out / "results.json")  # atomic: old rows -> new rows
        for name in ARTEFACTS[1:]:
            old = self.out / name
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
        for plot in self.out.glob("nfe_vs_*.png"):
            plot.unlink()
        for item in list(self.staging.iterdir()):
            os.replace(item, self.out / item.name)
        self.staging.rmdir()
        self.promoted = True
