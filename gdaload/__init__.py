"""gdaload: on-the-fly generative data augmentation for PyTorch training loops."""

from gdaload.data import CLASS_POLICIES, GenerativeDataset, GenerativeLoader
from gdaload.engine import LatentCache, SampleStore
from gdaload.generators import (
    SAMPLERS,
    ClassConditionalPipeline,
    DiffusionGenerator,
    GeneratedOutputError,
    Generator,
    ModelNotAvailableError,
)
from gdaload.seeding import SeedPlan
from gdaload.transforms import GenerativeAugment, GenMix

__version__ = "0.1.0"

__all__ = [
    "CLASS_POLICIES",
    "SAMPLERS",
    "ClassConditionalPipeline",
    "DiffusionGenerator",
    "GenMix",
    "GeneratedOutputError",
    "GenerativeAugment",
    "GenerativeDataset",
    "GenerativeLoader",
    "Generator",
    "LatentCache",
    "ModelNotAvailableError",
    "SampleStore",
    "SeedPlan",
]
