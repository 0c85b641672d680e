"""Generators: the contract and the diffusers-backed implementations."""

from gdaload.generators.base import (
    GeneratedOutputError,
    Generator,
    GeneratorKindError,
    ImageConditionedGenerator,
    MultiViewGenerator,
    check_generated,
)
from gdaload.generators.diffusion import DiffusionGenerator, ModelNotAvailableError
from gdaload.generators.multiview import MultiViewDiffusion, ViewAutoencoder, build_multiview_unet
from gdaload.generators.pipeline import ClassConditionalPipeline
from gdaload.generators.samplers import SAMPLERS, make_scheduler

__all__ = [
    "SAMPLERS",
    "ClassConditionalPipeline",
    "DiffusionGenerator",
    "GeneratedOutputError",
    "Generator",
    "GeneratorKindError",
    "ImageConditionedGenerator",
    "ModelNotAvailableError",
    "MultiViewDiffusion",
    "MultiViewGenerator",
    "ViewAutoencoder",
    "build_multiview_unet",
    "check_generated",
    "make_scheduler",
]
