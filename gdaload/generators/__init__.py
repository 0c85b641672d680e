"""Generators: the contract and the diffusers-backed implementations."""

from gdaload.generators.base import (
    GeneratedOutputError,
    Generator,
    GeneratorKindError,
    ImageConditionedGenerator,
    MultiViewGenerator,
    check_generated,
)
from gdaload.generators.diffusers_base import DiffusersGenerator
from gdaload.generators.diffusion import DiffusionGenerator
from gdaload.generators.hub import ModelNotAvailableError
from gdaload.generators.metadata import GDALOAD_META, read_metadata, write_metadata
from gdaload.generators.multiview import (
    MultiViewDiffusion,
    MultiViewPipeline,
    ViewAutoencoder,
    build_multiview_unet,
)
from gdaload.generators.pipeline import ClassConditionalPipeline
from gdaload.generators.samplers import SAMPLERS, make_scheduler

__all__ = [
    "GDALOAD_META",
    "SAMPLERS",
    "ClassConditionalPipeline",
    "DiffusersGenerator",
    "DiffusionGenerator",
    "GeneratedOutputError",
    "Generator",
    "GeneratorKindError",
    "ImageConditionedGenerator",
    "ModelNotAvailableError",
    "MultiViewDiffusion",
    "MultiViewGenerator",
    "MultiViewPipeline",
    "ViewAutoencoder",
    "build_multiview_unet",
    "check_generated",
    "make_scheduler",
    "read_metadata",
    "write_metadata",
]
