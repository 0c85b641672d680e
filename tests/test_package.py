"""The package surface: public names resolve, and importing gdaload stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gdaload

HEAVY = ("accelerate", "open_clip", "sklearn", "matplotlib", "kornia")


def loaded_after(statement: str) -> list[str]:
    """Heavy modules in ``sys.modules`` after running ``statement`` in a fresh process."""
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.split()


@pytest.mark.parametrize(
    ("statement", "allowed"),
    [
        ("import gdaload", ()),
        ("from gdaload import GenerativeLoader, GenerativeDataset, GenMix, SeedPlan", ()),
        # diffusers itself imports accelerate when it is installed.
        (
            "from gdaload import DiffusionGenerator, GenerativeAugment, GenerativeTTA",
            ("accelerate",),
        ),
    ],
)
def test_import_pulls_in_no_heavy_optional_module(statement: str, allowed: tuple[str, ...]) -> None:
    assert [m for m in loaded_after(statement) if m not in allowed] == []


def test_every_public_name_resolves() -> None:
    for name in gdaload.__all__:
        assert getattr(gdaload, name) is not None
    assert set(gdaload.__all__) <= set(dir(gdaload))


@pytest.mark.reliability
def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        gdaload.NoSuchThing  # noqa: B018
