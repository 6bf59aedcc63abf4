"""Cache keys shared by the metrics that cache per model (exact FD references and floors, kernel references)."""

from __future__ import annotations

__all__ = ["model_key"]


def model_key(model, with_dtype: bool = False) -> tuple:
    """Identity of a data law: the model's ``identity_key()`` (a parameter hash) when it
    has one, else the object id.  Samples also depend on the model's dtype."""
    key = getattr(model, "identity_key", None)
    ident = (type(model).__name__, key()) if callable(key) else (type(model).__name__, "id", id(model))
    return ident + ((str(getattr(model, "dtype", "")),) if with_dtype else ())
