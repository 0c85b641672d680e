"""The multi-view generator: masked multi-view latent diffusion over a view autoencoder."""

from gdaload.generators.multiview.autoencoder import ViewAutoencoder
from gdaload.generators.multiview.denoiser import build_multiview_unet, denoiser_input
from gdaload.generators.multiview.generator import MultiViewDiffusion
from gdaload.generators.multiview.pipeline import MultiViewPipeline

__all__ = [
    "MultiViewDiffusion",
    "MultiViewPipeline",
    "ViewAutoencoder",
    "build_multiview_unet",
    "denoiser_input",
]
