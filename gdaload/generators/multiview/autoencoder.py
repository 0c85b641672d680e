"""A small deterministic convolutional autoencoder for the views of a multi-view model.

The latent diffusion model of :class:`~gdaload.MultiViewDiffusion` works on the
latents of this autoencoder: each view is encoded on its own, and the latents of all
views are concatenated along the channels. The encoder is deterministic (no posterior
sampling), so an observed view has exactly one latent, which is what lets the sampler
keep observed views clean. It is a diffusers ``ModelMixin``, so it is saved and loaded
with ``save_pretrained`` / ``from_pretrained`` (``config.json`` plus safetensors) like
the UNet beside it.

A latent is the view's *thumbnail* (the image average-pooled to the latent grid) plus
``detail_channels`` learned channels; the decoder adds its output to the upsampled
thumbnail. Colours and layout thus pass through from the first training step, and the
learned part only has to add edges and texture: without the shortcut, a small
autoencoder spends thousands of steps on luminance before it learns colour at all.
It is a plain strided-convolution design rather than diffusers' ``AutoencoderKL``,
whose normalised residual blocks cost several times more to train at these sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

__all__ = ["ViewAutoencoder"]


# ModelMixin sets config_name to a file name where ConfigMixin declares None, as in
# every diffusers model; the two definitions agree at run time.
class ViewAutoencoder(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """Images in [0, 1] <-> standardised latents (thumbnail + learned detail channels).

    Each width in ``widths`` adds a stride-2 level, so the latent grid is
    ``image_size / 2**len(widths)`` on a side, with ``in_channels + detail_channels``
    channels. ``latent_mean`` and ``latent_std`` (one value per latent channel, set by
    training from the training views) standardise the latents for the diffusion model.

    Args:
        in_channels: Channels of an image.
        detail_channels: Learned latent channels beside the thumbnail.
        widths: Channels of the encoder levels (mirrored by the decoder).
        latent_mean: Per-channel mean of the raw latents (default 0).
        latent_std: Per-channel standard deviation of the raw latents (default 1).

    Example:
        >>> ae = ViewAutoencoder(in_channels=3, detail_channels=2, widths=(8, 16))
        >>> z = ae.encode(torch.rand(2, 3, 16, 16))
        >>> z.shape, ae.decode(z).shape
        (torch.Size([2, 5, 4, 4]), torch.Size([2, 3, 16, 16]))
    """

    if TYPE_CHECKING:
        # diffusers wraps Module.to with functools.wraps, which type checkers read as an
        # unbound function; this restores the signature callers see at run time.
        def to(self, *args: Any, **kwargs: Any) -> ViewAutoencoder: ...  # type: ignore[override]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        detail_channels: int = 3,
        widths: Sequence[int] = (16, 32),
        latent_mean: Sequence[float] | None = None,
        latent_std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        widths = list(widths)
        if not widths:
            raise ValueError("widths must name at least one level, e.g. (16, 32)")
        if detail_channels < 1:
            raise ValueError(f"detail_channels must be >= 1, got {detail_channels}")
        layers: list[nn.Module] = []
        previous = in_channels
        for width in widths:
            layers += [nn.Conv2d(previous, width, 4, stride=2, padding=1), nn.SiLU()]
            previous = width
        layers += [
            nn.Conv2d(previous, previous, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(previous, detail_channels, 1),
        ]
        self.encoder = nn.Sequential(*layers)
        layers = [
            nn.Conv2d(in_channels + detail_channels, previous, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(previous, previous, 3, padding=1),
            nn.SiLU(),
        ]
        # Mirror the encoder: each level doubles the size and steps back one width.
        for width, target in zip(
            reversed(widths), [*reversed(widths[:-1]), widths[0]], strict=True
        ):
            layers += [nn.ConvTranspose2d(width, target, 4, stride=2, padding=1), nn.SiLU()]
        layers.append(nn.Conv2d(widths[0], in_channels, 3, padding=1))
        self.decoder = nn.Sequential(*layers)
        channels = in_channels + detail_channels
        mean = torch.tensor(latent_mean if latent_mean is not None else [0.0] * channels)
        std = torch.tensor(latent_std if latent_std is not None else [1.0] * channels)
        if mean.shape != (channels,) or std.shape != (channels,) or bool((std <= 0).any()):
            raise ValueError(
                f"latent_mean and latent_std need {channels} values (one per latent "
                "channel) and a positive std"
            )
        # Buffers follow the module's device; the config keeps the values for saving.
        self.register_buffer("_mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_std", std.view(1, -1, 1, 1), persistent=False)

    @property
    def downsampling(self) -> int:
        """Image size / latent size."""
        return 2 ** len(self.config["widths"])

    @property
    def latent_channels(self) -> int:
        """Channels of a latent: the thumbnail's plus the detail channels."""
        return self.config["in_channels"] + self.config["detail_channels"]

    def set_latent_statistics(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Record the per-channel statistics that standardise the latents."""
        self.register_to_config(
            latent_mean=[float(m) for m in mean], latent_std=[float(s) for s in std]
        )
        self._mean.copy_(torch.tensor(self.config["latent_mean"]).view(1, -1, 1, 1))
        self._std.copy_(torch.tensor(self.config["latent_std"]).view(1, -1, 1, 1))

    def encode_raw(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> unstandardised latents: thumbnail, then detail channels."""
        x = images * 2 - 1
        return torch.cat([F.avg_pool2d(x, self.downsampling), self.encoder(x)], dim=1)

    def decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """Unstandardised latents -> images, unclamped, in about [0, 1]."""
        thumbnail = raw[:, : self.config["in_channels"]]
        base = F.interpolate(thumbnail, scale_factor=self.downsampling, mode="bilinear")
        return (base + self.decoder(raw)) / 2 + 0.5

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstruction of images in [0, 1], unclamped (the training objective's input)."""
        return self.decode_raw(self.encode_raw(images))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` in [0, 1] -> standardised latents ``(B, c, h, w)``."""
        return (self.encode_raw(images) - self._mean) / self._std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Standardised latents -> images in [0, 1]."""
        return self.decode_raw(latents * self._std + self._mean).clamp(0, 1)
