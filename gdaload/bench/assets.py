"""Where the generators shipped with the package live."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["DIGITS_GENERATOR", "DIGITS_LCM", "MULTIVIEW_GENERATOR"]


def _asset(name: str) -> Path:
    # gdaload is a regular package installed as files (the generators are loaded from disk
    # by diffusers), so its traversable is a filesystem path and converts losslessly.
    return Path(str(resources.files("gdaload") / "assets" / name))


#: The shipped class-conditional digits generator (``gdaload train-generator``).
DIGITS_GENERATOR: Path = _asset("digits-generator")
#: Its few-step version (``gdaload distill``; the README gives the command).
DIGITS_LCM: Path = _asset("digits-lcm")
#: The shipped MultiViewShapes generator (``gdaload train-multiview``, see its ``gdaload.json``).
MULTIVIEW_GENERATOR: Path = _asset("multiview-generator")
