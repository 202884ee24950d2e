"""Clear errors for optional simulator dependencies."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependencyError(ImportError):
    """An optional simulator package is not installed."""


def require(module: str, *, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise an error naming the missing package and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs the Python package '{module.split('.')[0]}', which could not be "
            f'imported ({exc}). Install it with: pip install -e ".[{extra}]"'
        ) from exc
