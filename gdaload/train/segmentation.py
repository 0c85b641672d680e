"""Train the mask-aware diffusion models (:class:`~gdaload.MaskDiffusion`,
:class:`~gdaload.JointDiffusion`) from scratch on (image, mask, label) triples.

``kind="mask"`` noises the image only and feeds the one-hot mask beside it;
``kind="joint"`` noises image and one-hot mask channels together. Both run the shared
loop of :mod:`gdaload.train.loop`, so a resumed run ends with the same weights.
"""

from __future__ import annotations

import os
from collections.abc import Sized
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers.models.unets.unet_2d import UNet2DModel
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from torch.utils.data import Dataset

from gdaload.generators.mask_diffusion import JointDiffusion, MaskDiffusion, one_hot_masks
from gdaload.generators.masks import check_mask
from gdaload.seeding import Stream, derive_seed
from gdaload.train.batches import EpochBatches
from gdaload.train.checkpoints import Checkpoints
from gdaload.train.config import SegmentationGeneratorTrainingConfig
from gdaload.train.loop import train_loop

__all__ = ["train_segmentation_generator"]


def _unet(
    in_channels: int, out_channels: int, size: int, num_classes: int, widths: tuple[int, ...]
) -> UNet2DModel:
    return UNet2DModel(
        sample_size=size,
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=widths,
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D",) * (len(widths) - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (len(widths) - 1),
        num_class_embeds=num_classes,
    )


def train_segmentation_generator(
    dataset: Dataset,
    output_dir: str | os.PathLike[str],
    config: SegmentationGeneratorTrainingConfig | None = None,
    **options: Any,
) -> Path:
    """Train a mask-conditioned or joint (image, mask) diffusion model and save it.

    Args:
        dataset: ``(image (C, H, W) float in [0, 1], mask (H, W) int, label)`` triples,
            e.g. :func:`~gdaload.datasets.segmentation.digit_segmentation_splits`'s pool.
        output_dir: Where the model is saved; ``output_dir/checkpoints`` holds checkpoints.
        config: The settings; defaults of :class:`SegmentationGeneratorTrainingConfig`.
        **options: Config fields replacing ``config``'s.

    Returns:
        ``output_dir``, ready for ``MaskDiffusion.from_pretrained`` (``kind="mask"``)
        or ``JointDiffusion.from_pretrained`` (``kind="joint"``).

    Raises:
        ValueError: On malformed data or checkpoints made with other settings.

    Example:
        >>> from gdaload.datasets.segmentation import digit_segmentation_splits
        >>> pool = digit_segmentation_splits().generator_pool
        >>> train_segmentation_generator(pool, "runs/mask", kind="mask")  # doctest: +SKIP
    """
    config = SegmentationGeneratorTrainingConfig.resolve(config, options)
    if not isinstance(dataset, Sized) or len(dataset) == 0:
        raise ValueError("the training dataset must be a non-empty map-style dataset")
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]).float()
    masks_raw = torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))])
    labels = torch.tensor([int(dataset[i][2]) for i in range(len(dataset))])
    if images.dim() != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be square (C, S, S) tensors, got {tuple(images.shape[1:])}")
    num_mask_classes = int(masks_raw.max()) + 1
    masks = check_mask(
        masks_raw, len(images), images.shape[2:], num_mask_classes, what="training masks"
    )
    num_classes = int(labels.max()) + 1
    c, size = images.shape[1], images.shape[2]
    k = num_mask_classes
    joint = config.kind == "joint"
    triples = torch.utils.data.TensorDataset(images, masks, labels)
    batches = EpochBatches(triples, config.batch_size, config.seed)
    accelerator = Accelerator(cpu=config.cpu)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        unet = _unet(c + k, c + k if joint else c, size, num_classes, config.widths)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=0.0)
    device = accelerator.device

    def loss(model: torch.nn.Module, step: int) -> torch.Tensor:
        x, m, y = batches(step)
        draws = torch.Generator().manual_seed(derive_seed(config.seed, Stream.TRAIN_NOISE, step))
        x = x.to(device) * 2 - 1
        onehot = one_hot_masks(m, k).to(device) * 2 - 1
        target = torch.cat([x, onehot], 1) if joint else x
        noise = torch.randn(target.shape, generator=draws).to(device)
        t = torch.randint(0, 1000, (len(x),), generator=draws).to(device)
        noisy = scheduler.add_noise(target, noise, t)
        inp = noisy if joint else torch.cat([noisy, onehot], 1)
        pred = model(inp, t, class_labels=y.to(device)).sample
        return F.mse_loss(pred, noise)

    settings = {
        "kind": config.kind,
        "image": [c, size, size],
        "num_classes": num_classes,
        "num_mask_classes": k,
        "widths": list(config.widths),
        "batch_size": config.batch_size,
        "lr": config.lr,
        "ema_decay": config.ema_decay,
        "seed": config.seed,
    }
    out = Path(output_dir)
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
        desc=f"train-segmentation-generator ({config.kind})",
    )
    if accelerator.is_main_process:
        names = list(config.class_names) if config.class_names else None
        training = {
            key: settings[key] for key in ("widths", "batch_size", "lr", "ema_decay", "seed")
        }
        training["steps"] = config.steps
        generator: MaskDiffusion | JointDiffusion
        if joint:
            allowed = [sorted(masks[labels == y].unique().tolist()) for y in range(num_classes)]
            generator = JointDiffusion(
                final.cpu(),
                scheduler,
                num_mask_classes=k,
                image_channels=c,
                allowed_labels=allowed,
                class_names=names,
                device="cpu",
            )
        else:
            generator = MaskDiffusion(
                final.cpu(), scheduler, num_mask_classes=k, class_names=names, device="cpu"
            )
        generator.save_pretrained(out, training=training)
    accelerator.wait_for_everyone()
    return out
