"""gdaload: on-the-fly generative data augmentation for PyTorch training loops.

The public names below are imported on first use (PEP 562), so ``import gdaload`` stays
cheap and pulls in diffusers, accelerate or scikit-learn only when a feature needs them.

Example:
    >>> import gdaload
    >>> gdaload.SeedPlan(0).sample_seed(epoch=0, index=0) == gdaload.SeedPlan(0).sample_seed(0, 0)
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gdaload.lazy import lazy_exports

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "AdaptiveRatio": "gdaload.data",
    "BulkReport": "gdaload.data",
    "CLASS_POLICIES": "gdaload.data",
    "GenerativeDataset": "gdaload.data",
    "GenerativeLoader": "gdaload.data",
    "PoolReport": "gdaload.data",
    "LatentCache": "gdaload.cache",
    "SampleStore": "gdaload.cache",
    "SAMPLERS": "gdaload.generators",
    "ClassConditionalPipeline": "gdaload.generators",
    "DiffusionGenerator": "gdaload.generators",
    "GeneratedOutputError": "gdaload.generators",
    "Generator": "gdaload.generators",
    "GeneratorKindError": "gdaload.generators",
    "ImageConditionedGenerator": "gdaload.generators",
    "ModelNotAvailableError": "gdaload.generators",
    "MultiViewDiffusion": "gdaload.generators",
    "MultiViewGenerator": "gdaload.generators",
    "StoredSamples": "gdaload.generators",
    "BankedPairs": "gdaload.generators",
    "JointDiffusion": "gdaload.generators",
    "MaskBank": "gdaload.generators",
    "MaskConditionedGenerator": "gdaload.generators",
    "MaskDiffusion": "gdaload.generators",
    "PairGenerator": "gdaload.generators",
    "SeedPlan": "gdaload.seeding",
    "adapt": "gdaload.train",
    "distill": "gdaload.train",
    "pretrain_text2image": "gdaload.train",
    "train_multiview": "gdaload.train",
    "train_segmentation_generator": "gdaload.train",
    "GenerativeAugment": "gdaload.transforms",
    "GenMix": "gdaload.transforms",
    "GenerativeTTA": "gdaload.tta",
    "fill_store": "gdaload.data",
    "fill_store_ray": "gdaload.data",
}

__all__ = [
    "AdaptiveRatio",
    "BankedPairs",
    "BulkReport",
    "CLASS_POLICIES",
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
    "JointDiffusion",
    "LatentCache",
    "MaskBank",
    "MaskConditionedGenerator",
    "MaskDiffusion",
    "ModelNotAvailableError",
    "MultiViewDiffusion",
    "MultiViewGenerator",
    "PairGenerator",
    "PoolReport",
    "SAMPLERS",
    "SampleStore",
    "SeedPlan",
    "StoredSamples",
    "adapt",
    "distill",
    "fill_store",
    "fill_store_ray",
    "pretrain_text2image",
    "train_multiview",
    "train_segmentation_generator",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from gdaload.cache import LatentCache, SampleStore
    from gdaload.data import (
        CLASS_POLICIES,
        AdaptiveRatio,
        BulkReport,
        GenerativeDataset,
        GenerativeLoader,
        PoolReport,
        fill_store,
        fill_store_ray,
    )
    from gdaload.generators import (
        SAMPLERS,
        BankedPairs,
        ClassConditionalPipeline,
        DiffusionGenerator,
        GeneratedOutputError,
        Generator,
        GeneratorKindError,
        ImageConditionedGenerator,
        JointDiffusion,
        MaskBank,
        MaskConditionedGenerator,
        MaskDiffusion,
        ModelNotAvailableError,
        MultiViewDiffusion,
        MultiViewGenerator,
        PairGenerator,
        StoredSamples,
    )
    from gdaload.seeding import SeedPlan
    from gdaload.train import (
        adapt,
        distill,
        pretrain_text2image,
        train_multiview,
        train_segmentation_generator,
    )
    from gdaload.transforms import GenerativeAugment, GenMix
    from gdaload.tta import GenerativeTTA
