"""Adapt a pretrained text-to-image model to a user's classes: textual inversion or LoRA.

Few-shot generative augmentation starts from a pretrained model taught the user's
classes, not from a model trained from scratch: DA-Fusion learns one token per class
(textual inversion), Diff-Mix and DataDream add LoRA layers. Both follow diffusers'
training recipes:

* **textual inversion**: one new token per class is added to the tokenizer, the text
  encoder's input embeddings grow by as many rows, each initialised from a word (the
  class name by default), and only those rows are trained.
* **LoRA**: the same per-class tokens, kept at their initial embeddings, name the
  classes in the prompts; LoRA layers are added to the UNet's attention projections
  (``unet.add_adapter(LoraConfig(...))``), and optionally to the text encoder's, and
  trained DreamBooth-style, optionally with prior preservation: images of each class
  made by the base model are trained on beside the user's, so that the model keeps its
  idea of the class.

Both minimise the noise-prediction error of the frozen model on the user's images
(the target follows the scheduler's ``prediction_type``: the noise or the velocity).
Every image is passed through the VAE once; each step samples its latents from the
stored posterior with the step's seeded generator, so a resumed run draws what a run
straight through draws and ends with the same weights.

The adapter folder is written with diffusers' own formats and read back by
:meth:`gdaload.DiffusionGenerator.from_pretrained` (``adapter=``), see
:mod:`gdaload.generators.adapter`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers.training_utils import cast_training_params
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from gdaload.datasets.folder import ClassImageFolder
from gdaload.generators.adapter import (
    EMBEDS_FILE,
    LORA_FILE,
    Adapter,
    base_fingerprint,
    check_text_pipeline_folder,
)
from gdaload.generators.hub import load_pipeline
from gdaload.metrics.plots import loss_curve
from gdaload.seeding import Stream, derive_seed
from gdaload.train.batches import permuted_batch
from gdaload.train.checkpoints import Checkpoints
from gdaload.train.config import AdaptConfig
from gdaload.train.latent_diffusion import Latents, TextDenoiser, encode_posteriors, prompt_ids
from gdaload.train.loop import train_loop

__all__ = ["LOSS_CURVE", "SUMMARY_FILE", "AdaptResult", "adapt"]

#: The run's summary in the adapter folder: steps, seconds, losses.
SUMMARY_FILE = "summary.json"
#: The loss curve in the adapter folder.
LOSS_CURVE = "loss.png"
_LOSSES_FILE = "losses.json"
_PRIOR_FILE = "prior.safetensors"
_UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
_TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


@dataclass(frozen=True)
class AdaptResult:
    """What :func:`adapt` made.

    Attributes:
        folder: The adapter folder (``DiffusionGenerator.from_pretrained(base, adapter=folder)``).
        adapter: Its metadata.
        losses: The loss of every step, from the first (also of steps done before a resume).
        seconds: Wall-clock seconds of this call.
        resumed_from: The step this call resumed from (0 for a fresh run).
        loss_curve: The PNG of the loss curve.

    Example:
        >>> result = adapt("sd-folder", "my-images", "my-adapter", steps=500)  # doctest: +SKIP
        >>> result.adapter.tokens, result.losses[-1]  # doctest: +SKIP
        (['<cat>', '<dog>'], 0.12)
    """

    folder: Path
    adapter: Adapter
    losses: list[float]
    seconds: float
    resumed_from: int
    loss_curve: Path


def _training_data(
    data: Dataset | str | os.PathLike[str], resolution: int, config: AdaptConfig
) -> tuple[list[torch.Tensor], list[int], list[str]]:
    """Images ``(3, S, S)`` in [0, 1], labels and class names of the user's data."""
    if isinstance(data, (str, os.PathLike)):
        data = ClassImageFolder(data, size=resolution)
    if not isinstance(data, Sized):
        raise TypeError("the dataset needs a length: pass a map-style dataset or an image folder")
    n = len(data)
    if n == 0:
        raise ValueError("the training dataset is empty")
    images, labels = [], []
    for i in range(n):
        image, label = data[i]
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(
                f"item {i}: images must be RGB tensors (3, H, W) in [0, 1], got "
                f"{type(image).__name__} {tuple(getattr(image, 'shape', ()))}"
            )
        if tuple(image.shape[1:]) != (resolution, resolution):
            raise ValueError(
                f"item {i} is {image.shape[2]}x{image.shape[1]}, not {resolution}x{resolution}; "
                "resize the dataset's images or pass an image folder (resized for you)"
            )
        images.append(image.float())
        labels.append(int(label))
    names = config.class_names or getattr(data, "classes", None)
    if names is None:
        raise ValueError(
            "the classes need names (they fill the prompts): pass class_names=[...] "
            "or a dataset with a 'classes' attribute"
        )
    names = list(names)
    if min(labels) < 0 or max(labels) >= len(names):
        raise ValueError(
            f"labels must lie in 0..{len(names) - 1} ({len(names)} class names), "
            f"got {min(labels)}..{max(labels)}"
        )
    empty = [name for label, name in enumerate(names) if label not in labels]
    if empty:
        raise ValueError(f"the classes {empty} have no image; every class needs at least one")
    return images, labels, names


def _add_tokens(pipe: Any, names: list[str], config: AdaptConfig) -> tuple[list[str], list[int]]:
    """Add one token per class, its embedding the mean of its initial word's tokens'."""
    tokenizer, text_encoder = pipe.tokenizer, pipe.text_encoder
    tokens = [config.token(name) for name in names]
    repeated = sorted({t for t in tokens if tokens.count(t) > 1})
    if repeated:
        raise ValueError(f"two classes would share the tokens {repeated}; rename a class")
    vocabulary = tokenizer.get_vocab()
    taken = [t for t in tokens if t in vocabulary]
    if taken:
        raise ValueError(
            f"the tokens {taken} already exist in the tokenizer; choose another "
            "token_format (--token-format), e.g. '<gda-{name}>'"
        )
    init_ids = []
    for name in names:
        word = config.init_word or name
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if not ids:
            raise ValueError(f"the initial word {word!r} has no tokens")
        init_ids.append(ids)
    tokenizer.add_tokens(tokens)
    # The new rows are set below; fork_rng keeps their throwaway initial draw off the
    # caller's global random state.
    with torch.random.fork_rng(devices=[]):
        text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    token_ids = tokenizer.convert_tokens_to_ids(tokens)
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for token_id, ids in zip(token_ids, init_ids, strict=True):
            weight[token_id] = weight[ids].mean(0)
    return tokens, list(token_ids)


def _add_lora(pipe: Any, config: AdaptConfig) -> None:
    """LoRA layers on the UNet's (and maybe the text encoder's) attention projections,
    their initial weights drawn from the run's seed."""
    from peft import LoraConfig

    with torch.random.fork_rng(devices=[]):  # peft's initialisation takes no generator
        torch.manual_seed(derive_seed(config.seed, Stream.ADAPT_LORA_INIT))
        pipe.unet.add_adapter(
            LoraConfig(
                r=config.rank,
                lora_alpha=config.rank,
                init_lora_weights="gaussian",
                target_modules=_UNET_TARGETS,
            )
        )
        if config.train_text_encoder:
            text_config = LoraConfig(
                r=config.rank,
                lora_alpha=config.rank,
                init_lora_weights="gaussian",
                target_modules=_TEXT_TARGETS,
            )
            try:
                pipe.text_encoder.add_adapter(text_config)
            except ValueError as err:  # transformers refuses a peft it does not support
                raise ValueError(
                    f"LoRA on the text encoder goes through transformers, which refused: {err}. "
                    "Upgrade peft, or adapt without train_text_encoder"
                ) from err


def _save_weights(
    folder: Path, model: TextDenoiser, tokens: list[str], token_ids: list[int], lora: bool
) -> None:
    """The adapter's weight files: token embeddings, and LoRA layers through diffusers."""
    folder.mkdir(parents=True, exist_ok=True)
    weight = model.text_encoder.get_input_embeddings().weight
    embeds = {
        token: weight[token_id].detach().float().cpu().clone()
        for token, token_id in zip(tokens, token_ids, strict=True)
    }
    save_file(embeds, folder / EMBEDS_FILE)
    if lora:
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import (
            StableDiffusionPipeline,
        )
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        def layers(module: Any) -> dict[str, Any]:
            state = convert_state_dict_to_diffusers(get_peft_model_state_dict(module))
            return {k: v.detach().float().cpu().contiguous() for k, v in state.items()}

        text_encoder = model.text_encoder
        text: dict[str, Any] = {}
        if getattr(text_encoder, "peft_config", None):
            text = {
                "text_encoder_lora_layers": layers(text_encoder),
                "text_encoder_lora_adapter_metadata": text_encoder.peft_config["default"].to_dict(),
            }
        StableDiffusionPipeline.save_lora_weights(
            folder,
            unet_lora_layers=layers(model.unet),
            weight_name=LORA_FILE,
            unet_lora_adapter_metadata=model.unet.peft_config["default"].to_dict(),
            **text,
        )


def _load_weights(
    folder: Path, model: TextDenoiser, tokens: list[str], token_ids: list[int], lora: bool
) -> None:
    """Put the weights :func:`_save_weights` wrote back into ``model``."""
    embeds = load_file(folder / EMBEDS_FILE)
    weight = model.text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for token, token_id in zip(tokens, token_ids, strict=True):
            weight[token_id] = embeds[token].to(weight)
    if lora:
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import (
            StableDiffusionPipeline,
        )
        from diffusers.training_utils import _set_state_dict_into_text_encoder
        from diffusers.utils import convert_unet_state_dict_to_peft
        from peft.utils import set_peft_model_state_dict

        state, _ = StableDiffusionPipeline.lora_state_dict(str(folder), weight_name=LORA_FILE)
        unet_state = {k[len("unet.") :]: v for k, v in state.items() if k.startswith("unet.")}
        set_peft_model_state_dict(
            model.unet, convert_unet_state_dict_to_peft(unet_state), adapter_name="default"
        )
        if getattr(model.text_encoder, "peft_config", None):
            _set_state_dict_into_text_encoder(state, "text_encoder.", model.text_encoder)


def adapt(
    pipeline: str | os.PathLike[str],
    data: Dataset | str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: AdaptConfig | None = None,
    **options: Any,
) -> AdaptResult:
    """Adapt the pretrained text-to-image model in ``pipeline`` to the classes of ``data``.

    Args:
        pipeline: A local Stable-Diffusion-family pipeline folder (1.x/2.x).
        data: An image folder with one sub-folder per class (resized to the resolution),
            or a map-style dataset of ``(image (3, S, S) float in [0, 1], label)`` pairs
            at the resolution, with ``classes`` or ``class_names=``.
        out: The adapter folder; ``out/checkpoints`` holds checkpoints for resuming.
        config: The settings; the defaults of :class:`AdaptConfig` when None.
        **options: Fields of :class:`AdaptConfig`, replacing ``config``'s.

    Returns:
        The :class:`AdaptResult`; ``out`` holds the adapter, ``summary.json`` and
        ``loss.png``.

    Raises:
        ValueError: On a folder that is not a text-to-image pipeline, a class folder
            without images, a token already in the tokenizer, invalid settings, or
            checkpoints made with other settings.
        TypeError: On an option that is not a config field.

    Example:
        >>> result = adapt("stable-diffusion-v1-5", "my-images", "my-adapter",
        ...                method="textual-inversion", steps=1000)  # doctest: +SKIP
        >>> gen = DiffusionGenerator.from_pretrained(
        ...     "stable-diffusion-v1-5", adapter="my-adapter")  # doctest: +SKIP
    """
    started = time.perf_counter()
    config = AdaptConfig.resolve(config, options)
    base = check_text_pipeline_folder(pipeline)
    pipe: Any = load_pipeline(base)
    scheduler = pipe.scheduler
    prediction = scheduler.config.prediction_type
    if prediction not in ("epsilon", "v_prediction"):
        raise ValueError(
            f"the scheduler predicts {prediction!r}; adapting supports epsilon and v_prediction"
        )
    resolution = config.resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
    images, labels, names = _training_data(data, resolution, config)
    tokens, token_ids = _add_tokens(pipe, names, config)
    lora = config.method == "lora"
    template = config.prompt_template
    base_print = base_fingerprint(base)
    settings = {
        "method": config.method,
        "classes": names,
        "tokens": tokens,
        "init_word": config.init_word,
        "prompt": template,
        "rank": config.rank if lora else None,
        "train_text_encoder": config.train_text_encoder,
        "prior_images": config.prior_images,
        "prior_prompt": config.prior_prompt if config.prior_images else None,
        "prior_loss_weight": config.prior_loss_weight if config.prior_images else None,
        "prior_sampling_steps": config.prior_sampling_steps if config.prior_images else None,
        "resolution": resolution,
        "images": len(images),
        "batch_size": config.batch_size,
        "lr": config.lr,
        "seed": config.seed,
        "base": base_print,
    }
    out_dir = Path(out)
    checkpoints = Checkpoints(out_dir / "checkpoints", settings, config.checkpoint_every)
    latest = checkpoints.latest() if config.resume else None
    resumed_from = int(latest.name.split("-")[-1]) if latest is not None else 0

    accelerator = Accelerator(cpu=config.cpu)
    device = accelerator.device
    for module in (pipe.vae, pipe.unet, pipe.text_encoder):
        module.requires_grad_(False)
    instances = encode_posteriors(pipe.vae, images, labels, device)
    prior = None
    if config.prior_images:
        kept = out_dir / "checkpoints" / _PRIOR_FILE
        prior = _prior(pipe, names, config, resolution, device, kept if latest else None)
        if latest is None and accelerator.is_main_process:
            kept.parent.mkdir(parents=True, exist_ok=True)
            save_file(prior.named(), kept)
    pipe.vae.to("cpu")
    if lora:
        _add_lora(pipe, config)
    instance_ids = prompt_ids(
        pipe.tokenizer,
        [template.format(token=t, name=n) for t, n in zip(tokens, names, strict=True)],
    )
    prior_ids = prompt_ids(pipe.tokenizer, [config.prior_prompt.format(name=n) for n in names])

    model = TextDenoiser(pipe.text_encoder, pipe.unet)
    groups: list[dict[str, Any]] = []
    if lora:
        trained = [p for p in model.parameters() if p.requires_grad]
        groups.append({"params": trained, "weight_decay": 1e-2})
    else:
        embedding = model.text_encoder.get_input_embeddings().weight
        embedding.requires_grad_(True)
        # Only the new rows learn: the others' gradients are zeroed, and with no weight
        # decay AdamW then leaves them exactly as they were (the prompt's ordinary
        # words get gradients too).
        mask = torch.zeros(embedding.shape[0], 1)
        mask[token_ids] = 1
        embedding.register_hook(lambda grad: grad * mask.to(grad))
        groups.append({"params": [embedding], "weight_decay": 0.0})
    half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(str(accelerator.mixed_precision))
    if half is not None:
        # As in diffusers' recipes: frozen weights in the half precision accelerate
        # computes in (half the memory), trained ones in float32, where the optimiser
        # and the gradient scaler need them.
        model.to(half)
        cast_training_params(model, torch.float32)
    optimizer = torch.optim.AdamW(groups, lr=config.lr)

    losses: list[float] = []

    def save_hook(models: list[Any], weights: list[Any], folder: str) -> None:
        # The adapter's files replace accelerate's copy of the whole model.
        if accelerator.is_main_process:
            _save_weights(Path(folder), model, tokens, token_ids, lora)
            (Path(folder) / _LOSSES_FILE).write_text(json.dumps(losses))
        weights.clear()

    def load_hook(models: list[Any], folder: str) -> None:
        models.clear()
        _load_weights(Path(folder), model, tokens, token_ids, lora)
        losses[:] = json.loads((Path(folder) / _LOSSES_FILE).read_text())

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)
    timesteps = scheduler.config.num_train_timesteps
    scaling = pipe.vae.config.scaling_factor

    def batch(
        latents: Latents, ids: torch.Tensor, tag: int, step: int, draws: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noisy latents, timesteps, prompt ids and targets of one step's images."""
        index = permuted_batch(
            len(latents.means),
            config.batch_size,
            config.seed,
            tag,
            step,
            accelerator.process_index,
            accelerator.num_processes,
        )
        clean = latents.sample(index, draws) * scaling
        noise = torch.randn(clean.shape, generator=draws)
        t = torch.randint(0, timesteps, (len(clean),), generator=draws)
        target = noise if prediction == "epsilon" else scheduler.get_velocity(clean, noise, t)
        return scheduler.add_noise(clean, noise, t), t, ids[latents.labels[index]], target

    def loss(prepared: torch.nn.Module, step: int) -> torch.Tensor:
        draws = torch.Generator().manual_seed(derive_seed(config.seed, Stream.TRAIN_NOISE, step))
        parts = [batch(instances, instance_ids, Stream.TRAIN_ORDER, step, draws)]
        if prior is not None:
            parts.append(batch(prior, prior_ids, Stream.ADAPT_PRIOR_ORDER, step, draws))
        columns = zip(*parts, strict=True)
        noisy, t, ids, target = (torch.cat(column).to(device) for column in columns)
        # One forward pass for the user's and the prior images, as DreamBooth does.
        pred = prepared(noisy, t, ids)
        errors = F.mse_loss(pred.float(), target.float(), reduction="none")
        per_image = errors.flatten(1).mean(1)
        count = len(parts[0][0])
        value = per_image[:count].mean()
        if prior is not None:
            value = value + config.prior_loss_weight * per_image[count:].mean()
        losses.append(float(value.detach()))
        return value

    train_loop(
        model,
        optimizer,
        loss,
        accelerator=accelerator,
        steps=config.steps,
        checkpoints=checkpoints,
        resume=config.resume,
        progress=config.progress,
        desc=f"adapt ({config.method})",
    )

    adapter = Adapter(
        method=config.method,
        class_names=names,
        tokens=tokens,
        prompt=template,
        base=base_print,
        base_name=base.resolve().name,
        steps=config.steps,
        settings={k: v for k, v in settings.items() if k not in ("classes", "tokens", "base")},
        folder=out_dir,
    )
    curve = out_dir / LOSS_CURVE
    if accelerator.is_main_process:
        _save_weights(out_dir, model, tokens, token_ids, lora)
        adapter.write(out_dir)
        curve = loss_curve(losses, curve, title=f"{config.method} on {len(names)} classes")
    seconds = time.perf_counter() - started
    if accelerator.is_main_process:
        summary = {
            "steps": config.steps,
            "resumed_from": resumed_from,
            "seconds": round(seconds, 3),
            "final_loss": losses[-1] if losses else None,
            "losses": losses,
        }
        (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    accelerator.wait_for_everyone()
    return AdaptResult(out_dir, adapter, list(losses), seconds, resumed_from, curve)


def _prior(
    pipe: Any,
    names: list[str],
    config: AdaptConfig,
    resolution: int,
    device: torch.device,
    kept: Path | None,
) -> Latents:
    """The latents of the prior-preservation images, made by the base model before any
    LoRA layer exists, or read from ``kept``, where a run saved them before its first
    checkpoint: a resumed run trains on the same images without sampling them again."""
    if kept is not None and kept.is_file():
        return Latents(**load_file(kept))
    images, labels = _prior_images(pipe, names, config, resolution, device)
    return encode_posteriors(pipe.vae, images, labels, device)


@torch.inference_mode()
def _prior_images(
    pipe: Any, names: list[str], config: AdaptConfig, resolution: int, device: torch.device
) -> tuple[list[torch.Tensor], list[int]]:
    """``config.prior_images`` images of each class made by the base model from
    ``config.prior_prompt``, each from a generator seeded by (seed, class, index)."""
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    images: list[torch.Tensor] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        prompt = config.prior_prompt.format(name=name)
        for start in range(0, config.prior_images, config.batch_size):
            count = min(config.batch_size, config.prior_images - start)
            seeds = [
                derive_seed(config.seed, Stream.ADAPT_PRIOR_IMAGES, label, start + i)
                for i in range(count)
            ]
            made = pipe(
                prompt=[prompt] * count,
                num_inference_steps=config.prior_sampling_steps,
                height=resolution,
                width=resolution,
                generator=[torch.Generator().manual_seed(s) for s in seeds],
                output_type="pt",
            ).images
            images += list(made.float().cpu())
            labels += [label] * count
    return images, labels
