"""Train a small class-conditional diffusion model from scratch.

The result is a :class:`~gdaload.generators.pipeline.ClassConditionalPipeline` folder
that :meth:`gdaload.DiffusionGenerator.from_pretrained` loads. Labels are dropped to a
null class with probability ``label_dropout`` so the model supports classifier-free
guidance. Devices and checkpoints go through ``accelerate``; EMA through diffusers.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from gdaload.data.policies import dataset_labels
from gdaload.generators.pipeline import GDALOAD_META, ClassConditionalPipeline
from gdaload.seeding import Stream, derive_seed

__all__ = ["image_folder_dataset", "train_generator"]

logger = logging.getLogger(__name__)


def image_folder_dataset(root: str | os.PathLike, image_size: int, channels: int = 3) -> Dataset:
    """An ``ImageFolder`` (one sub-folder per class) as ``(C, S, S)`` tensors in [0, 1]."""
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


def _latest_checkpoint(folder: Path) -> tuple[Path, int] | None:
    steps = sorted(
        (int(p.name.split("-")[1]), p)
        for p in folder.glob("step-*")
        if (p / "state.json").is_file()
    )
    return (steps[-1][1], steps[-1][0]) if steps else None


def train_generator(
    dataset: Dataset | str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    image_size: int = 32,
    channels: int = 3,
    widths: Sequence[int] = (32, 64),
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 1e-3,
    label_dropout: float = 0.1,
    ema_decay: float = 0.999,
    seed: int = 0,
    checkpoint_every: int = 500,
    resume: bool = True,
    cpu: bool = False,
    progress: bool = True,
) -> Path:
    """Train a class-conditional ``UNet2DModel`` with DDPM and save it as a pipeline.

    Args:
        dataset: ``(image, label)`` pairs with float images ``(C, H, W)`` in [0, 1], or an
            image folder with one sub-folder per class.
        output_dir: Where the pipeline is saved; ``output_dir/checkpoints`` holds
            checkpoints for resuming.
        num_classes: Number of classes; inferred from the labels when omitted.
        class_names: Names saved with the model (defaults to the folder names).
        image_size, channels: Used for image folders.
        widths: Channels of the UNet levels (the last level has self-attention).
        steps: Optimiser steps.
        batch_size, lr: Optimiser settings (AdamW, cosine-free constant rate).
        label_dropout: Probability of training a sample on the null class.
        ema_decay: Decay of the exponential moving average saved as the final weights.
        seed: Seeds the weights, the data order and the noise.
        checkpoint_every: Steps between checkpoints.
        resume: Continue from the latest checkpoint in ``output_dir/checkpoints``.
        cpu: Force CPU even when a GPU is present.
        progress: Show a progress bar.

    Returns:
        ``output_dir``, ready for ``DiffusionGenerator.from_pretrained``.

    Example:
        >>> train_generator("data/train", "runs/gen", image_size=32, steps=5000)  # doctest: +SKIP
        >>> DiffusionGenerator.from_pretrained("runs/gen")  # doctest: +SKIP
    """
    if isinstance(dataset, (str, os.PathLike)):
        folder_ds = image_folder_dataset(dataset, image_size, channels)
        class_names = class_names or folder_ds.classes
        dataset = folder_ds
    for name, value in {
        "steps": steps,
        "batch_size": batch_size,
        "checkpoint_every": checkpoint_every,
    }.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not 0 <= label_dropout < 1:
        raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout}")
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty")
    labels = dataset_labels(dataset)
    num_classes = int(num_classes or labels.max() + 1)
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

    out = Path(output_dir)
    ckpt_dir = out / "checkpoints"
    accelerator = Accelerator(cpu=cpu)
    # Weight init only (diffusers' constructors take no generator); fork_rng keeps the
    # caller's global RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _default_unet(c, h, num_classes, widths)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    ema = EMAModel(unet.parameters(), decay=ema_decay)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)

    step = 0
    latest = _latest_checkpoint(ckpt_dir) if resume else None
    if latest:
        accelerator.load_state(str(latest[0]))
        step = latest[1]
        logger.info("resumed from %s at step %d", latest[0], step)

    batches_per_epoch = max(1, len(dataset) // batch_size)
    bar = tqdm(total=steps, initial=step, disable=not progress, desc="train-generator")
    while step < steps:
        epoch, offset = divmod(step, batches_per_epoch)
        # The data order is a function of (seed, epoch), so a resumed run sees the same batches.
        order = torch.Generator().manual_seed(derive_seed(seed, Stream.TRAIN_ORDER, epoch))
        # The loader draws a base seed for workers; its own generator keeps that draw off
        # both the global RNG and the sampler's order.
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            drop_last=True,
            sampler=RandomSampler(dataset, generator=order),
            generator=torch.Generator().manual_seed(derive_seed(seed, Stream.TRAIN_LOADER, epoch)),
        )
        loader = accelerator.skip_first_batches(loader, offset) if offset else loader
        for x, y in loader:
            noise_gen = torch.Generator().manual_seed(derive_seed(seed, Stream.TRAIN_NOISE, step))
            x = x.to(accelerator.device) * 2 - 1
            y = y.to(accelerator.device).long()
            drop = torch.rand(len(y), generator=noise_gen) < label_dropout
            y = torch.where(drop.to(y.device), torch.full_like(y, num_classes), y)
            noise = torch.randn(x.shape, generator=noise_gen).to(x.device)
            t = torch.randint(
                0, scheduler.config.num_train_timesteps, (len(x),), generator=noise_gen
            ).to(x.device)
            pred = unet(scheduler.add_noise(x, noise, t), t, class_labels=y).sample
            loss = F.mse_loss(pred, noise)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(accelerator.unwrap_model(unet).parameters())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if step % checkpoint_every == 0 or step == steps:
                _save_checkpoint(accelerator, ckpt_dir, step)
            if step >= steps:
                break
    bar.close()

    final = accelerator.unwrap_model(unet)
    ema.copy_to(final.parameters())
    pipe = ClassConditionalPipeline(unet=final.to("cpu"), scheduler=scheduler)
    pipe.save_pretrained(out)
    meta: dict[str, Any] = {
        "class_names": list(class_names) if class_names else [str(i) for i in range(num_classes)],
        "training": {
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "label_dropout": label_dropout,
            "ema_decay": ema_decay,
            "widths": list(widths),
        },
    }
    (out / GDALOAD_META).write_text(json.dumps(meta, indent=2))
    return out


def _save_checkpoint(accelerator: Accelerator, folder: Path, step: int) -> None:
    target = folder / f"step-{step}"
    accelerator.save_state(str(target))
    (target / "state.json").write_text(json.dumps({"step": step}))
    # Keep the newest two: one to resume from, one in case the newest was cut off mid-write.
    done = sorted(
        int(p.name.split("-")[1]) for p in folder.glob("step-*") if (p / "state.json").is_file()
    )
    for old in done[:-2]:
        shutil.rmtree(folder / f"step-{old}", ignore_errors=True)
