"""Caches of the metrics' fixed costs.

In memory, per process: :func:`model_key` keys the exact FD references and floors and the kernel
references of the analytic models (their model *is* their data law).

On disk, across runs: :func:`load_cached` / :func:`store_cached` keep arrays (a learned model's
reference statistics and oracle floors, :mod:`solverzoo.metrics.fid`) in ``.npz`` files under
:func:`cache_dir` (``$SOLVERZOO_CACHE``, else ``$XDG_CACHE_HOME/solverzoo``, else
``~/.cache/solverzoo``; ``SOLVERZOO_CACHE=off`` turns the disk cache off).  An entry is named by
the SHA-256 of its key (a JSON-able dict saying everything the arrays depend on), written through
:func:`solverzoo.io.save_npz` (temp file + rename) and stores its key and a SHA-256 of its arrays;
on reading, an entry whose key, checksum or arrays do not match is treated as missing (the caller
recomputes and overwrites it), never an error.  A cache that cannot be written (read-only disk) is
skipped with the reason returned.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..io import save_npz

__all__ = ["model_key", "weights_key", "CACHE_ENV", "cache_dir", "cache_key", "cache_path", "load_cached",
           "store_cached", "file_fingerprint"]

CACHE_ENV = "SOLVERZOO_CACHE"
_OFF = ("off", "none", "0", "")
_FORMAT = 1  # bump when the layout of an entry changes


def model_key(model, with_dtype: bool = False) -> tuple:
    """Identity of a data law: the model's ``identity_key()`` (a parameter hash) when it
    has one, else the object id.  Samples also depend on the model's dtype."""
    key = getattr(model, "identity_key", None)
    ident = (type(model).__name__, key()) if callable(key) else (type(model).__name__, "id", id(model))
    return ident + ((str(getattr(model, "dtype", "")),) if with_dtype else ())


def weights_key(model) -> str | None:
    """Identity of a model's denoiser across processes: the SHA-256 of its network's parameters and
    buffers (names, dtypes, shapes, bytes) for a network model, the ``identity_key()`` of a model
    that has one; None (nothing to cache by) for a plain function."""
    import torch

    key = getattr(model, "identity_key", None)
    if callable(key):
        return f"{type(model).__name__}:{key()}"
    net = getattr(model, "net", None)
    if not isinstance(net, torch.nn.Module):
        return None
    h = hashlib.sha256(type(net).__name__.encode())
    for name, t in net.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_dir() -> Path | None:
    """The disk cache's folder, or None when ``$SOLVERZOO_CACHE`` is ``off`` (or empty)."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in _OFF else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "solverzoo"


def _canonical(key: dict) -> str:
    return json.dumps({"format": _FORMAT, **key}, sort_keys=True, default=str)


def cache_key(key: dict) -> str:
    """The entry name of ``key``: the first 24 hex digits of the SHA-256 of its canonical JSON."""
    return hashlib.sha256(_canonical(key).encode()).hexdigest()[:24]


def cache_path(kind: str, key: dict) -> Path | None:
    """Where the entry of ``key`` lives (``<cache_dir>/<kind>/<cache_key>.npz``); None with the cache off."""
    root = cache_dir()
    return None if root is None else root / kind / f"{cache_key(key)}.npz"


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load_cached(kind: str, key: dict, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """The arrays ``names`` of the entry of ``key``, or None when there is none, the cache is off, or
    the entry is unreadable, for another key, incomplete or fails its checksum."""
    path = cache_path(kind, key)
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        arrays = {k: v for k, v in data.items() if not k.startswith("_")}
        if str(data["_key"]) != _canonical(key) or str(data["_checksum"]) != _checksum(arrays):
            return None
        return {name: arrays[name] for name in names}
    except Exception:  # a corrupt or foreign file is a miss: recomputed and overwritten
        return None


def store_cached(kind: str, key: dict, arrays: dict[str, np.ndarray]) -> str | None:
    """Write the entry of ``key`` atomically; returns None, or why it was not written."""
    path = cache_path(kind, key)
    if path is None:
        return f"the disk cache is off (${CACHE_ENV})"
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npz(path, _key=np.array(_canonical(key)), _checksum=np.array(_checksum(arrays)), **arrays)
    except OSError as err:
        return f"cannot write the cache entry {path} ({err.strerror or err})"
    return None


def file_fingerprint(path: str | Path) -> dict:
    """What a file or folder of data is, cheaply: its resolved path and the size and modification
    time of every file in it."""
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = []
    for p in files:
        st = p.stat()
        stats.append((str(p.relative_to(path)) if path.is_dir() else p.name, st.st_size, st.st_mtime_ns))
    return {"path": str(path), "files": stats}
