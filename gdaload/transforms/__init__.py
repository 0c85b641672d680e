"""Transforms: generative augmentation per sample or batch, and GenMix for batches."""

from gdaload.transforms.augment import GenerativeAugment
from gdaload.transforms.genmix import GenMix

__all__ = ["GenMix", "GenerativeAugment"]
