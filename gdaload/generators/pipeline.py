"""A diffusers pipeline for class-conditional denoisers (UNet2DModel or DiT, optional VAE).

diffusers ships no pipeline that samples a ``UNet2DModel`` with class embeddings, and its
``DiTPipeline`` hard-codes ImageNet's 1000 classes. This one covers both, follows the
diffusers conventions (``register_modules``, ``save_pretrained``/``from_pretrained``, a
``generator=`` list with one ``torch.Generator`` per sample) and adds classifier-free
guidance through a reserved "null" class.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.modeling_utils import ModelMixin
from diffusers.pipelines.pipeline_utils import DiffusionPipeline, ImagePipelineOutput
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from gdaload.generators.metadata import GDALOAD_META
from gdaload.generators.samplers import NoiseScheduler

__all__ = ["GDALOAD_META", "ClassConditionalPipeline", "denoiser_num_classes"]


def denoiser_num_classes(denoiser: ModelMixin) -> int:
    """Return the number of real classes of a class-conditional denoiser.

    gdaload's convention: a ``UNet2DModel`` trained with label dropout has
    ``num_class_embeds = num_classes + 1`` and the last index is the null class; a DiT
    (``num_embeds_ada_norm`` classes) always has its null class at index ``num_classes``.
    """
    config = denoiser.config
    if getattr(config, "num_embeds_ada_norm", None):
        return int(config.num_embeds_ada_norm)
    embeds = getattr(config, "num_class_embeds", None)
    if not embeds:
        raise ValueError(
            f"{type(denoiser).__name__} has no class embedding; build it with "
            "num_class_embeds=num_classes + 1 (UNet2DModel) or use a text-to-image pipeline"
        )
    return int(embeds) - 1


class ClassConditionalPipeline(DiffusionPipeline):
    """Sample images from a class-conditional denoiser with classifier-free guidance.

    Args:
        unet: ``UNet2DModel`` with ``num_class_embeds = num_classes + 1`` (last index =
            null class) or a ``DiTTransformer2DModel``.
        scheduler: Any diffusers scheduler; it fixes the sampler.
        vae: Optional ``AutoencoderKL``; when given, the denoiser works on latents.

    Example:
        >>> from diffusers import DDPMScheduler, UNet2DModel
        >>> unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1,
        ...     block_out_channels=(16, 16), layers_per_block=1, norm_num_groups=8,
        ...     down_block_types=("DownBlock2D", "DownBlock2D"),
        ...     up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=3)
        >>> pipe = ClassConditionalPipeline(unet, DDPMScheduler())
        >>> gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
        >>> pipe([0, 1], num_inference_steps=2, generator=gens).images.shape
        torch.Size([2, 1, 8, 8])
    """

    # diffusers declares this as None without an annotation, so its type is None.
    model_cpu_offload_seq = "unet->vae"  # type: ignore[assignment]
    _optional_components = ["vae"]

    # Registered by register_modules; declared for type checkers.
    unet: ModelMixin
    scheduler: NoiseScheduler
    vae: AutoencoderKL | None

    def __init__(
        self, unet: ModelMixin, scheduler: SchedulerMixin, vae: AutoencoderKL | None = None
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, vae=vae)

    @property
    def num_classes(self) -> int:
        """Number of real classes (the null class excluded)."""
        return denoiser_num_classes(self.unet)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of a decoded image."""
        size = self.unet.config.sample_size
        size = size if isinstance(size, int) else size[0]
        if self.vae is None:
            return (self.unet.config.in_channels, size, size)
        factor = 2 ** (len(self.vae.config["block_out_channels"]) - 1)
        return (self.vae.config["out_channels"], size * factor, size * factor)

    def _latent_shape(self, batch: int) -> tuple[int, ...]:
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        return (batch, self.unet.config.in_channels, *size)

    def _step_kwargs(self, generator: object) -> dict[str, object]:
        # Deterministic solvers (UniPC, DPM-Solver++) take no generator; stochastic ones do.
        accepts = "generator" in inspect.signature(self.scheduler.step).parameters
        return {"generator": generator} if accepts else {}

    def _denoise(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = self.unet(x, t.expand(x.shape[0]), class_labels=labels).sample
        # DiT with learned sigma predicts (eps, variance); the sampler needs eps only.
        return out[:, : x.shape[1]] if out.shape[1] == 2 * x.shape[1] else out

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the denoiser's space: [-1, 1] pixels, or scaled VAE latents
        (the posterior's mode, so the encoding is deterministic and cacheable)."""
        x = images.to(device=self._execution_device, dtype=self.unet.dtype) * 2 - 1
        if self.vae is None:
            return x
        return self.vae.encode(x).latent_dist.mode() * self.vae.config["scaling_factor"]

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The denoiser's space -> float images in [0, 1]."""
        x = latents
        if self.vae is not None:
            x = self.vae.decode(x / self.vae.config["scaling_factor"]).sample
        return (x.float() / 2 + 0.5).clamp(0, 1)

    def eps(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, guidance_scale: float
    ) -> torch.Tensor:
        """Noise prediction with classifier-free guidance through the null class."""
        if guidance_scale == 1.0:
            return self._denoise(x, t, labels)
        null = torch.full_like(labels, self.num_classes)
        eps_c, eps_u = self._denoise(torch.cat([x, x]), t, torch.cat([labels, null])).chunk(2)
        return eps_u + guidance_scale * (eps_c - eps_u)

    @torch.inference_mode()
    def __call__(
        self,
        class_labels: Sequence[int] | torch.Tensor,
        *,
        guidance_scale: float = 1.0,
        num_inference_steps: int = 50,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
        image_latents: torch.Tensor | None = None,
        strength: float = 1.0,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple[Any]:
        """Generate one image per class label, from noise or from a source image.

        Args:
            class_labels: Labels in ``0..num_classes-1``.
            guidance_scale: Classifier-free guidance scale; 1 disables guidance.
            num_inference_steps: Sampler steps (of the full schedule; ``strength`` runs
                the last ``int(num_inference_steps * strength)`` of them).
            generator: One ``torch.Generator`` per image (recommended: the image then does
                not depend on the rest of the batch) or a single one.
            latents: Optional starting noise instead of drawing it (e.g. from
                :meth:`gdaload.DiffusionGenerator.invert`).
            image: Source images ``(B, C, H, W)`` in [0, 1] for image-to-image (SDEdit).
            image_latents: The same sources already passed through :meth:`encode_images`.
            strength: How far the source is noised: 0 returns it (up to the VAE round
                trip), 1 ignores it.
            output_type: ``"pt"`` (tensor in [0, 1]), ``"np"`` or ``"pil"``.
            return_dict: Return an ``ImagePipelineOutput`` instead of a tuple.
        """
        device = self._execution_device
        labels = torch.as_tensor(class_labels, dtype=torch.long, device=device).reshape(-1)
        dtype = self.unet.dtype
        if not 0 <= strength <= 1:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        if image is not None and image_latents is None:
            image_latents = self.encode_images(image)
        noise = (
            randn_tensor(
                self._latent_shape(len(labels)), generator=generator, device=device, dtype=dtype
            )
            if latents is None
            else latents.to(device, dtype)
        )
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if image_latents is None or strength == 1:
            x = noise * self.scheduler.init_noise_sigma
        else:
            # SDEdit as in diffusers' img2img pipelines: skip the first steps of the schedule
            # and start from the source noised to the first remaining timestep.
            t_start = num_inference_steps - min(
                int(num_inference_steps * strength), num_inference_steps
            )
            timesteps = timesteps[t_start * self.scheduler.order :]
            if hasattr(self.scheduler, "set_begin_index"):
                self.scheduler.set_begin_index(t_start * self.scheduler.order)
            x = image_latents.to(device, dtype)
            if len(timesteps):
                x = self.scheduler.add_noise(x, noise, timesteps[:1].repeat(len(x)))
        step_kwargs = self._step_kwargs(generator)
        for t in self.progress_bar(timesteps):
            inp = self.scheduler.scale_model_input(x, t)
            eps = self.eps(inp, t, labels, guidance_scale)
            x = self.scheduler.step(eps, t, x, **step_kwargs).prev_sample
        decoded = self.decode_latents(x)
        images: torch.Tensor | np.ndarray | list[Any]
        if output_type == "pt":
            images = decoded
        elif output_type == "np":
            images = decoded.permute(0, 2, 3, 1).cpu().numpy()
        elif output_type == "pil":
            images = self.numpy_to_pil(decoded.permute(0, 2, 3, 1).cpu().numpy())
        else:
            raise ValueError(f"output_type must be 'pt', 'np' or 'pil', got {output_type!r}")
        if not return_dict:
            return (images,)
        # diffusers' pipelines return tensors for output_type="pt", which its annotation omits.
        return ImagePipelineOutput(images=images)  # type: ignore[arg-type]
