"""Name registries: one class behind the solver, grid, process and model tables.

Every registry registers entries the same way, refuses a name registered twice, and reports an
unknown name or option in one style::

    unknown grid 'karas' (did you mean 'karras'?); choose one of: exponential, geometric, karras, ...
    unknown option(s) rh for grid 'karras'; valid options: sigma_min, sigma_max, rho

A registry is a read-only mapping (``name in GRIDS``, ``GRIDS[name]``, ``sorted(GRIDS)``).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "check_options", "signature_options"]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """A table of named entries of one ``kind`` ("solver", "grid", ...).

    ``alternatives`` completes the unknown-name message with what else is accepted where the
    registry is used (e.g. "or give a diffusers folder, a .pt checkpoint or module:factory")."""

    def __init__(self, kind: str, alternatives: str = "") -> None:
        self.kind = kind
        self.alternatives = alternatives
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None, replace: bool = False) -> Any:
        """Add ``entry`` under ``name``; without ``entry``, a decorator that adds what it decorates.
        A name registered twice is refused unless ``replace`` (then the new entry takes its place)."""
        if entry is None:
            def decorator(obj: T) -> T:
                self.register(name, obj, replace=replace)
                return obj

            return decorator
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} registered twice (pass replace=True to replace it)")
        self._entries[name] = entry
        return entry

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def unknown(self, name: Any) -> ValueError:
        """The error for a name that is not registered (returned, for ``raise ... from None``)."""
        close = difflib.get_close_matches(str(name), self._entries, n=1) if isinstance(name, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        extra = f", {self.alternatives}" if self.alternatives else ""
        return ValueError(f"unknown {self.kind} {name!r}{hint}; choose one of: {', '.join(self.names())}{extra}")

    def lookup(self, name: str) -> T:
        """The entry registered under ``name``; ``ValueError`` naming the valid choices if there is none."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise self.unknown(name) from None

    def build(self, name: str, *args: Any, **options: Any) -> Any:
        """Call the entry ``name`` with ``options`` after checking their names against its signature
        (:func:`signature_options`; entries that take ``**kwargs`` check their own)."""
        factory = self.lookup(name)
        valid = signature_options(factory, skip=len(args))
        if valid is not None:
            check_options(self.kind, name, options, valid)
        return factory(*args, **options)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


def signature_options(factory: Callable[..., Any], skip: int = 0, exclude: Iterable[str] = ()) -> list[str] | None:
    """The keyword options ``factory`` accepts after its first ``skip`` positional parameters (less
    ``exclude``), or None when it takes ``**kwargs`` (any name may be valid)."""
    params = list(inspect.signature(factory).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    skipped = {p.name for p in positional[:skip]} | set(exclude)
    return [p.name for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in skipped]


def check_options(kind: str, name: str, given: Iterable[str], valid: Iterable[str], note: str = "") -> None:
    """Refuse option names not in ``valid``: ``unknown option(s) a, b for KIND 'NAME'{note}; valid options: ...``."""
    valid = list(valid)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for {kind} {name!r}{note}; "
                         f"valid options: {', '.join(valid) or '(none)'}")
