"""Public names imported on first use (PEP 562), so importing a package stays cheap.

A package that re-exports names from heavy modules (diffusers, accelerate) lists them
here instead of importing them, and its users pay for those modules only when they touch
such a name.

Example:
    >>> __getattr__, __dir__ = lazy_exports("mypkg", {"sqrt": "math"})
    >>> __getattr__("sqrt")(4.0)
    2.0
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> the module that defines it.

    Returns:
        The two functions to assign to the package's ``__getattr__`` and ``__dir__``.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        owner = sys.modules.get(package)
        if owner is not None:
            # Later lookups find the name directly and skip this function.
            setattr(owner, name, value)
        return value

    def __dir__() -> list[str]:
        module = sys.modules.get(package)
        return sorted({*(vars(module) if module else ()), *exports})

    return __getattr__, __dir__
