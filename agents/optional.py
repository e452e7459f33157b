"""Lazy imports of heavy optional dependencies, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from agents.errors import MissingExtra


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise MissingExtra telling which ``ragnet[extra]`` provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{module!r} is not installed; it comes with the {extra!r} extra: pip install 'ragnet[{extra}]'"
        ) from exc
