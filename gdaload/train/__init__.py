"""Training of generators: the class-conditional and the multi-view diffusion models."""

from gdaload.train.generator import image_folder_dataset, train_generator
from gdaload.train.multiview import train_multiview

__all__ = ["image_folder_dataset", "train_generator", "train_multiview"]
