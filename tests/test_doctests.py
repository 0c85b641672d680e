"""Every docstring example in gdaload runs and prints what it shows.

Examples that need a model or data the tests cannot make are marked ``+SKIP`` in the
docstring itself; everything else runs here, module by module.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gdaload"
MODULES = sorted(
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_public_classes_show_an_example() -> None:
    import gdaload

    missing = [
        name
        for name in gdaload.__all__
        if isinstance(getattr(gdaload, name), type)
        and not issubclass(getattr(gdaload, name), Exception)
        and ">>>" not in (getattr(gdaload, name).__doc__ or "")
    ]
    assert not missing, f"public classes without a docstring example: {missing}"
