"""Train a small class-conditional diffusion model from scratch.

The result is a :class:`~gdaload.generators.pipeline.ClassConditionalPipeline` folder
that :meth:`gdaload.DiffusionGenerator.from_pretrained` loads. Labels are dropped to a
null class with probability ``label_dropout`` so the model supports classifier-free
guidance. Devices and checkpoints go through ``accelerate``; EMA through diffusers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator

# Imported from their modules: under type checking, diffusers' top-level names are its
# placeholder classes for a missing torch, which have none of the real methods.
from diffusers.models.unets.unet_2d import UNet2DModel
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from torch.utils.data import Dataset

from gdaload.data.policies import dataset_labels
from gdaload.generators import ClassConditionalPipeline
from gdaload.generators.metadata import write_metadata
from gdaload.seeding import Stream, derive_seed
from gdaload.train.batches import EpochBatches
from gdaload.train.checkpoints import Checkpoints
from gdaload.train.config import GeneratorTrainingConfig
from gdaload.train.loop import train_loop

if TYPE_CHECKING:
    from torchvision.datasets import ImageFolder

__all__ = ["image_folder_dataset", "train_generator"]


def image_folder_dataset(
    root: str | os.PathLike, image_size: int, channels: int = 3
) -> ImageFolder:
    """An ``ImageFolder`` (one sub-folder per class) as ``(C, S, S)`` tensors in [0, 1].

    Images are resized so the shorter side is ``image_size``, center-cropped to a square
    and, for ``channels=1``, turned to grayscale.

    Example:
        >>> data = image_folder_dataset("data/train", image_size=32)  # doctest: +SKIP
        >>> data[0][0].shape, data.classes  # doctest: +SKIP
        (torch.Size([3, 32, 32]), ['cat', 'dog'])
    """
    from torchvision import datasets
    from torchvision.transforms import v2

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    steps = [v2.PILToTensor(), v2.Resize(image_size), v2.CenterCrop(image_size)]
    if channels == 1:
        steps.append(v2.Grayscale())
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return datasets.ImageFolder(os.fspath(root), transform=v2.Compose(steps))


def _default_unet(channels: int, size: int, num_classes: int, widths: Sequence[int]) -> UNet2DModel:
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(widths),
        layers_per_block=2,
        norm_num_groups=8,
        down_block_types=("DownBlock2D",) * (len(widths) - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (len(widths) - 1),
        num_class_embeds=num_classes + 1,  # + the null class used for guidance
    )


def train_generator(
    dataset: Dataset | str | os.PathLike,
    output_dir: str | os.PathLike,
    config: GeneratorTrainingConfig | None = None,
    **options: Any,
) -> Path:
    """Train a class-conditional ``UNet2DModel`` with DDPM and save it as a pipeline.

    Each step draws its batch from an epoch order seeded by ``(seed, epoch)`` and its
    noise, timesteps and dropped labels from a generator seeded by ``(seed, step)``, so a
    run resumed from a checkpoint ends with the same weights as a run straight through.

    Args:
        dataset: ``(image, label)`` pairs with float images ``(C, H, W)`` in [0, 1], or an
            image folder with one sub-folder per class.
        output_dir: Where the pipeline is saved; ``output_dir/checkpoints`` holds
            checkpoints for resuming.
        config: The settings; the defaults of :class:`GeneratorTrainingConfig` when None.
        **options: Fields of :class:`GeneratorTrainingConfig`, replacing ``config``'s.

    Returns:
        ``output_dir``, ready for ``DiffusionGenerator.from_pretrained``.

    Raises:
        ValueError: On invalid settings or data, or checkpoints made with other settings.
        TypeError: On an option that is not a config field, or a dataset without a length.

    Example:
        >>> train_generator("data/train", "runs/gen", image_size=32, steps=5000)  # doctest: +SKIP
        >>> config = GeneratorTrainingConfig(steps=5000, widths=(32, 64, 64))
        >>> train_generator("data/train", "runs/gen", config, seed=1)  # doctest: +SKIP
        >>> DiffusionGenerator.from_pretrained("runs/gen")  # doctest: +SKIP
    """
    config = GeneratorTrainingConfig.resolve(config, options)
    class_names = config.class_names
    if isinstance(dataset, (str, os.PathLike)):
        folder_ds = image_folder_dataset(dataset, config.image_size, config.channels)
        class_names = class_names or tuple(folder_ds.classes)
        dataset = folder_ds
    if not isinstance(dataset, Sized):
        raise TypeError("the dataset needs a length: pass a map-style dataset")
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty")
    labels = dataset_labels(dataset)
    num_classes = int(config.num_classes or labels.max() + 1)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}"
        )
    sample = dataset[0][0]
    if (
        not isinstance(sample, torch.Tensor)
        or sample.dim() != 3
        or not sample.dtype.is_floating_point
    ):
        raise ValueError(
            "dataset images must be float tensors (C, H, W) in [0, 1]; add "
            "v2.ToImage() and v2.ToDtype(torch.float32, scale=True) to its transform"
        )
    c, h, w = sample.shape
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w}; add v2.Resize/v2.CenterCrop")
    batches = EpochBatches(dataset, config.batch_size, config.seed)

    out = Path(output_dir)
    accelerator = Accelerator(cpu=config.cpu)
    # Weight init only (diffusers' constructors take no generator); fork_rng keeps the
    # caller's global RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        unet = _default_unet(c, h, num_classes, config.widths)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    timesteps = scheduler.config.num_train_timesteps
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=0.0)
    device = accelerator.device

    def loss(model: torch.nn.Module, step: int) -> torch.Tensor:
        x, y = batches(step)
        draws = torch.Generator().manual_seed(derive_seed(config.seed, Stream.TRAIN_NOISE, step))
        x = x.to(device) * 2 - 1
        y = y.to(device).long()
        drop = torch.rand(len(y), generator=draws) < config.label_dropout
        y = torch.where(drop.to(device), torch.full_like(y, num_classes), y)
        noise = torch.randn(x.shape, generator=draws).to(device)
        t = torch.randint(0, timesteps, (len(x),), generator=draws).to(device)
        pred = model(scheduler.add_noise(x, noise, t), t, class_labels=y).sample
        return F.mse_loss(pred, noise)

    settings = {
        "image": [c, h, w],
        "num_classes": num_classes,
        "widths": list(config.widths),
        "batch_size": config.batch_size,
        "lr": config.lr,
        "label_dropout": config.label_dropout,
        "ema_decay": config.ema_decay,
        "seed": config.seed,
    }
    final = train_loop(
        unet,
        optimizer,
        loss,
        accelerator=accelerator,
        steps=config.steps,
        checkpoints=Checkpoints(out / "checkpoints", settings, config.checkpoint_every),
        resume=config.resume,
        ema_decay=config.ema_decay,
        progress=config.progress,
        desc="train-generator",
    )

    if accelerator.is_main_process:
        pipe = ClassConditionalPipeline(unet=final.to("cpu"), scheduler=scheduler)
        pipe.save_pretrained(out)
        names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        meta: dict[str, Any] = {
            "class_names": names,
            "training": {
                "steps": config.steps,
                "batch_size": config.batch_size,
                "lr": config.lr,
                "seed": config.seed,
                "label_dropout": config.label_dropout,
                "ema_decay": config.ema_decay,
                "widths": list(config.widths),
            },
        }
        write_metadata(out, meta)
    accelerator.wait_for_everyone()
    return out
