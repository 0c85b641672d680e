"""``DiffusionGenerator``: the :class:`~gdaload.Generator` contract over diffusers pipelines.

Two modes:

* **class**: a class-conditional denoiser (``UNet2DModel`` with class embeddings or a
  DiT), sampled by :class:`~gdaload.generators.pipeline.ClassConditionalPipeline`.
* **text**: a Stable-Diffusion-family text-to-image pipeline driven by per-class prompts,
  whose embeddings are encoded once per prompt and cached.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.modeling_utils import ModelMixin
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from gdaload.cache.latents import LatentCache
from gdaload.generators.adapter import Adapter
from gdaload.generators.base import (
    ImageConditionedGenerator,
    StrengthLike,
    as_labels,
    as_seeds,
    check_source,
    sample_strengths,
)
from gdaload.generators.diffusers_base import DiffusersGenerator
from gdaload.generators.few_step import Distillation, load_lcm_lora
from gdaload.generators.hub import ModelNotAvailableError, load_pipeline, locate_model
from gdaload.generators.inversion import ddim_invert
from gdaload.generators.metadata import read_metadata
from gdaload.generators.pipeline import ClassConditionalPipeline
from gdaload.generators.prompts import (
    PromptEmbeddings,
    PromptEncoder,
    PromptsLike,
    resolve_prompts,
)

__all__ = ["DiffusionGenerator", "ModelNotAvailableError", "PromptsLike"]


def _run(pipeline: DiffusionPipeline, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Call a pipeline (``DiffusionPipeline`` declares no ``__call__``) for its images."""
    images = cast(Callable[..., Any], pipeline)(*args, **kwargs).images
    return cast(torch.Tensor, images)


class DiffusionGenerator(DiffusersGenerator[DiffusionPipeline], ImageConditionedGenerator):
    """Generate training images with a diffusers model, one ``torch.Generator`` per sample.

    Args:
        pipeline: A :class:`ClassConditionalPipeline` (class mode) or a text-to-image
            pipeline with ``encode_prompt`` such as ``StableDiffusionPipeline`` (text mode).
        sampler: One of ``ddim``, ``dpm-solver++``, ``unipc``, ``euler``, ``ddpm``, ``lcm``.
        steps: Sampler steps.
        guidance_scale: Classifier-free guidance scale (1 disables guidance).
        class_names: Names of the classes; in text mode they fill the prompt template.
        prompts: Text mode only, see :data:`PromptsLike`.
        negative_prompt: Text mode only: the unconditional prompt for guidance.
        device: Where to generate; default CUDA if available, else CPU.
        dtype: Weights' dtype (e.g. ``torch.bfloat16`` on GPU); outputs are float32.
        max_batch_size: Largest batch sent to the model at once.
        model_id: Name recorded in :attr:`config` (defaults to the folder or hub id).
        latent_cache: Cache of VAE latents of source images (latent models); by default
            an in-memory :class:`~gdaload.LatentCache` made on first use. Pass one with a
            ``directory`` to keep latents across runs.
        adapter: Text mode only: the :class:`~gdaload.generators.adapter.Adapter` already
            loaded into ``pipeline``; its fingerprint joins :attr:`config`. Pass
            ``adapter=folder`` to :meth:`from_pretrained` to load one.
        distillation: The ``distillation`` block of a model made by
            :func:`gdaload.train.distill` (:meth:`from_pretrained` passes it): the model
            then takes ``sampler="lcm"`` and ``guidance_scale=1`` only, and steps up to
            its schedule's length (more than its ``max_steps`` with a warning); the
            block joins :attr:`config`.
        lcm_lora: Text mode only: a folder or ``.safetensors`` file of LCM-LoRA weights,
            loaded with ``load_lora_weights``; their fingerprint joins :attr:`config`.
            Sample with ``sampler="lcm"`` in 2-8 steps.

    Example:
        >>> gen = DiffusionGenerator.from_pretrained("path/to/model", sampler="dpm-solver++",
        ...                                          steps=20)  # doctest: +SKIP
        >>> images = gen.generate(torch.tensor([0, 3]), seeds=[11, 12])  # doctest: +SKIP
        >>> images.shape, images.min() >= 0, images.max() <= 1  # doctest: +SKIP
        (torch.Size([2, 1, 8, 8]), tensor(True), tensor(True))
    """

    kind = "diffusion"

    def __init__(
        self,
        pipeline: DiffusionPipeline,
        *,
        sampler: str = "dpm-solver++",
        steps: int = 20,
        guidance_scale: float = 1.0,
        class_names: Sequence[str] | None = None,
        prompts: PromptsLike | None = None,
        negative_prompt: str | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        max_batch_size: int = 64,
        model_id: str | None = None,
        latent_cache: LatentCache | None = None,
        adapter: Adapter | None = None,
        distillation: Mapping[str, Any] | None = None,
        lcm_lora: str | os.PathLike[str] | None = None,
    ) -> None:
        self.distillation = None if distillation is None else Distillation(dict(distillation))
        self._lcm_lora_key: str | None = None
        self._prompt_encoder: PromptEncoder | None = None
        self.adapter = adapter
        # Hashed once: the files were read into the pipeline when it was adapted.
        self._adapter_key = None if adapter is None else adapter.fingerprint()
        self.guidance_scale = guidance_scale
        self.negative_prompt = negative_prompt
        super().__init__(
            pipeline,
            sampler=sampler,
            steps=steps,
            max_batch_size=max_batch_size,
            device=device,
            dtype=dtype,
            model_id=model_id or getattr(pipeline, "name_or_path", None) or type(pipeline).__name__,
        )
        self._img2img: DiffusionPipeline | None = None
        self.latent_cache = latent_cache

        if isinstance(pipeline, ClassConditionalPipeline):
            self.mode = "class"
            if prompts is not None:
                raise ValueError(
                    "prompts are for text-to-image pipelines; this model is "
                    "class-conditional, pass class_names only"
                )
            self.num_classes = pipeline.num_classes
            self.image_shape = pipeline.image_shape
        elif hasattr(pipeline, "encode_prompt"):
            self.mode = "text"
            if prompts is None:
                raise ValueError(
                    "a text-to-image model needs prompts=: a template such as "
                    "'a photo of a {name}' with class_names, or prompts per class"
                )
            self._prompt_encoder = PromptEncoder(resolve_prompts(prompts, class_names))
            self.num_classes = len(self._prompt_encoder.prompts)
            factor = getattr(pipeline, "vae_scale_factor", 8)
            size = self.pipeline.unet.config.sample_size * factor
            self.image_shape = (3, size, size)
        else:
            raise TypeError(
                f"{type(pipeline).__name__} is not supported: use ClassConditionalPipeline "
                "(class-conditional UNet2DModel/DiT) or a Stable-Diffusion-family pipeline"
            )
        if adapter is not None and self.mode != "text":
            raise ValueError("adapters are for text-to-image models; this one is class-conditional")
        if lcm_lora is not None:
            if self.mode != "text":
                raise ValueError(
                    "lcm_lora= is for text-to-image models; make a few-step version of a "
                    "class-conditional model with gdaload.distill"
                )
            self._lcm_lora_key = load_lcm_lora(self.pipeline, lcm_lora)
            self.refresh_config()
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(
                f"the model has {self.num_classes} classes but {len(class_names)} "
                "class_names were given"
            )
        self.class_names = (
            list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        )

    # ------------------------------------------------------------------ settings
    @property
    def guidance_scale(self) -> float:
        """Classifier-free guidance scale (1 disables guidance)."""
        return self._guidance_scale

    @guidance_scale.setter
    def guidance_scale(self, scale: float) -> None:
        if not scale >= 0:
            raise ValueError(f"guidance_scale must be >= 0, got {scale}")
        if self.distillation is not None:
            self.distillation.check_guidance(scale)
        self._guidance_scale = float(scale)
        self._settings_changed()

    def _check_setting(self, name: str, value: Any) -> None:
        if self.distillation is None:
            return
        if name == "sampler":
            self.distillation.check_sampler(value)
        elif name == "steps":
            self.distillation.check_steps(value)

    @property
    def negative_prompt(self) -> str | None:
        """Text mode: the unconditional prompt for guidance."""
        return self._negative_prompt

    @negative_prompt.setter
    def negative_prompt(self, prompt: str | None) -> None:
        self._negative_prompt = prompt
        if self._prompt_encoder is not None:
            self._prompt_encoder.cache.clear()
        self._settings_changed()

    @property
    def prompts(self) -> list[list[str]] | None:
        """Text mode: the prompts of each class (``None`` in class mode)."""
        return None if self._prompt_encoder is None else self._prompt_encoder.prompts

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_components(
        cls,
        denoiser: ModelMixin,
        scheduler: SchedulerMixin,
        vae: AutoencoderKL | None = None,
        **kwargs: Any,
    ) -> DiffusionGenerator:
        """Build a class-conditional generator from a denoiser, its training scheduler and
        an optional VAE (``AutoencoderKL``). ``kwargs`` go to the constructor."""
        return cls(ClassConditionalPipeline(unet=denoiser, scheduler=scheduler, vae=vae), **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str],
        *,
        local_files_only: bool | None = None,
        torch_dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> DiffusionGenerator:
        """Load a saved pipeline folder or hub id through diffusers' ``from_pretrained``.

        A folder written by :func:`gdaload.train_generator` (or any
        ``ClassConditionalPipeline.save_pretrained``) loads in class mode; any other
        diffusers text-to-image pipeline loads in text mode and needs ``prompts=``.
        Settings saved by :meth:`save_pretrained` (class names; prompts in text mode)
        are the defaults of ``kwargs``.

        A model made by :func:`gdaload.distill` loads with ``sampler="lcm"`` and its
        ``max_steps`` (4 by default) as defaults, and keeps its limits (see
        ``distillation`` in the class docstring). ``lcm_lora=folder_or_file`` loads LCM-LoRA
        weights onto a text-to-image model; the defaults are then ``lcm`` and 4 steps.

        ``adapter=folder`` loads an adapter made by :func:`gdaload.train.adapt` onto the
        model (its tokens and LoRA layers, through diffusers' ``load_textual_inversion``
        and ``load_lora_weights``). Its class names and prompts, with the learned
        tokens, become the defaults; a template ``prompts=`` may use ``{token}`` and
        ``{name}``.

        Raises:
            ModelNotAvailableError: Within seconds when the weights are not local and the
                hub cannot be reached; the message says how to pass a local folder.
            gdaload.generators.adapter.AdapterMismatchError: If the adapter was trained
                on another base model.

        Example:
            >>> gen = DiffusionGenerator.from_pretrained(
            ...     "stable-diffusion-v1-5", adapter="my-adapter")  # doctest: +SKIP
            >>> gen.prompts  # doctest: +SKIP
            [['a photo of a <cat>'], ['a photo of a <dog>']]
        """
        name = os.fspath(model)
        path = locate_model(name, local_files_only)
        pipe = load_pipeline(path, torch_dtype)
        adapter_folder = kwargs.pop("adapter", None)
        if adapter_folder is not None:
            adapter = Adapter.read(adapter_folder)
            adapter.load_into(pipe, path)
            prompts = kwargs.get("prompts")
            if prompts is None or (isinstance(prompts, str) and "{token}" in prompts):
                kwargs["prompts"] = adapter.prompts(prompts)
            kwargs["class_names"] = kwargs.get("class_names") or adapter.class_names
            return cls(pipe, model_id=kwargs.pop("model_id", name), adapter=adapter, **kwargs)
        meta = read_metadata(path)
        if meta.get("distillation") is not None or kwargs.get("lcm_lora") is not None:
            kwargs.setdefault("sampler", "lcm")
            kwargs.setdefault("steps", int(meta.get("distillation", {}).get("max_steps", 4)))
        if meta.get("distillation") is not None:
            kwargs["distillation"] = meta["distillation"]
        if isinstance(pipe, ClassConditionalPipeline):
            if kwargs.get("class_names") is None:
                kwargs["class_names"] = meta.get("class_names")
        elif kwargs.get("prompts") is None and meta.get("prompts") is not None:
            for key in ("prompts", "class_names", "negative_prompt"):
                kwargs[key] = kwargs.get(key) or meta.get(key)
        return cls(pipe, model_id=kwargs.pop("model_id", name), **kwargs)

    # ------------------------------------------------------------------ contract
    def _own_config(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "guidance_scale": self.guidance_scale,
            "prompts": self.prompts,
            "negative_prompt": self.negative_prompt,
            "dtype": str(self.dtype),
            "num_classes": self.num_classes,
            # Only when adapted: the hashes of every unadapted generator stay as they were.
            **({"adapter": self._adapter_key} if self._adapter_key is not None else {}),
            **({"lcm_lora": self._lcm_lora_key} if self._lcm_lora_key is not None else {}),
            **(
                {"distillation": dict(self.distillation.settings)}
                if self.distillation is not None
                else {}
            ),
        }

    def save_pretrained(self, folder: str | os.PathLike[str], **meta: Any) -> Path:
        """See :meth:`DiffusersGenerator.save_pretrained`; an adapted generator is not
        saved (its base model and adapter folder already are).

        Raises:
            ValueError: If the generator was loaded with an adapter.
        """
        if self.adapter is not None:
            raise ValueError(
                "an adapted generator is its base model plus its adapter folder; keep both "
                "and load it with DiffusionGenerator.from_pretrained(base, adapter=folder)"
            )
        return super().save_pretrained(folder, **meta)

    def _metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"class_names": self.class_names}
        if self.distillation is not None:
            meta["distillation"] = dict(self.distillation.settings)
        if self.mode == "text":
            meta.update(prompts=self.prompts, negative_prompt=self.negative_prompt)
        return meta

    def generate(
        self,
        labels: torch.Tensor | Sequence[int],
        seeds: Sequence[int],
        *,
        source: torch.Tensor | None = None,
        strength: StrengthLike = 0.5,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Generate one image per ``(label, seed)``, from noise or from a source image.

        A sample depends only on the model, the config, its label, its seed (and its
        source): initial noise comes from a CPU ``torch.Generator`` seeded per sample.

        Args:
            labels: Class labels ``(B,)``.
            seeds: One seed per label.
            source: Optional images ``(B, C, H, W)`` in [0, 1] (or uint8) to vary
                (SDEdit): each is noised to its strength and denoised towards its label.
            strength: With ``source``: a float in [0, 1] or a ``(min, max)`` range drawn
                per sample from its seed. 0 returns the source (up to the VAE round trip
                of latent models), 1 ignores it.
            latents: Optional starting noise ``(B, ...)``, e.g. from :meth:`invert`.

        Returns:
            float32 ``(B, C, H, W)`` in [0, 1] on :attr:`device`.
        """
        labels = as_labels(labels, self.num_classes)
        seeds = as_seeds(seeds, len(labels))
        if len(labels) == 0:
            return torch.empty(0, *self.image_shape, device=self.device)
        if source is not None and latents is not None:
            raise ValueError(
                "pass either source= (image-to-image) or latents= (e.g. inverted noise), not both"
            )
        if source is None:
            per_sample = [1.0] * len(labels)
            encoded = None
        else:
            encoded = self.encode(check_source(source, self.image_shape, len(labels)))
            per_sample = sample_strengths(strength, seeds)
        # Samples whose strength skips the same number of sampler steps run together.
        skipped = [min(int(self.steps * s), self.steps) for s in per_sample]
        out = torch.empty(len(labels), *self.image_shape, device=self.device)
        for k in sorted(set(skipped)):
            group = [i for i, v in enumerate(skipped) if v == k]
            for chunk in self._chunks(len(group)):
                idx = group[chunk]
                out[idx] = self._generate_chunk(
                    labels[idx],
                    [seeds[i] for i in idx],
                    k / self.steps,
                    None if encoded is None else encoded[idx],
                    None if latents is None else latents[idx],
                ).float()
        return out.clamp_(0, 1)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the denoiser's space (scaled VAE latents for latent models).

        For latent models the encoding goes through :attr:`latent_cache`, so each real
        image passes the VAE encoder once, however many epochs vary it.
        """
        vae = getattr(self.pipeline, "vae", None)
        if vae is None:
            return cast(torch.Tensor, self.pipeline.encode_images(images))
        if self.latent_cache is None:
            self.latent_cache = LatentCache.for_module(vae, max_items=100_000)

        def encode(x: torch.Tensor) -> torch.Tensor:
            x = x.to(self.device, vae.dtype) * 2 - 1
            return cast(torch.Tensor, vae.encode(x).latent_dist.mode() * vae.config.scaling_factor)

        return self.latent_cache.get_or_encode(images, encode).to(self.device, vae.dtype)

    def _generate_chunk(
        self,
        labels: torch.Tensor,
        seeds: list[int],
        strength: float,
        encoded: torch.Tensor | None,
        latents: torch.Tensor | None,
    ) -> torch.Tensor:
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        common: dict[str, Any] = dict(
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            generator=gens,
            output_type="pt",
        )
        if self.mode == "class":
            return _run(
                self.pipeline,
                labels,
                latents=latents,
                image_latents=encoded,
                strength=strength,
                **common,
            )
        positive, negative = self._prompt_embeddings(labels.tolist(), seeds)
        common.update(prompt_embeds=positive, negative_prompt_embeds=negative)
        if encoded is not None and strength < 1:
            if strength == 0:  # diffusers' img2img needs at least one step
                with torch.inference_mode():
                    vae = self.pipeline.vae
                    decoded = vae.decode(encoded / vae.config.scaling_factor).sample
                    return cast(torch.Tensor, (decoded / 2 + 0.5).clamp(0, 1))
            # 4-channel inputs are taken as latents by the img2img pipeline.
            return _run(self._img2img_pipeline(), image=encoded, strength=strength, **common)
        _, height, width = self.image_shape
        return _run(self.pipeline, height=height, width=width, latents=latents, **common)

    def _img2img_pipeline(self) -> DiffusionPipeline:
        """The image-to-image variant of the text pipeline, sharing its modules."""
        if self._img2img is None:
            from diffusers import AutoPipelineForImage2Image

            self._img2img = cast(
                DiffusionPipeline, AutoPipelineForImage2Image.from_pipe(self.pipeline)
            )
            self._img2img.set_progress_bar_config(disable=True)
        self._img2img.scheduler = self.pipeline.scheduler
        return self._img2img

    @torch.inference_mode()
    def invert(
        self,
        source: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        guidance_scale: float = 1.0,
    ) -> torch.Tensor:
        """Deterministic DDIM inversion: the noise that DDIM maps back to ``source``.

        Regenerate from it with ``generate(labels, seeds, latents=noise)`` using the
        ``ddim`` sampler, with the same label to reconstruct the source or with another
        label, prompt or guidance scale for a controlled change.

        Args:
            source: Images ``(B, C, H, W)`` in [0, 1].
            labels: The class each source is conditioned on during inversion.
            guidance_scale: Guidance during inversion; 1 (none) inverts most faithfully.

        Returns:
            Noise latents ``(B, ...)`` on :attr:`device`.
        """
        return ddim_invert(self, source, labels, guidance_scale)

    def _prompt_embeddings(self, labels: list[int], seeds: list[int]) -> PromptEmbeddings:
        """Text mode: the embeddings of each sample's prompt (picked by its seed)."""
        assert self._prompt_encoder is not None
        return self._prompt_encoder(self.pipeline, self.device, labels, seeds, self.negative_prompt)

    def __repr__(self) -> str:
        return (
            f"DiffusionGenerator(model={self.model_id!r}, mode={self.mode}, "
            f"sampler={self.sampler}, steps={self.steps}, guidance={self.guidance_scale}, "
            f"classes={self.num_classes}, image_shape={self.image_shape}, device={self.device})"
        )
