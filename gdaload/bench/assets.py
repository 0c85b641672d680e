"""Where the generators shipped with the package live."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = [
    "DIGITS_GENERATOR",
    "DIGITS_JOINT_GENERATOR",
    "DIGITS_LCM",
    "DIGITS_MASK_GENERATOR",
    "DIGITS_TEXT2IMAGE",
    "MULTIVIEW_GENERATOR",
]


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
#: The shipped digits generator of images from stroke masks
#: (``gdaload train-segmentation-generator --kind mask``, see its ``gdaload.json``).
DIGITS_MASK_GENERATOR: Path = _asset("digits-mask-generator")
#: The shipped joint (image, stroke mask) digits generator
#: (``gdaload train-segmentation-generator --kind joint``, see its ``gdaload.json``).
DIGITS_JOINT_GENERATOR: Path = _asset("digits-joint-generator")
#: The shipped stand-in pretrained text-to-image model: a small Stable Diffusion pipeline
#: trained on the digits 0-4 only (``gdaload pretrain-text2image --digits 0-4``, see its
#: ``gdaload.json``), which ``benchmarks/adapt.py`` adapts to the digits 5-9.
DIGITS_TEXT2IMAGE: Path = _asset("digits-text2image")
