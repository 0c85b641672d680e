"""The multi-view denoiser's layout: ``V`` view latents and ``V`` mask channels in, ``V``
view predictions out.

One mask channel per view (1 = observed and clean, 0 = to generate) tells the UNet which
views are given. The paper passes a per-view time vector ``t * [view is missing]``; every
missing view shares one diffusion time, so that vector is fully described by the UNet's
ordinary timestep plus the mask channels, which is what is passed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from diffusers.models.unets.unet_2d import UNet2DModel

__all__ = ["build_multiview_unet", "denoiser_input", "views_of"]


def denoiser_input(latents: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """The UNet input: the ``V`` view latents stacked on channels, then one mask channel
    per view (1 where the view is observed and clean, 0 where it is diffused).

    Args:
        latents: ``(B, V, c, h, w)``.
        observed: Boolean ``(B, V)``.

    Returns:
        ``(B, V * c + V, h, w)``.

    Example:
        >>> denoiser_input(torch.zeros(2, 4, 5, 3, 3), torch.ones(2, 4, dtype=torch.bool)).shape
        torch.Size([2, 24, 3, 3])
    """
    b, v, _, h, w = latents.shape
    mask = observed.to(latents.dtype)[:, :, None, None].expand(b, v, h, w)
    return torch.cat([latents.flatten(1, 2), mask], dim=1)


def build_multiview_unet(
    num_views: int,
    latent_channels: int,
    latent_size: int,
    widths: Sequence[int] = (48, 96),
    layers_per_block: int = 1,
    attention: bool = True,
) -> UNet2DModel:
    """A ``UNet2DModel`` over ``num_views`` concatenated latents plus their mask channels.

    Args:
        num_views: ``V``.
        latent_channels: Channels of one view's latent.
        latent_size: Side of the latent grid.
        widths: Channels of the UNet levels.
        layers_per_block: ResNet layers per level.
        attention: Self-attention at the last (coarsest) level.

    Example:
        >>> unet = build_multiview_unet(4, 5, 4, widths=(8, 16))
        >>> unet.config.in_channels, unet.config.out_channels
        (24, 20)
    """
    last = ("AttnDownBlock2D",) if attention else ("DownBlock2D",)
    first = ("AttnUpBlock2D",) if attention else ("UpBlock2D",)
    levels = len(widths)
    return UNet2DModel(
        sample_size=latent_size,
        in_channels=num_views * latent_channels + num_views,
        out_channels=num_views * latent_channels,
        block_out_channels=tuple(widths),
        layers_per_block=layers_per_block,
        norm_num_groups=math.gcd(32, *widths),
        down_block_types=("DownBlock2D",) * (levels - 1) + last,
        up_block_types=first + ("UpBlock2D",) * (levels - 1),
    )


def views_of(unet: UNet2DModel, latent_channels: int) -> int:
    """The number of views ``V`` a UNet of this layout serves.

    Raises:
        ValueError: If the UNet does not have ``V * latent_channels`` outputs and
            ``V * (latent_channels + 1)`` inputs for some ``V >= 2``.
    """
    config = unet.config
    views, rest = divmod(config["out_channels"], latent_channels)
    if rest or views < 2 or config["in_channels"] != views * (latent_channels + 1):
        raise ValueError(
            f"the UNet ({config['in_channels']} in, {config['out_channels']} out channels) "
            f"does not fit {latent_channels}-channel view latents: it needs "
            "V * latent_channels outputs and V * (latent_channels + 1) inputs; build it "
            "with build_multiview_unet"
        )
    return int(views)
