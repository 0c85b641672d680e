"""Generators: the contract and the diffusers-backed implementation."""

from gdaload.generators.base import GeneratedOutputError, Generator, check_generated
from gdaload.generators.diffusion import DiffusionGenerator, ModelNotAvailableError
from gdaload.generators.pipeline import ClassConditionalPipeline
from gdaload.generators.samplers import SAMPLERS, make_scheduler

__all__ = [
    "SAMPLERS",
    "ClassConditionalPipeline",
    "DiffusionGenerator",
    "GeneratedOutputError",
    "Generator",
    "ModelNotAvailableError",
    "check_generated",
    "make_scheduler",
]
