"""DDIM inversion: the noise that deterministic DDIM sampling maps back to a source image.

Regenerating from that noise with the ``ddim`` sampler reconstructs the source; another
label, prompt or guidance scale makes a controlled change of it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from diffusers.schedulers.scheduling_ddim_inverse import DDIMInverseScheduler

from gdaload.generators.base import as_labels, check_source
from gdaload.generators.samplers import NoiseScheduler

if TYPE_CHECKING:
    from gdaload.generators.diffusion import DiffusionGenerator

__all__ = ["ddim_invert", "inverse_scheduler"]

#: Noise prediction ``eps(x_t, t)``.
NoisePredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def inverse_scheduler(
    config: Mapping[str, Any], steps: int, device: torch.device
) -> NoiseScheduler:
    """A ``DDIMInverseScheduler`` on the noise schedule of a sampler's ``config``.

    Example:
        >>> from diffusers import DDPMScheduler
        >>> inverse = inverse_scheduler(DDPMScheduler().config, 4, torch.device("cpu"))
        >>> len(inverse.timesteps)
        4
    """
    # Pass only DDIM's own settings: the sampler's extras (e.g. algorithm_type) do not apply.
    accepted = inspect.signature(DDIMInverseScheduler.__init__).parameters
    own = {k: v for k, v in config.items() if k in accepted}
    # The inverse scheduler knows no "linspace" spacing; "trailing" is its closest match.
    if own.get("timestep_spacing") not in ("leading", "trailing"):
        own["timestep_spacing"] = "trailing"
    inverse = cast(NoiseScheduler, DDIMInverseScheduler.from_config(own))
    inverse.set_timesteps(steps, device=device)
    return inverse


def _noise_predictor(
    generator: DiffusionGenerator, labels: torch.Tensor, guidance_scale: float
) -> NoisePredictor:
    pipeline = generator.pipeline
    if generator.mode == "class":
        device_labels = labels.to(generator.device)

        def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return cast(torch.Tensor, pipeline.eps(x, t, device_labels, guidance_scale))

        return eps
    positive, negative = generator._prompt_embeddings(labels.tolist(), [0] * len(labels))

    def text_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        unet = pipeline.unet
        if guidance_scale == 1.0:
            return cast(torch.Tensor, unet(x, t, encoder_hidden_states=positive).sample)
        e_u, e_c = unet(
            torch.cat([x, x]), t, encoder_hidden_states=torch.cat([negative, positive])
        ).sample.chunk(2)
        return cast(torch.Tensor, e_u + guidance_scale * (e_c - e_u))

    return text_eps


@torch.inference_mode()
def ddim_invert(
    generator: DiffusionGenerator,
    source: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    guidance_scale: float = 1.0,
) -> torch.Tensor:
    """The noise latents ``(B, ...)`` that DDIM maps back to ``source`` under ``labels``;
    see :meth:`~gdaload.DiffusionGenerator.invert`."""
    labels = as_labels(labels, generator.num_classes)
    x = generator.encode(check_source(source, generator.image_shape, len(labels)))
    inverse = inverse_scheduler(generator.scheduler.config, generator.steps, generator.device)
    eps = _noise_predictor(generator, labels, guidance_scale)
    for t in inverse.timesteps:
        x = inverse.step(eps(x, t), t, x).prev_sample
    return x
