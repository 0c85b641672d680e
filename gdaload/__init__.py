"""gdaload: on-the-fly generative data augmentation for PyTorch training loops."""

from gdaload.cache import LatentCache, SampleStore
from gdaload.data import CLASS_POLICIES, GenerativeDataset, GenerativeLoader
from gdaload.generators import (
    SAMPLERS,
    ClassConditionalPipeline,
    DiffusionGenerator,
    GeneratedOutputError,
    Generator,
    GeneratorKindError,
    ImageConditionedGenerator,
    ModelNotAvailableError,
    MultiViewDiffusion,
    MultiViewGenerator,
)
from gdaload.seeding import SeedPlan
from gdaload.train import train_multiview
from gdaload.transforms import GenerativeAugment, GenMix
from gdaload.tta import GenerativeTTA

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
    "GenerativeTTA",
    "Generator",
    "GeneratorKindError",
    "ImageConditionedGenerator",
    "LatentCache",
    "ModelNotAvailableError",
    "MultiViewDiffusion",
    "MultiViewGenerator",
    "SampleStore",
    "SeedPlan",
    "train_multiview",
]
