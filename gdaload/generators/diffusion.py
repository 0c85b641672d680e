"""``DiffusionGenerator``: the :class:`~gdaload.Generator` contract over diffusers pipelines.

Two modes:

* **class**: a class-conditional denoiser (``UNet2DModel`` with class embeddings or a
  DiT), sampled by :class:`~gdaload.generators.pipeline.ClassConditionalPipeline`.
* **text**: a Stable-Diffusion-family text-to-image pipeline driven by per-class prompts,
  whose embeddings are encoded once per prompt and cached.
"""

from __future__ import annotations

import inspect
import json
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from gdaload.cache.latents import LatentCache
from gdaload.fingerprint import modules_fingerprint
from gdaload.generators.base import (
    ImageConditionedGenerator,
    StrengthLike,
    as_labels,
    as_seeds,
    check_source,
    sample_strengths,
)
from gdaload.generators.pipeline import GDALOAD_META, ClassConditionalPipeline
from gdaload.generators.samplers import SAMPLERS, make_scheduler
from gdaload.seeding import Stream, derive_rng

__all__ = ["DiffusionGenerator", "ModelNotAvailableError", "PromptsLike"]


#: Per-class prompts: a template with ``{name}``, a list of prompt lists (one per class),
#: a mapping class name -> prompts, or a path to a JSON file holding such a mapping.
PromptsLike = str | os.PathLike | Sequence[Sequence[str]] | Mapping[str, Sequence[str]]


class ModelNotAvailableError(OSError):
    """Weights are neither in a local folder nor reachable on the hub."""


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint answers a TCP connect within ``timeout`` seconds.

    Checked before a download so that an offline machine fails in seconds instead of
    waiting on the hub client's retries.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _not_available(model: str, cause: BaseException | None = None) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"cannot load diffusion model {model!r}: it is not a local folder, not in the local "
        "hub cache, and the hub cannot be reached. Download it on a machine with network "
        "access (e.g. DiffusionPipeline.download or `hf download "
        f"{model}`) and pass the folder: DiffusionGenerator.from_pretrained('/path/to/folder')"
        + (f" [{type(cause).__name__}: {cause}]" if cause else "")
    )


def _resolve_prompts(prompts: PromptsLike, class_names: Sequence[str] | None) -> list[list[str]]:
    if isinstance(prompts, (str, os.PathLike)) and Path(prompts).suffix == ".json":
        path = Path(prompts)
        if not path.is_file():
            raise FileNotFoundError(f"prompt file {path} does not exist")
        prompts = json.loads(path.read_text())
    if isinstance(prompts, str):
        if "{name}" not in prompts:
            raise ValueError(f"a prompt template must contain '{{name}}', got {prompts!r}")
        if not class_names:
            raise ValueError("a prompt template needs class_names=[...] to fill '{name}'")
        return [[prompts.format(name=n)] for n in class_names]
    if isinstance(prompts, Mapping):
        names = list(class_names) if class_names else list(prompts)
        missing = [n for n in names if n not in prompts]
        if missing:
            raise ValueError(f"prompts have no entry for classes {missing}; add one per class")
        prompts = [prompts[n] for n in names]
    out = [[p] if isinstance(p, str) else list(p) for p in prompts]
    if class_names is not None and len(out) != len(class_names):
        raise ValueError(f"got prompts for {len(out)} classes but {len(class_names)} class_names")
    empty = [i for i, p in enumerate(out) if not p]
    if empty:
        raise ValueError(f"classes {empty} have no prompt; give at least one per class")
    return out


class DiffusionGenerator(ImageConditionedGenerator):
    """Generate training images with a diffusers model, one ``torch.Generator`` per sample.

    Args:
        pipeline: A :class:`ClassConditionalPipeline` (class mode) or a text-to-image
            pipeline with ``encode_prompt`` such as ``StableDiffusionPipeline`` (text mode).
        sampler: One of ``ddim``, ``dpm-solver++``, ``unipc``, ``euler``, ``ddpm``.
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

    Example:
        >>> gen = DiffusionGenerator.from_pretrained("path/to/model", sampler="dpm-solver++",
        ...                                          steps=20)  # doctest: +SKIP
        >>> images = gen.generate(torch.tensor([0, 3]), seeds=[11, 12])  # doctest: +SKIP
        >>> images.shape, images.min() >= 0, images.max() <= 1  # doctest: +SKIP
        (torch.Size([2, 1, 8, 8]), tensor(True), tensor(True))
    """

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
    ) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; valid samplers are {sorted(SAMPLERS)}")
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not guidance_scale >= 0:
            raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
        if int(max_batch_size) < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # Cast only when asked: diffusers warns about casting modules it keeps in float32.
        self.pipeline = (
            pipeline.to(self._device) if dtype is None else pipeline.to(self._device, dtype)
        )
        self.dtype = self.pipeline.dtype
        self.pipeline.set_progress_bar_config(disable=True)
        # Freshly built modules are in training mode; DiT's label dropout would then drop
        # classes at random (from the global RNG) during generation.
        for component in self.pipeline.components.values():
            if isinstance(component, torch.nn.Module):
                component.eval()
        self.sampler, self.steps = sampler, int(steps)
        self.guidance_scale = float(guidance_scale)
        self.max_batch_size = int(max_batch_size)
        self.negative_prompt = negative_prompt
        self.model_id = (
            model_id or getattr(pipeline, "name_or_path", None) or type(pipeline).__name__
        )
        self.pipeline.scheduler = make_scheduler(sampler, pipeline.scheduler)
        self._img2img: DiffusionPipeline | None = None
        self.latent_cache = latent_cache
        self._prompt_cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor | None]] = {}

        if isinstance(pipeline, ClassConditionalPipeline):
            self.mode = "class"
            if prompts is not None:
                raise ValueError(
                    "prompts are for text-to-image pipelines; this model is "
                    "class-conditional, pass class_names only"
                )
            self.num_classes = pipeline.num_classes
            self.image_shape = pipeline.image_shape
            self.prompts: list[list[str]] | None = None
        elif hasattr(pipeline, "encode_prompt"):
            self.mode = "text"
            if prompts is None:
                raise ValueError(
                    "a text-to-image model needs prompts=: a template such as "
                    "'a photo of a {name}' with class_names, or prompts per class"
                )
            self.prompts = _resolve_prompts(prompts, class_names)
            self.num_classes = len(self.prompts)
            factor = getattr(pipeline, "vae_scale_factor", 8)
            size = pipeline.unet.config.sample_size * factor
            self.image_shape = (3, size, size)
        else:
            raise TypeError(
                f"{type(pipeline).__name__} is not supported: use ClassConditionalPipeline "
                "(class-conditional UNet2DModel/DiT) or a Stable-Diffusion-family pipeline"
            )
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(
                f"the model has {self.num_classes} classes but {len(class_names)} "
                "class_names were given"
            )
        self.class_names = (
            list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_components(
        cls,
        denoiser: torch.nn.Module,
        scheduler: SchedulerMixin,
        vae: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> DiffusionGenerator:
        """Build a class-conditional generator from a denoiser, its training scheduler and
        an optional VAE. ``kwargs`` go to the constructor."""
        return cls(ClassConditionalPipeline(unet=denoiser, scheduler=scheduler, vae=vae), **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike,
        *,
        local_files_only: bool | None = None,
        torch_dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> DiffusionGenerator:
        """Load a saved pipeline folder or hub id through diffusers' ``from_pretrained``.

        A folder written by :func:`gdaload.train_generator` (or any
        ``ClassConditionalPipeline.save_pretrained``) loads in class mode; any other
        diffusers text-to-image pipeline loads in text mode and needs ``prompts=``.

        Raises:
            ModelNotAvailableError: Within seconds when the weights are not local and the
                hub cannot be reached; the message says how to pass a local folder.
        """
        name = os.fspath(model)
        path = Path(name)
        if path.exists() and not (path / "model_index.json").is_file():
            raise ModelNotAvailableError(
                f"{path} has no model_index.json; save the model with "
                "pipeline.save_pretrained(folder) or gdaload train-generator"
            )
        if not path.exists() and (
            path.is_absolute() or name.startswith(".") or name.count("/") > 1
        ):
            raise ModelNotAvailableError(
                f"model folder {name} does not exist; pass the folder written by "
                "save_pretrained or `gdaload train-generator --output FOLDER`"
            )
        if not path.exists():
            if local_files_only is None:
                local_files_only = not _hub_reachable()
            try:
                path = Path(DiffusionPipeline.download(name, local_files_only=local_files_only))
            except Exception as err:  # the hub client raises many types for "not there"
                raise _not_available(name, err) from err
        index = json.loads((path / "model_index.json").read_text())
        load_kwargs: dict[str, Any] = {"torch_dtype": torch_dtype} if torch_dtype else {}
        if index.get("_class_name") == ClassConditionalPipeline.__name__:
            pipe = ClassConditionalPipeline.from_pretrained(path, **load_kwargs)
            meta = path / GDALOAD_META
            if kwargs.get("class_names") is None and meta.is_file():
                kwargs["class_names"] = json.loads(meta.read_text()).get("class_names")
        else:
            if "safety_checker" in index:
                # Training data is not user-facing output; the checker would blank images.
                load_kwargs.update(safety_checker=None, requires_safety_checker=False)
            pipe = DiffusionPipeline.from_pretrained(path, **load_kwargs)
        return cls(pipe, model_id=kwargs.pop("model_id", name), **kwargs)

    # ------------------------------------------------------------------ contract
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def config(self) -> dict[str, Any]:
        return {
            "kind": "diffusion",
            "model": self.model_id,
            "weights": self.weights_fingerprint(),
            "mode": self.mode,
            "sampler": self.sampler,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "prompts": self.prompts,
            "negative_prompt": self.negative_prompt,
            "dtype": str(self.dtype),
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
        }

    def weights_fingerprint(self) -> str:
        """Fingerprint of every weight of the pipeline's modules.

        Two folders holding the same name but different weights (a retrained model) must
        not share cached samples.
        """
        return modules_fingerprint(
            (name, component)
            for name, component in sorted(self.pipeline.components.items())
            if isinstance(component, torch.nn.Module)
        )

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
            for start in range(0, len(group), self.max_batch_size):
                idx = group[start : start + self.max_batch_size]
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
            return self.pipeline.encode_images(images)
        if self.latent_cache is None:
            self.latent_cache = LatentCache.for_module(vae, max_items=100_000)

        def encode(x: torch.Tensor) -> torch.Tensor:
            x = x.to(self.device, vae.dtype) * 2 - 1
            return vae.encode(x).latent_dist.mode() * vae.config.scaling_factor

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
            return self.pipeline(
                labels, latents=latents, image_latents=encoded, strength=strength, **common
            ).images
        positive, negative = self._prompt_embeddings(labels.tolist(), seeds)
        common.update(prompt_embeds=positive, negative_prompt_embeds=negative)
        if encoded is not None and strength < 1:
            if strength == 0:  # diffusers' img2img needs at least one step
                with torch.inference_mode():
                    vae = self.pipeline.vae
                    return (vae.decode(encoded / vae.config.scaling_factor).sample / 2 + 0.5).clamp(
                        0, 1
                    )
            # 4-channel inputs are taken as latents by the img2img pipeline.
            return self._img2img_pipeline()(image=encoded, strength=strength, **common).images
        _, height, width = self.image_shape
        return self.pipeline(height=height, width=width, latents=latents, **common).images

    def _img2img_pipeline(self) -> DiffusionPipeline:
        """The image-to-image variant of the text pipeline, sharing its modules."""
        if self._img2img is None:
            from diffusers import AutoPipelineForImage2Image

            self._img2img = AutoPipelineForImage2Image.from_pipe(self.pipeline)
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
        from diffusers import DDIMInverseScheduler

        labels = as_labels(labels, self.num_classes)
        x = self.encode(check_source(source, self.image_shape, len(labels)))
        # Pass only DDIM's own settings: the sampler's extras (e.g. algorithm_type) do not apply.
        accepted = inspect.signature(DDIMInverseScheduler.__init__).parameters
        config = {k: v for k, v in self.pipeline.scheduler.config.items() if k in accepted}
        # The inverse scheduler knows no "linspace" spacing; "trailing" is its closest match.
        if config.get("timestep_spacing") not in ("leading", "trailing"):
            config["timestep_spacing"] = "trailing"
        inverse = DDIMInverseScheduler.from_config(config)
        inverse.set_timesteps(self.steps, device=self.device)
        if self.mode == "class":

            def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return self.pipeline.eps(x, t, labels.to(self.device), guidance_scale)
        else:
            positive, negative = self._prompt_embeddings(labels.tolist(), [0] * len(labels))

            def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                unet = self.pipeline.unet
                if guidance_scale == 1.0:
                    return unet(x, t, encoder_hidden_states=positive).sample
                e_u, e_c = unet(
                    torch.cat([x, x]), t, encoder_hidden_states=torch.cat([negative, positive])
                ).sample.chunk(2)
                return e_u + guidance_scale * (e_c - e_u)

        for t in inverse.timesteps:
            x = inverse.step(eps(x, t), t, x).prev_sample
        return x

    def _prompt_embeddings(
        self, labels: list[int], seeds: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embeddings of each sample's prompt; the prompt among a class's list is picked
        from the sample's seed, and each distinct prompt is encoded only once."""
        assert self.prompts is not None
        positive, negative = [], []
        for label, seed in zip(labels, seeds, strict=True):
            choices = self.prompts[label]
            index = (
                int(derive_rng(seed, Stream.PROMPT_CHOICE).integers(len(choices)))
                if len(choices) > 1
                else 0
            )
            key = (label, index)
            if key not in self._prompt_cache:
                self._prompt_cache[key] = self.pipeline.encode_prompt(
                    choices[index], self.device, 1, True, negative_prompt=self.negative_prompt
                )
            pos, neg = self._prompt_cache[key]
            positive.append(pos)
            negative.append(neg)
        return torch.cat(positive), torch.cat(negative)

    def __repr__(self) -> str:
        return (
            f"DiffusionGenerator(model={self.model_id!r}, mode={self.mode}, "
            f"sampler={self.sampler}, steps={self.steps}, guidance={self.guidance_scale}, "
            f"classes={self.num_classes}, image_shape={self.image_shape}, device={self.device})"
        )
