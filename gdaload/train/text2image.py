"""Pretrain a small Stable-Diffusion-architecture text-to-image model from scratch.

No pretrained weights can be downloaded on an offline machine, yet adapting a pretrained
model (:func:`~gdaload.train.adapt.adapt`) is the first step of every competitive
few-shot recipe. This trainer makes the stand-in: a CLIP text encoder over a
character-level tokenizer, a ``UNet2DConditionModel`` with cross-attention and an
``AutoencoderKL``, saved as a ``StableDiffusionPipeline`` folder, so that everything
downstream (``adapt``, ``DiffusionGenerator.from_pretrained``, diffusers' own loaders)
runs the code a real Stable Diffusion folder runs.

Two stages, as latent diffusion is trained: first the VAE (reconstruction error plus a
small KL term; its ``scaling_factor`` is then set so the latents have unit variance, as
Stable Diffusion's 0.18215 does), then, with the VAE frozen, the text encoder and the
UNet together on captions drawn from templates (``"a handwritten {name}"``), empty with
probability ``caption_dropout`` for classifier-free guidance. The noise schedule and
prediction target are Stable Diffusion 1.x's (scaled-linear betas, epsilon).

Every draw comes from ``(seed, stage, step)``, so a run resumed from its checkpoints
ends with the same weights as one straight through.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Sized
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator

# Imported from their modules: under type checking, diffusers' top-level names are its
# placeholder classes for a missing torch, which have none of the real methods.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import (
    StableDiffusionPipeline,
)
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import load_file
from torch.utils.data import Dataset
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from gdaload.data.policies import dataset_labels
from gdaload.generators.metadata import write_metadata
from gdaload.seeding import Stream, derive_seed
from gdaload.train.batches import permuted_batch
from gdaload.train.checkpoints import Checkpoints
from gdaload.train.config import Text2ImageConfig
from gdaload.train.latent_diffusion import (
    Latents,
    TextDenoiser,
    encode_posteriors,
    prompt_ids,
)
from gdaload.train.loop import train_loop

__all__ = ["DIGIT_WORDS", "character_tokenizer", "pretrain_text2image"]

#: Latent channels of the VAE, Stable Diffusion's.
_LATENT_CHANNELS = 4

#: The digits' class names as words, what the stand-in's captions say.
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def character_tokenizer(folder: str | os.PathLike[str], max_length: int = 77) -> CLIPTokenizer:
    """A CLIP BPE tokenizer with a vocabulary of single characters and no merges,
    written to ``folder`` (``vocab.json``, ``merges.txt``).

    Each word becomes its letters, the last one marked as a word's end (``</w>``), as
    CLIP's tokenizer marks them; a small model learns words from letters instead of
    needing CLIP's 49,408-token vocabulary. Tokens added later (textual inversion's
    ``<cat>``) stay whole, as with any CLIP tokenizer.

    Example:
        >>> import tempfile
        >>> tokenizer = character_tokenizer(tempfile.mkdtemp())
        >>> tokenizer.tokenize("a cat")
        ['a</w>', 'c', 'a', 't</w>']
    """
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits + string.punctuation
    tokens = ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)]
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (path / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(path / "vocab.json"), str(path / "merges.txt"), model_max_length=max_length
    )


def _images(
    dataset: Dataset, names: tuple[str, ...] | None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """All images as ``(N, 3, S, S)`` in [0, 1] (grayscale repeated), their labels and
    the class names."""
    if not isinstance(dataset, Sized):
        raise TypeError("the dataset needs a length: pass a map-style dataset")
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty")
    images: list[torch.Tensor] = []
    for i in range(len(dataset)):
        image = dataset[i][0]
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(
                f"item {i}: images must be float tensors (1 or 3, S, S) in [0, 1], got "
                f"{type(image).__name__} {tuple(getattr(image, 'shape', ()))}"
            )
        if images and image.shape != images[0].shape:
            raise ValueError(
                f"item {i} is {tuple(image.shape)}, item 0 {tuple(images[0].shape)}: "
                "all images need one size; resize them first"
            )
        images.append(image.float())
    stacked = torch.stack(images)
    if stacked.min() < 0 or stacked.max() > 1:
        raise ValueError(
            f"images must lie in [0, 1], got values in [{float(stacked.min()):g}, "
            f"{float(stacked.max()):g}]; add v2.ToDtype(torch.float32, scale=True) or divide "
            "by the maximum"
        )
    if stacked.shape[1] == 1:
        stacked = stacked.repeat(1, 3, 1, 1)
    labels = torch.as_tensor(dataset_labels(dataset), dtype=torch.long)
    found = names or getattr(dataset, "classes", None)
    if found is None:
        raise ValueError(
            "the classes need names (they fill the captions): pass class_names=(...) or a "
            "dataset with a 'classes' attribute"
        )
    if labels.min() < 0 or labels.max() >= len(found):
        raise ValueError(
            f"labels must lie in 0..{len(found) - 1} ({len(found)} class names), got "
            f"{int(labels.min())}..{int(labels.max())}"
        )
    return stacked, labels, list(found)


def pretrain_text2image(
    dataset: Dataset,
    output_dir: str | os.PathLike[str],
    config: Text2ImageConfig | None = None,
    **options: Any,
) -> Path:
    """Train a small text-to-image latent diffusion model from scratch and save it as a
    ``StableDiffusionPipeline`` folder.

    Args:
        dataset: ``(image (C, S, S) float in [0, 1], label)`` pairs, C 1 (repeated to RGB)
            or 3, S divisible by the VAE's and the UNet's downsampling,
            ``2 ** (len(ae_widths) - 1) * 2 ** (len(widths) - 1)``.
        output_dir: The pipeline folder; ``output_dir/checkpoints`` holds the checkpoints
            of both stages (delete it before shipping the folder).
        config: The settings; the defaults of :class:`Text2ImageConfig` when None.
        **options: Fields of :class:`Text2ImageConfig`, replacing ``config``'s.

    Returns:
        ``output_dir``: ``StableDiffusionPipeline.from_pretrained``,
        ``DiffusionGenerator.from_pretrained`` (prompts ``"a photo of a {name}"`` by
        default) and :func:`~gdaload.train.adapt.adapt` load it.

    Raises:
        ValueError: On invalid settings or data, or checkpoints made with other settings.
        TypeError: On an option that is not a config field, or a dataset without a length.

    Example:
        >>> from gdaload.datasets.digits import digits_splits
        >>> pool = digits_splits().generator_pool
        >>> pretrain_text2image(pool, "runs/t2i", class_names=DIGIT_WORDS)  # doctest: +SKIP
        >>> DiffusionGenerator.from_pretrained("runs/t2i")  # doctest: +SKIP
    """
    config = Text2ImageConfig.resolve(config, options)
    images, labels, names = _images(dataset, config.class_names)
    size = images.shape[-1]
    # The VAE halves the side at each level but its last, the UNet at each but its last.
    vae_factor = 2 ** (len(config.ae_widths) - 1)
    down = vae_factor * 2 ** (len(config.widths) - 1)
    if images.shape[-2] != size or size % down:
        raise ValueError(
            f"images must be square with a side divisible by {down} (the VAE's and the "
            f"UNet's downsampling), got {images.shape[-2]}x{size}; resize them or use "
            "fewer ae_widths or widths"
        )
    settings = {
        "image": list(images.shape[1:]),
        "images": len(images),
        "classes": names,
        "templates": list(config.templates),
        "caption_dropout": config.caption_dropout,
        "max_length": config.max_length,
        "text_width": config.text_width,
        "text_layers": config.text_layers,
        "ae_widths": list(config.ae_widths),
        "ae_batch_size": config.ae_batch_size,
        "ae_lr": config.ae_lr,
        "kl_weight": config.kl_weight,
        "widths": list(config.widths),
        "batch_size": config.batch_size,
        "lr": config.lr,
        "ema_decay": config.ema_decay,
        "seed": config.seed,
    }
    out = Path(output_dir)
    # Any: mypy reads diffusers' config attributes as a dict's.
    vae: Any
    vae, reconstruction = _train_vae(images, out, config, settings)

    accelerator = Accelerator(cpu=config.cpu)
    latents = encode_posteriors(vae, images, labels, accelerator.device)
    vae.to("cpu")
    tokenizer = character_tokenizer(out / "tokenizer", config.max_length)
    text_encoder, unet = _build_denoiser(
        config, len(tokenizer), vae.config.latent_channels, size // vae_factor
    )
    model = _train_denoiser(
        TextDenoiser(text_encoder, unet),
        latents,
        vae.config.scaling_factor,
        tokenizer,
        names,
        out,
        config,
        settings,
        accelerator,
    )
    if accelerator.is_main_process:
        # Passed as a mapping: diffusers annotates the scheduler as its enum of
        # scheduler names and the optional safety components as required.
        components: dict[str, Any] = {
            "vae": vae,
            "text_encoder": model.text_encoder.to("cpu"),
            "tokenizer": tokenizer,
            "unet": model.unet.to("cpu"),
            "scheduler": _scheduler(),
            "safety_checker": None,
            "feature_extractor": None,
            "requires_safety_checker": False,
        }
        pipe = StableDiffusionPipeline(**components)
        pipe.save_pretrained(out)
        write_metadata(
            out,
            {
                "class_names": names,
                "prompts": [[config.templates[0].format(name=name)] for name in names],
                "training": {
                    **settings,
                    "ae_steps": config.ae_steps,
                    "steps": config.steps,
                    "vae_reconstruction_mse": reconstruction,
                },
            },
        )
    accelerator.wait_for_everyone()
    return out


def _scheduler() -> DDPMScheduler:
    """Stable Diffusion 1.x's noise schedule (samplers are swapped when generating)."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        clip_sample=False,
    )


def _build_vae(config: Text2ImageConfig) -> AutoencoderKL:
    levels = len(config.ae_widths)
    with torch.random.fork_rng(devices=[]):  # weight init only; diffusers takes no generator
        torch.manual_seed(derive_seed(config.seed, Stream.TEXT2IMAGE_AUTOENCODER))
        return AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=_LATENT_CHANNELS,
            block_out_channels=config.ae_widths,
            layers_per_block=1,
            norm_num_groups=8,
            down_block_types=("DownEncoderBlock2D",) * levels,
            up_block_types=("UpDecoderBlock2D",) * levels,
        )


def _build_denoiser(
    config: Text2ImageConfig, vocabulary: int, latent_channels: int, latent_size: int
) -> tuple[CLIPTextModel, UNet2DConditionModel]:
    levels = len(config.widths)
    with torch.random.fork_rng(devices=[]):  # weight init only; diffusers takes no generator
        torch.manual_seed(derive_seed(config.seed, Stream.TEXT2IMAGE_DIFFUSION))
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=vocabulary,
                hidden_size=config.text_width,
                intermediate_size=2 * config.text_width,
                num_hidden_layers=config.text_layers,
                num_attention_heads=4,
                max_position_embeddings=config.max_length,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
                projection_dim=config.text_width,
            )
        )
        # Cross-attention at the finest level, where the class's strokes are drawn; the
        # mid block attends to the text as well.
        unet = UNet2DConditionModel(
            sample_size=latent_size,
            in_channels=latent_channels,
            out_channels=latent_channels,
            layers_per_block=1,
            block_out_channels=config.widths,
            norm_num_groups=8,
            cross_attention_dim=config.text_width,
            attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) + ("DownBlock2D",) * (levels - 1),
            up_block_types=("UpBlock2D",) * (levels - 1) + ("CrossAttnUpBlock2D",),
        )
    return text_encoder, unet


class _VAEObjective(torch.nn.Module):
    """The VAE's loss as its forward pass (what ``accelerate`` prepares and wraps):
    mean squared reconstruction error of a posterior sample plus ``kl_weight`` times the
    KL divergence to the standard normal."""

    def __init__(self, vae: AutoencoderKL, kl_weight: float) -> None:
        super().__init__()
        self.vae: Any = vae
        self.kl_weight = kl_weight

    def forward(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = images * 2 - 1
        posterior = self.vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * noise.to(posterior.mean)
        error = F.mse_loss(self.vae.decode(z).sample, x)
        return error + self.kl_weight * posterior.kl().mean() / z[0].numel()


def _train_vae(
    images: torch.Tensor, out: Path, config: Text2ImageConfig, settings: dict[str, Any]
) -> tuple[Any, float]:
    """Stage 1: the VAE, saved to ``out/vae`` with the scaling factor that gives its
    latents unit variance; returns it and its reconstruction error (the posterior means
    decoded, on [0, 1] images). A finished stage is loaded from there when resuming."""
    folder = out / "vae"
    checkpoints = Checkpoints(out / "checkpoints" / "vae", settings, config.checkpoint_every)
    vae: Any
    if config.resume and (folder / "config.json").is_file() and checkpoints.latest():
        # Rebuilt from its config, not with from_pretrained, which would record this
        # folder in the config the finished pipeline is saved with.
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder))
        vae.load_state_dict(load_file(folder / SAFETENSORS_WEIGHTS_NAME))
        return vae, _reconstruction_mse(vae, images)
    objective = _VAEObjective(_build_vae(config), config.kl_weight)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=config.ae_lr, weight_decay=0.0)
    accelerator = Accelerator(cpu=config.cpu)

    def loss(prepared: torch.nn.Module, step: int) -> torch.Tensor:
        index = permuted_batch(
            len(images),
            config.ae_batch_size,
            config.seed,
            Stream.TEXT2IMAGE_AUTOENCODER,
            step,
            accelerator.process_index,
            accelerator.num_processes,
        )
        seed = derive_seed(config.seed, Stream.TEXT2IMAGE_AUTOENCODER, 1, step)
        x = images[index]
        factor = 2 ** (len(config.ae_widths) - 1)  # the VAE's downsampling
        noise = torch.randn(
            (len(x), _LATENT_CHANNELS, x.shape[-2] // factor, x.shape[-1] // factor),
            generator=torch.Generator().manual_seed(seed),
        )
        return prepared(x.to(accelerator.device), noise.to(accelerator.device))

    raw = train_loop(
        objective,
        optimizer,
        loss,
        accelerator=accelerator,
        steps=config.ae_steps,
        checkpoints=checkpoints,
        resume=config.resume,
        progress=config.progress,
        desc="text-to-image VAE",
    )
    vae = raw.vae.to("cpu").eval()
    with torch.inference_mode():
        means = torch.cat(
            [
                vae.encode(images[i : i + 256] * 2 - 1).latent_dist.mean
                for i in range(0, len(images), 256)
            ]
        )
    vae.register_to_config(scaling_factor=float(1.0 / means.std().clamp_min(1e-6)))
    if accelerator.is_main_process:
        vae.save_pretrained(folder)
    accelerator.wait_for_everyone()
    return vae, _reconstruction_mse(vae, images)


@torch.inference_mode()
def _reconstruction_mse(vae: Any, images: torch.Tensor) -> float:
    """Mean squared error, on [0, 1] pixels, of the images' posterior means decoded."""
    errors = []
    for i in range(0, len(images), 256):
        x = images[i : i + 256]
        z = vae.encode(x * 2 - 1).latent_dist.mean
        errors.append(((vae.decode(z).sample.clamp(-1, 1) + 1) / 2 - x).pow(2).flatten(1).mean(1))
    return float(torch.cat(errors).mean())


def _train_denoiser(
    model: TextDenoiser,
    latents: Latents,
    scaling: float,
    tokenizer: CLIPTokenizer,
    names: list[str],
    out: Path,
    config: Text2ImageConfig,
    settings: dict[str, Any],
    accelerator: Accelerator,
) -> TextDenoiser:
    """Stage 2: the text encoder and the UNet on captioned latents (multiplied by the
    VAE's ``scaling``); returns them holding the moving average of their weights."""
    scheduler: Any = _scheduler()  # Any: diffusers annotates timesteps as IntTensor
    timesteps = scheduler.config.num_train_timesteps
    templates = config.templates
    # Every caption there can be, tokenised once: row (label * T + template), and the
    # empty caption last.
    captions = [t.format(name=name) for name in names for t in templates] + [""]
    ids = prompt_ids(tokenizer, captions)
    empty = len(captions) - 1
    n = len(latents.means)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-2)
    device = accelerator.device

    def loss(prepared: torch.nn.Module, step: int) -> torch.Tensor:
        index = permuted_batch(
            n,
            config.batch_size,
            config.seed,
            Stream.TEXT2IMAGE_DIFFUSION,
            step,
            accelerator.process_index,
            accelerator.num_processes,
        )
        seed = derive_seed(config.seed, Stream.TEXT2IMAGE_DIFFUSION, 1, step)
        draws = torch.Generator().manual_seed(seed)
        clean = latents.sample(index, draws) * scaling
        noise = torch.randn(clean.shape, generator=draws)
        t = torch.randint(0, timesteps, (len(clean),), generator=draws)
        template = torch.randint(0, len(templates), (len(clean),), generator=draws)
        dropped = torch.rand(len(clean), generator=draws) < config.caption_dropout
        rows = torch.where(dropped, empty, latents.labels[index] * len(templates) + template)
        noisy = scheduler.add_noise(clean, noise, t)
        pred = prepared(noisy.to(device), t.to(device), ids[rows].to(device))
        return F.mse_loss(pred.float(), noise.to(device))

    return train_loop(
        model,
        optimizer,
        loss,
        accelerator=accelerator,
        steps=config.steps,
        checkpoints=Checkpoints(
            out / "checkpoints" / "denoiser", settings, config.checkpoint_every
        ),
        resume=config.resume,
        ema_decay=config.ema_decay,
        progress=config.progress,
        desc="text-to-image denoiser",
    )
