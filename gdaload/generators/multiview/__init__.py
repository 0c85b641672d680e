"""The multi-view generator: masked multi-view latent diffusion over a view autoencoder."""

from gdaload.generators.multiview.autoencoder import ViewAutoencoder
from gdaload.generators.multiview.generator import (
    MultiViewDiffusion,
    build_multiview_unet,
    denoiser_input,
)

__all__ = ["MultiViewDiffusion", "ViewAutoencoder", "build_multiview_unet", "denoiser_input"]
