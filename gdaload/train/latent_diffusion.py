"""What the trainers of text-conditioned latent diffusion share: the text encoder and the
UNet as one trained module, images' VAE posteriors computed once, and prompt ids.

:func:`~gdaload.train.adapt.adapt` (a pretrained model taught new classes) and
:func:`~gdaload.train.text2image.pretrain_text2image` (a small model trained from
scratch) both minimise the noise-prediction error of this module on latents sampled
from stored posteriors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch

__all__ = ["Latents", "TextDenoiser", "encode_posteriors", "prompt_ids"]


class TextDenoiser(torch.nn.Module):
    """The text encoder and the UNet as one module, so that ``accelerate`` prepares (and
    wraps for distributed training) everything the trained weights live in.

    Example:
        >>> model = TextDenoiser(pipe.text_encoder, pipe.unet)  # doctest: +SKIP
        >>> noise_prediction = model(noisy_latents, timesteps, input_ids)  # doctest: +SKIP
    """

    def __init__(self, text_encoder: torch.nn.Module, unet: torch.nn.Module) -> None:
        super().__init__()
        # Any: transformers' and diffusers' methods (get_input_embeddings, peft_config)
        # are not visible through the Module type.
        self.text_encoder: Any = text_encoder
        self.unet: Any = unet

    def forward(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        states = self.text_encoder(input_ids)[0]
        return cast(torch.Tensor, self.unet(noisy, timesteps, encoder_hidden_states=states).sample)


@dataclass
class Latents:
    """The VAE posteriors of a set of images (mean and standard deviation) and their
    labels, on the CPU.

    Example:
        >>> latents = encode_posteriors(vae, images, labels, "cpu")  # doctest: +SKIP
        >>> latents.means.shape  # doctest: +SKIP
        torch.Size([50, 4, 4, 4])
    """

    means: torch.Tensor
    stds: torch.Tensor
    labels: torch.Tensor

    def named(self) -> dict[str, torch.Tensor]:
        """The tensors by name, for ``safetensors`` (``Latents(**load_file(path))``)."""
        return {"means": self.means, "stds": self.stds, "labels": self.labels}

    def sample(self, index: torch.Tensor, draws: torch.Generator) -> torch.Tensor:
        """Latents of the images ``index``, drawn from their posteriors with ``draws``."""
        mean = self.means[index]
        return mean + self.stds[index] * torch.randn(mean.shape, generator=draws)


@torch.inference_mode()
def encode_posteriors(
    vae: Any,
    images: list[torch.Tensor] | torch.Tensor,
    labels: list[int] | torch.Tensor,
    device: torch.device | str,
) -> Latents:
    """Each image's (``(3, S, S)`` in [0, 1]) VAE posterior, computed once: training
    steps sample from it."""
    vae.to(device)
    means, stds = [], []
    for start in range(0, len(images), 8):
        chunk = images[start : start + 8]
        batch = (torch.stack(list(chunk)) if isinstance(chunk, list) else chunk).to(
            device, vae.dtype
        )
        posterior = vae.encode(batch * 2 - 1).latent_dist
        # Contiguous, as they read back from a file: a convolution's rounding can
        # depend on its input's memory layout, and a resumed run must match.
        means.append(posterior.mean.float().cpu().contiguous())
        stds.append(posterior.std.float().cpu().contiguous())
    return Latents(torch.cat(means), torch.cat(stds), torch.as_tensor(labels))


def prompt_ids(tokenizer: Any, prompts: list[str]) -> torch.Tensor:
    """Token ids ``(len(prompts), max_length)`` of the prompts, padded as SD pads them."""
    return cast(
        torch.Tensor,
        tokenizer(
            prompts,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids,
    )
