"""Training of generators: the class-conditional and the multi-view diffusion models, and
the pretraining of a small text-to-image model (the stand-in for a pretrained one), the
adaptation of a pretrained text-to-image model to a user's classes, and the
distillation of a class-conditional one into a few-step model.

The trainers take a config dataclass (or its fields as keyword options) and run the
one training loop of :mod:`gdaload.train.loop`, which checkpoints with ``accelerate``.
"""

from gdaload.train.adapt import AdaptResult, adapt
from gdaload.train.checkpoints import Checkpoints
from gdaload.train.config import (
    AdaptConfig,
    DistillConfig,
    GeneratorTrainingConfig,
    MultiViewTrainingConfig,
    SegmentationGeneratorTrainingConfig,
    Text2ImageConfig,
)
from gdaload.train.distill import distill
from gdaload.train.generator import image_folder_dataset, train_generator
from gdaload.train.loop import train_loop
from gdaload.train.masking import condition_weight, masked_diffusion_loss, sample_condition_masks
from gdaload.train.multiview import train_multiview
from gdaload.train.segmentation import train_segmentation_generator
from gdaload.train.text2image import pretrain_text2image

__all__ = [
    "AdaptConfig",
    "AdaptResult",
    "Checkpoints",
    "DistillConfig",
    "GeneratorTrainingConfig",
    "MultiViewTrainingConfig",
    "SegmentationGeneratorTrainingConfig",
    "Text2ImageConfig",
    "adapt",
    "condition_weight",
    "distill",
    "image_folder_dataset",
    "masked_diffusion_loss",
    "pretrain_text2image",
    "sample_condition_masks",
    "train_generator",
    "train_loop",
    "train_multiview",
    "train_segmentation_generator",
]
