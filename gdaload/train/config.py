"""Settings of the trainers, as frozen dataclasses.

Each field carries its command-line help in its metadata, so ``gdaload train-generator``,
``gdaload train-multiview`` and ``gdaload adapt`` build their options from these classes instead of
repeating every setting. Fields marked ``cli=False`` are settable from Python only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "AdaptConfig",
    "DistillConfig",
    "GeneratorTrainingConfig",
    "MultiViewTrainingConfig",
    "SegmentationGeneratorTrainingConfig",
    "Text2ImageConfig",
    "setting",
]

ConfigT = TypeVar("ConfigT", bound="_TrainingConfig")


def setting(
    default: Any,
    help: str | None = None,
    *,
    choices: Sequence[Any] | None = None,
    cli: bool = True,
) -> Any:
    """A config field with its command-line description.

    Args:
        default: The default value (immutable: tuples, not lists).
        help: The option's help text. For a boolean that defaults to True the option is
            its negation, ``--no-<name>``, and the text describes that flag.
        choices: The values the option accepts.
        cli: False for settings the command line does not offer.

    Returns:
        A :func:`dataclasses.field`.

    Example:
        >>> from dataclasses import dataclass, fields
        >>> @dataclass
        ... class Example:
        ...     steps: int = setting(10, "optimiser steps")
        >>> fields(Example)[0].metadata["help"]
        'optimiser steps'
    """
    return dataclasses.field(
        default=default,
        metadata={"help": help, "choices": tuple(choices) if choices else None, "cli": cli},
    )


@dataclass(frozen=True)
class _TrainingConfig:
    """What the trainers' configs share: merging keyword options and validation."""

    @classmethod
    def resolve(cls: type[ConfigT], config: ConfigT | None, options: Mapping[str, Any]) -> ConfigT:
        """``config`` with ``options`` replacing its fields, or a new config from them.

        Raises:
            TypeError: If ``config`` is another type or an option is not a field.
        """
        if config is None:
            return cls(**options)
        if not isinstance(config, cls):
            raise TypeError(f"config must be a {cls.__name__}, got {type(config).__name__}")
        return dataclasses.replace(config, **options) if options else config

    def _require_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")

    def _require_probability_below_one(self, name: str) -> None:
        value = getattr(self, name)
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value}")

    def _as_tuples(self, *names: str) -> None:
        # Lists are accepted for convenience; tuples keep the frozen config hashable and
        # equal to one built from the command line.
        for name in names:
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))


@dataclass(frozen=True)
class GeneratorTrainingConfig(_TrainingConfig):
    """Settings of :func:`~gdaload.train.generator.train_generator`.

    Attributes:
        num_classes: Number of classes; inferred from the labels when None.
        class_names: Names saved with the model (defaults to an image folder's
            sub-folder names, else ``"0"``, ``"1"``, ...).
        image_size: Side the images of an image folder are resized and cropped to.
        channels: Channels of an image folder's images: 1 (grayscale) or 3.
        widths: Channels of the UNet levels (the last level has self-attention).
        steps: Optimiser steps.
        batch_size: Images per step.
        lr: AdamW learning rate (constant).
        label_dropout: Probability of training a sample on the null class, which
            classifier-free guidance needs.
        ema_decay: Decay of the exponential moving average saved as the final weights.
        seed: Seeds the weights, the data order and the noise.
        checkpoint_every: Steps between checkpoints.
        resume: Continue from the newest checkpoint in ``output_dir/checkpoints``.
        cpu: Train on the CPU even when a GPU is present.
        progress: Show a progress bar.

    Example:
        >>> config = GeneratorTrainingConfig(steps=5000, widths=[32, 64, 64])
        >>> config.widths, config.batch_size
        ((32, 64, 64), 64)
    """

    num_classes: int | None = setting(None, cli=False)
    class_names: tuple[str, ...] | None = setting(None, cli=False)
    image_size: int = setting(32, "for image folders")
    channels: int = setting(3, "for image folders", choices=(1, 3))
    widths: tuple[int, ...] = setting((32, 64), "UNet level widths")
    steps: int = setting(2000)
    batch_size: int = setting(64)
    lr: float = setting(1e-3)
    label_dropout: float = setting(0.1)
    ema_decay: float = setting(0.999, cli=False)
    seed: int = setting(0)
    checkpoint_every: int = setting(500)
    resume: bool = setting(True, "ignore existing checkpoints")
    cpu: bool = setting(False, "train on the CPU even with a GPU")
    progress: bool = setting(True, cli=False)

    def __post_init__(self) -> None:
        self._as_tuples("class_names", "widths")
        self._require_positive("steps", "batch_size", "checkpoint_every")
        self._require_probability_below_one("label_dropout")


@dataclass(frozen=True)
class MultiViewTrainingConfig(_TrainingConfig):
    """Settings of :func:`~gdaload.train.multiview.train_multiview`.

    Attributes:
        view_names: Saved with the model; taken from the dataset when it has
            ``view_names``/``views``, else ``view0``, ``view1``, ...
        class_names: Saved with the model; taken from the dataset's ``classes``.
        detail_channels: Learned latent channels of a view, beside its thumbnail (see
            :class:`~gdaload.generators.multiview.ViewAutoencoder`).
        ae_widths: Autoencoder levels; each halves the latent grid's side.
        ae_steps: Autoencoder optimiser steps.
        ae_batch_size: Views per autoencoder batch.
        ae_lr: Autoencoder AdamW learning rate.
        widths: UNet level widths, see :func:`~gdaload.generators.multiview.build_multiview_unet`.
        layers_per_block: ResNet layers per UNet level.
        attention: Self-attention at the UNet's coarsest level.
        steps: Diffusion optimiser steps.
        batch_size: Objects per diffusion batch.
        lr: Diffusion AdamW learning rate.
        p_uncond: Probability that a training object has no conditioning view.
        ema_decay: Largest decay of the UNet weights' moving average (ramped up from 0).
        seed: Seeds the weights, the data order, the masks and the noise.
        checkpoint_every: Steps between checkpoints (both stages).
        resume: Continue from the newest checkpoints in ``output_dir/checkpoints``.
        cpu: Train on the CPU even when a GPU is present.
        progress: Show progress bars.

    Example:
        >>> MultiViewTrainingConfig(steps=30000).ae_steps
        1000
    """

    view_names: tuple[str, ...] | None = setting(None, cli=False)
    class_names: tuple[str, ...] | None = setting(None, cli=False)
    detail_channels: int = setting(3, "learned latent channels per view, beside its thumbnail")
    ae_widths: tuple[int, ...] = setting(
        (16, 32), "autoencoder level widths; each level halves the latent side"
    )
    ae_steps: int = setting(1000)
    ae_batch_size: int = setting(64, "views per autoencoder batch")
    ae_lr: float = setting(2e-3)
    widths: tuple[int, ...] = setting((48, 96), "UNet level widths")
    layers_per_block: int = setting(1)
    attention: bool = setting(True, "no self-attention at the UNet's coarsest level")
    steps: int = setting(3000, "diffusion training steps")
    batch_size: int = setting(64, "objects per diffusion batch")
    lr: float = setting(2e-3)
    p_uncond: float = setting(0.2, "probability that a training object has no conditioning view")
    ema_decay: float = setting(0.999, cli=False)
    seed: int = setting(0)
    checkpoint_every: int = setting(500)
    resume: bool = setting(True, "ignore existing checkpoints")
    cpu: bool = setting(False, "train on the CPU even with a GPU")
    progress: bool = setting(True, cli=False)

    def __post_init__(self) -> None:
        self._as_tuples("view_names", "class_names", "ae_widths", "widths")
        self._require_positive(
            "ae_steps",
            "steps",
            "batch_size",
            "ae_batch_size",
            "checkpoint_every",
            "detail_channels",
            "layers_per_block",
        )
        self._require_probability_below_one("p_uncond")


@dataclass(frozen=True)
class AdaptConfig(_TrainingConfig):
    """Settings of :func:`~gdaload.train.adapt.adapt`.

    Attributes:
        method: ``textual-inversion`` learns one new token embedding per class and
            leaves the model as it is; ``lora`` adds one new token per class
            (initialised like textual inversion, then kept) and trains LoRA layers of
            the UNet, DreamBooth-style.
        class_names: Names of the classes; default an image folder's sub-folder names,
            else the dataset's ``classes``.
        token_format: The new token of a class, with ``{name}`` (spaces become ``-``).
        init_word: Word (or words: their embeddings are averaged) each new token starts
            from; default the class name.
        prompt: Training prompt template with ``{token}`` and optionally ``{name}``;
            default ``a photo of a {token}`` (textual inversion) or
            ``a photo of a {token} {name}`` (LoRA).
        rank: LoRA rank (``lora_alpha`` equals it).
        train_text_encoder: LoRA only: also add LoRA layers to the text encoder.
        prior_images: LoRA only: images of each class the base model generates from
            ``prior_prompt`` before training; their loss, weighted by
            ``prior_loss_weight``, keeps the model's idea of the class (DreamBooth's
            prior preservation). 0 turns it off.
        prior_prompt: Prompt template of the prior images, with ``{name}``.
        prior_loss_weight: Weight of the prior images' loss.
        prior_sampling_steps: Sampler steps of the prior images (the pipeline's own
            scheduler and guidance).
        resolution: Side the images are resized and center-cropped to; default the
            model's native size.
        steps: Optimiser steps.
        batch_size: Images per step, at most the number of images.
        lr: AdamW learning rate (constant).
        seed: Seeds the data order, the latents, the noise and the LoRA initialisation.
        checkpoint_every: Steps between checkpoints.
        resume: Continue from the newest checkpoint in ``out/checkpoints``.
        cpu: Train on the CPU even when a GPU is present.
        progress: Show a progress bar.

    Example:
        >>> AdaptConfig(method="lora", rank=8).prompt_template
        'a photo of a {token} {name}'
    """

    method: str = setting("textual-inversion", choices=("textual-inversion", "lora"))
    class_names: tuple[str, ...] | None = setting(None, cli=False)
    token_format: str = setting("<{name}>", "the new token of a class, with {name}")
    init_word: str | None = setting(None, "word the new tokens start from (default: class name)")
    prompt: str | None = setting(None, "training prompt template with {token} (and {name})")
    rank: int = setting(4, "LoRA rank")
    train_text_encoder: bool = setting(False, "LoRA: also add LoRA layers to the text encoder")
    prior_images: int = setting(0, "LoRA: prior-preservation images per class (0: none)")
    prior_prompt: str = setting("a photo of a {name}", "prompt of the prior images, with {name}")
    prior_loss_weight: float = setting(1.0)
    prior_sampling_steps: int = setting(25, "sampler steps of the prior images")
    resolution: int | None = setting(None, "image side (default: the model's native size)")
    steps: int = setting(1000)
    batch_size: int = setting(4)
    lr: float = setting(5e-4)
    seed: int = setting(0)
    checkpoint_every: int = setting(250)
    resume: bool = setting(True, "ignore existing checkpoints")
    cpu: bool = setting(False, "train on the CPU even with a GPU")
    progress: bool = setting(True, cli=False)

    def __post_init__(self) -> None:
        self._as_tuples("class_names")
        if self.method not in ("textual-inversion", "lora"):
            raise ValueError(f"method must be textual-inversion or lora, got {self.method!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"rank must be a positive integer, got {self.rank!r}")
        if self.train_text_encoder and self.method != "lora":
            raise ValueError("train_text_encoder adds LoRA layers: it needs method='lora'")
        if "{name}" not in self.token_format:
            raise ValueError(f"token_format must contain '{{name}}', got {self.token_format!r}")
        if self.prompt is not None and "{token}" not in self.prompt:
            raise ValueError(f"the prompt template must contain '{{token}}', got {self.prompt!r}")
        self._require_positive("steps", "batch_size", "checkpoint_every", "prior_sampling_steps")
        if self.prior_images < 0:
            raise ValueError(f"prior_images must be >= 0, got {self.prior_images}")
        if self.prior_images and self.method != "lora":
            raise ValueError(
                "prior preservation keeps a changed model's idea of a class: it needs "
                "method='lora' (textual inversion leaves the model as it is)"
            )
        if "{name}" not in self.prior_prompt:
            raise ValueError(f"prior_prompt must contain '{{name}}', got {self.prior_prompt!r}")
        if not self.prior_loss_weight > 0:
            raise ValueError(f"prior_loss_weight must be > 0, got {self.prior_loss_weight}")
        if self.resolution is not None:
            self._require_positive("resolution")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @property
    def prompt_template(self) -> str:
        """:attr:`prompt`, or the method's default template."""
        if self.prompt is not None:
            return self.prompt
        return "a photo of a {token}" + (" {name}" if self.method == "lora" else "")

    def token(self, name: str) -> str:
        """The new token of the class ``name``.

        Example:
            >>> AdaptConfig().token("golden retriever")
            '<golden-retriever>'
        """
        return self.token_format.format(name="-".join(name.split()))


@dataclass(frozen=True)
class DistillConfig(_TrainingConfig):
    """Settings of :func:`~gdaload.train.distill.distill` (latent consistency distillation).

    The teacher's ODE is discretised on a skipping-step schedule of ``solver_steps``
    timesteps ``stride - 1, 2 * stride - 1, ..., solver_steps * stride - 1``; each step
    distils one DDIM step of the teacher between neighbours of that schedule.

    Attributes:
        steps: Optimiser steps.
        batch_size: Real images per step.
        lr: AdamW learning rate (constant).
        solver_steps: Timesteps of the skipping-step schedule.
        stride: Training timesteps between neighbours of the schedule. The top timestep,
            ``solver_steps * stride - 1``, is the one the distilled model starts from:
            on a cosine noise schedule the top of 1000 has ``sqrt(alpha_bar)`` near
            5e-5, which multiplies the model's errors when its noise prediction becomes
            an image, so the default stops at 959.
        target_decay: Decay of the target network, a moving average of the student.
        huber_c: Constant of the pseudo-Huber loss.
        timestep_scaling: Scale of the timestep in the boundary conditions
            ``c_skip``/``c_out`` (diffusers' ``LCMScheduler`` default).
        max_steps: Most sampler steps the model is meant for; more are allowed, with a
            warning.
        seed: Seeds the data order and the noise and timesteps of each step.
        checkpoint_every: Steps between checkpoints.
        resume: Continue from the newest checkpoint in ``output_dir/checkpoints``.
        cpu: Train on the CPU even when a GPU is present.
        progress: Show a progress bar.

    Example:
        >>> config = DistillConfig(steps=500, lr=3e-4)
        >>> config.top_timestep
        959
    """

    steps: int = setting(500)
    batch_size: int = setting(64)
    lr: float = setting(3e-4)
    solver_steps: int = setting(24, "timesteps of the skipping-step schedule")
    stride: int = setting(40, "training timesteps between schedule neighbours")
    target_decay: float = setting(0.95, "decay of the target network's moving average")
    huber_c: float = setting(0.001, "constant of the pseudo-Huber loss")
    timestep_scaling: float = setting(10.0, cli=False)
    max_steps: int = setting(4, "most sampler steps the distilled model is meant for")
    seed: int = setting(0)
    checkpoint_every: int = setting(250)
    resume: bool = setting(True, "ignore existing checkpoints")
    cpu: bool = setting(False, "train on the CPU even with a GPU")
    progress: bool = setting(True, cli=False)

    def __post_init__(self) -> None:
        self._require_positive(
            "steps", "batch_size", "solver_steps", "stride", "max_steps", "checkpoint_every"
        )
        self._require_probability_below_one("target_decay")
        if self.max_steps > self.solver_steps:
            raise ValueError(
                f"max_steps ({self.max_steps}) cannot exceed solver_steps ({self.solver_steps})"
            )
        if not self.lr > 0 or not self.huber_c > 0 or not self.timestep_scaling > 0:
            raise ValueError("lr, huber_c and timestep_scaling must be > 0")

    @property
    def top_timestep(self) -> int:
        """The highest timestep of the schedule, where sampling starts."""
        return self.solver_steps * self.stride - 1


@dataclass(frozen=True)
class SegmentationGeneratorTrainingConfig(_TrainingConfig):
    """Settings of :func:`~gdaload.train.segmentation.train_segmentation_generator`.

    Attributes:
        kind: ``"mask"`` (:class:`~gdaload.MaskDiffusion`: image from mask) or ``"joint"``
            (:class:`~gdaload.JointDiffusion`: image and mask together).
        class_names: Names saved with the model.
        widths: UNet level widths.
        steps: Optimiser steps.
        batch_size: Pairs per step.
        lr: AdamW learning rate (constant).
        ema_decay: Decay of the moving average saved as the final weights.
        seed: Seeds the weights, the data order and the noise.
        checkpoint_every: Steps between checkpoints.
        resume: Continue from the newest checkpoint in ``output_dir/checkpoints``.
        cpu: Train on the CPU even when a GPU is present.
        progress: Show a progress bar.

    Example:
        >>> SegmentationGeneratorTrainingConfig(kind="joint", steps=100).widths
        (32, 64)
    """

    kind: str = setting(
        "mask", "what to train: mask-conditioned or joint", choices=("mask", "joint")
    )
    class_names: tuple[str, ...] | None = setting(None, cli=False)
    widths: tuple[int, ...] = setting((32, 64), "UNet level widths")
    steps: int = setting(2000)
    batch_size: int = setting(64)
    lr: float = setting(1e-3)
    ema_decay: float = setting(0.999, cli=False)
    seed: int = setting(0)
    checkpoint_every: int = setting(500)
    resume: bool = setting(True, "ignore existing checkpoints")
    cpu: bool = setting(False, "train on the CPU even with a GPU")
    progress: bool = setting(True, cli=False)

    def __post_init__(self) -> None:
        self._as_tuples("class_names", "widths")
        self._require_positive("steps", "batch_size", "checkpoint_every")
        if self.kind not in ("mask", "joint"):
            raise ValueError(f"kind must be 'mask' or 'joint', got {self.kind!r}")


@dataclass(frozen=True)
class Text2ImageConfig(_TrainingConfig):
    """Settings of :func:`~gdaload.train.text2image.pretrain_text2image`: a small
    Stable-Diffusion-architecture model trained from scratch (the stand-in for a
    pretrained one that the adaptation benchmark needs).

    Attributes:
        class_names: The word of each label, which fills the caption templates.
        templates: Caption templates with ``{name}``; each training image gets one,
            drawn per step.
        caption_dropout: Probability that a training image's caption is empty (what
            classifier-free guidance needs).
        max_length: Tokens per prompt (the tokenizer's ``model_max_length``).
        text_width: Width of the CLIP text encoder.
        text_layers: Its transformer layers.
        ae_widths: Widths of the VAE's levels; the latents are ``2 ** (len - 1)`` times
            smaller than the images.
        ae_steps: VAE optimiser steps.
        ae_batch_size: Images per VAE batch.
        ae_lr: VAE learning rate.
        kl_weight: Weight of the KL term of the VAE's loss.
        widths: Widths of the UNet's levels.
        steps: Diffusion optimiser steps (text encoder and UNet together).
        batch_size: Images per diffusion batch.
        lr: Diffusion learning rate.
        ema_decay: Decay of the moving average of the diffusion weights.
        seed: Seeds the weights, batches, noise and captions.
        checkpoint_every: Steps between checkpoints.
        resume: Continue from the newest checkpoints in ``output_dir/checkpoints``.
        cpu: Train on the CPU even when a GPU is present.
        progress: Show progress bars.

    Example:
        >>> Text2ImageConfig(class_names=("zero", "one")).templates[0]
        'a photo of a {name}'
    """

    class_names: tuple[str, ...] | None = setting(None, cli=False)
    templates: tuple[str, ...] = setting(
        (
            "a photo of a {name}",
            "a handwritten {name}",
            "the digit {name}",
            "a picture of the number {name}",
            "{name}",
        ),
        cli=False,
    )
    caption_dropout: float = setting(0.1, "probability of an empty caption")
    max_length: int = setting(32, "tokens per prompt")
    text_width: int = setting(64, "width of the text encoder")
    text_layers: int = setting(2, "transformer layers of the text encoder")
    ae_widths: tuple[int, ...] = setting((32, 64), "VAE level widths")
    ae_steps: int = setting(1500)
    ae_batch_size: int = setting(64)
    ae_lr: float = setting(2e-3)
    kl_weight: float = setting(1e-4, "weight of the VAE's KL term")
    widths: tuple[int, ...] = setting((32, 64), "UNet level widths")
    steps: int = setting(4000, "diffusion training steps")
    batch_size: int = setting(64)
    lr: float = setting(1e-3)
    ema_decay: float = setting(0.999, cli=False)
    seed: int = setting(0)
    checkpoint_every: int = setting(500)
    resume: bool = setting(True, "ignore existing checkpoints")
    cpu: bool = setting(False, "train on the CPU even with a GPU")
    progress: bool = setting(True, cli=False)

    def __post_init__(self) -> None:
        self._as_tuples("class_names", "templates", "ae_widths", "widths")
        self._require_positive(
            "max_length",
            "text_width",
            "text_layers",
            "ae_steps",
            "ae_batch_size",
            "steps",
            "batch_size",
            "checkpoint_every",
        )
        self._require_probability_below_one("caption_dropout")
        self._require_probability_below_one("ema_decay")
        if not self.templates or any("{name}" not in t for t in self.templates):
            raise ValueError(f"every caption template needs '{{name}}', got {list(self.templates)}")
        if not self.ae_widths or not self.widths:
            raise ValueError("ae_widths and widths need at least one level each")
        if self.text_width % 4:
            raise ValueError(f"text_width must be a multiple of 4 (4 heads), got {self.text_width}")
        if any(w % 8 for w in (*self.ae_widths, *self.widths)):
            raise ValueError(
                "every width must be a multiple of 8 (group normalisation of 8 groups), got "
                f"ae_widths={list(self.ae_widths)}, widths={list(self.widths)}"
            )
        if not (self.lr > 0 and self.ae_lr > 0 and self.kl_weight >= 0):
            raise ValueError("lr and ae_lr must be > 0 and kl_weight >= 0")
