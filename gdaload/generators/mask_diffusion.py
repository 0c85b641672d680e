"""Diffusion generators over segmentation masks: ``MaskDiffusion`` and ``JointDiffusion``.

Both are a diffusers ``UNet2DModel`` (class-conditional through its class embedding)
sampled with DDIM, one CPU ``torch.Generator`` per sample, so a sample is a pure
function of (model, config, label, seed, mask):

* :class:`MaskDiffusion` (a :class:`~gdaload.generators.masks.MaskConditionedGenerator`)
  takes the one-hot mask as extra input channels and denoises the image only. With a
  source image it runs SDEdit under the source's mask, so the mask stays valid.
* :class:`JointDiffusion` (a :class:`~gdaload.generators.masks.PairGenerator`) denoises
  image channels and one-hot mask channels together, so new layouts appear. The mask is
  the argmax of the mask channels over the labels seen with the sample's class in
  training (for digits: background or the digit's own stroke).

Both are trained by :func:`gdaload.train.train_segmentation_generator`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from diffusers.models.unets.unet_2d import UNet2DModel
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

from gdaload.fingerprint import ModulesFingerprint
from gdaload.generators.base import (
    StrengthLike,
    as_labels,
    as_seeds,
    check_source,
    config_digest,
    sample_strengths,
)
from gdaload.generators.diffusers_base import default_device
from gdaload.generators.masks import MaskConditionedGenerator, PairGenerator, check_mask
from gdaload.generators.metadata import read_metadata, write_metadata
from gdaload.generators.samplers import make_scheduler

__all__ = ["JointDiffusion", "MaskDiffusion", "one_hot_masks"]


def one_hot_masks(masks: torch.Tensor, num_mask_classes: int) -> torch.Tensor:
    """Integer masks ``(B, H, W)`` -> float one-hot ``(B, K, H, W)`` in {0, 1}.

    Example:
        >>> one_hot_masks(torch.tensor([[[0, 2]]]), 3)[0, :, 0, 1].tolist()
        [0.0, 0.0, 1.0]
    """
    return F.one_hot(masks.long(), num_mask_classes).permute(0, 3, 1, 2).float()


class _MaskAwareDiffusion:
    """What both generators share: the UNet, the schedules, settings, config and saving."""

    kind: ClassVar[str]
    num_classes: int
    num_mask_classes: int
    image_shape: tuple[int, int, int]

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: DDPMScheduler,
        *,
        num_mask_classes: int,
        image_channels: int,
        steps: int = 20,
        class_names: Sequence[str] | None = None,
        device: str | torch.device | None = None,
        model_id: str = "mask-diffusion",
        extra_meta: dict[str, Any] | None = None,
    ) -> None:
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = int(steps)
        self._device = default_device(device)
        # ModelMixin.to is typed by a decorator that mypy cannot call through; Module.to moves it.
        self.unet = unet
        torch.nn.Module.to(unet, self._device).eval()
        self.train_scheduler = scheduler
        self.num_classes = int(unet.config["num_class_embeds"])
        self.num_mask_classes = int(num_mask_classes)
        size = int(unet.config["sample_size"])
        self.image_shape = (int(image_channels), size, size)
        self.class_names = (
            list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        )
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"the model has {self.num_classes} classes, got {len(self.class_names)} names"
            )
        self.model_id = model_id
        self._extra_meta = dict(extra_meta or {})
        self._weights = ModulesFingerprint()

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.model_id,
            "weights": self._weights([("unet", self.unet)]),
            "sampler": "ddim",
            "steps": self.steps,
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "num_mask_classes": self.num_mask_classes,
            **copy.deepcopy(self._extra_meta),
        }

    def config_hash(self) -> str:
        return config_digest(self.config)

    def save_pretrained(self, folder: str | os.PathLike[str], **meta: Any) -> Path:
        """Save the UNet and training scheduler (diffusers) and the settings (JSON)."""
        out = Path(folder)
        self.unet.save_pretrained(out / "unet")
        self.train_scheduler.save_pretrained(out / "scheduler")
        write_metadata(
            out,
            {
                "kind": self.kind,
                "class_names": self.class_names,
                "num_mask_classes": self.num_mask_classes,
                "image_channels": self.image_shape[0],
                **self._extra_meta,
                **meta,
            },
        )
        return out

    @classmethod
    def _load(
        cls, folder: str | os.PathLike[str]
    ) -> tuple[UNet2DModel, DDPMScheduler, dict[str, Any]]:
        path = Path(folder)
        meta = read_metadata(path)
        if meta.get("kind") != cls.kind:
            raise ValueError(
                f"{path} holds a {meta.get('kind')!r} model, not a {cls.kind!r} one; load it with "
                "the matching class (MaskDiffusion or JointDiffusion)"
            )
        unet = UNet2DModel.from_pretrained(path / "unet")
        scheduler = DDPMScheduler.from_pretrained(path / "scheduler")
        return unet, scheduler, meta

    @torch.inference_mode()
    def _sample(
        self,
        labels: torch.Tensor,
        seeds: list[int],
        channels: int,
        cond: torch.Tensor | None,
        start: torch.Tensor | None,
        strengths: list[float],
    ) -> torch.Tensor:
        """Denoise ``channels`` channels per sample (SDEdit from ``start`` where given),
        with ``cond`` channels appended to the UNet input; returns the [-1, 1] result."""
        size = self.image_shape[1:]
        noise = torch.stack(
            [
                torch.randn(channels, *size, generator=torch.Generator().manual_seed(s))
                for s in seeds
            ]
        ).to(self.device)
        out = torch.empty_like(noise)
        skipped = [min(int(self.steps * s), self.steps) for s in strengths]
        for k in sorted(set(skipped)):
            idx = [i for i, v in enumerate(skipped) if v == k]
            scheduler = make_scheduler("ddim", self.train_scheduler)
            scheduler.set_timesteps(self.steps, device=self.device)
            timesteps = scheduler.timesteps[self.steps - k :]
            x = noise[idx]
            if start is not None and k < self.steps:
                x = start[idx].to(self.device)
                if len(timesteps):
                    x = scheduler.add_noise(x, noise[idx], timesteps[:1].repeat(len(idx)))
            y = labels[idx].to(self.device)
            c = None if cond is None else cond[idx].to(self.device)
            for t in timesteps:
                inp = x if c is None else torch.cat([x, c], 1)
                eps = self.unet(inp, t.expand(len(idx)), class_labels=y).sample
                x = scheduler.step(eps, t, x).prev_sample
            out[idx] = x
        return out


class MaskDiffusion(_MaskAwareDiffusion, MaskConditionedGenerator):
    """Generate images from segmentation masks, or vary images under their masks.

    Args:
        unet: ``UNet2DModel`` with ``in_channels = C + num_mask_classes``, ``out_channels
            = C`` and ``num_class_embeds = num_classes``.
        scheduler: The training scheduler (its noise schedule drives DDIM).
        num_mask_classes: Mask labels ``0..K-1``.
        steps: DDIM steps.
        class_names: Names of the classes.
        device: Where to generate; default CUDA if available, else CPU.
        model_id: Name recorded in :attr:`config`.

    Example:
        >>> from gdaload.bench.assets import DIGITS_MASK_GENERATOR
        >>> gen = MaskDiffusion.from_pretrained(DIGITS_MASK_GENERATOR, steps=10, device="cpu")
        >>> mask = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> mask[0, 1:7, 3:5] = 2  # a vertical bar: the stroke of a 1
        >>> image = gen.generate([1], [0], mask=mask)
        >>> image.shape, bool(image[:, 0][mask > 0].mean() > image[:, 0][mask == 0].mean() + 0.3)
        (torch.Size([1, 1, 8, 8]), True)
    """

    kind = "mask-diffusion"

    def __init__(
        self, unet: UNet2DModel, scheduler: DDPMScheduler, *, num_mask_classes: int, **kwargs: Any
    ) -> None:
        channels = int(unet.config["out_channels"])
        if int(unet.config["in_channels"]) != channels + num_mask_classes:
            raise ValueError(
                f"a MaskDiffusion UNet takes the image's {channels} channels plus "
                f"{num_mask_classes} mask channels, but its in_channels is "
                f"{unet.config['in_channels']}"
            )
        super().__init__(
            unet, scheduler, num_mask_classes=num_mask_classes, image_channels=channels, **kwargs
        )

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str], **kwargs: Any) -> MaskDiffusion:
        """Load a folder saved by :meth:`save_pretrained` or the trainer."""
        unet, scheduler, meta = cls._load(folder)
        kwargs.setdefault("class_names", meta.get("class_names"))
        kwargs.setdefault("model_id", os.fspath(folder))
        return cls(unet, scheduler, num_mask_classes=int(meta["num_mask_classes"]), **kwargs)

    def generate(
        self,
        labels: torch.Tensor | Sequence[int],
        seeds: Sequence[int],
        *,
        mask: torch.Tensor | None = None,
        source: torch.Tensor | None = None,
        strength: StrengthLike = 0.5,
    ) -> torch.Tensor:
        """One image per ``(label, seed, mask)``; with ``source``, SDEdit of it under ``mask``.

        Args:
            labels: Class labels ``(B,)``.
            seeds: One seed per label.
            mask: ``(B, H, W)`` integer masks (required).
            source: Optional images ``(B, C, H, W)`` to vary; ``mask`` is then theirs.
            strength: With ``source``: 0 returns it, 1 ignores it; a ``(min, max)`` range
                is drawn per sample from its seed.

        Raises:
            ValueError: Without a mask, or on a mask of the wrong size, dtype or labels.
        """
        labels = as_labels(labels, self.num_classes)
        seeds = as_seeds(seeds, len(labels))
        masks = check_mask(mask, len(labels), self.image_shape[1:], self.num_mask_classes)
        if len(labels) == 0:
            return torch.empty(0, *self.image_shape, device=self.device)
        start = None
        strengths = [1.0] * len(labels)
        if source is not None:
            start = check_source(source, self.image_shape, len(labels)).float() * 2 - 1
            strengths = sample_strengths(strength, seeds)
        cond = one_hot_masks(masks, self.num_mask_classes) * 2 - 1
        x = self._sample(labels, seeds, self.image_shape[0], cond, start, strengths)
        return (x.float() / 2 + 0.5).clamp_(0, 1)


class JointDiffusion(_MaskAwareDiffusion, PairGenerator):
    """Generate (image, mask) pairs together: new images with new layouts.

    Args:
        unet: ``UNet2DModel`` with ``in_channels = out_channels = C + num_mask_classes``
            and ``num_class_embeds = num_classes``.
        scheduler: The training scheduler.
        num_mask_classes: Mask labels ``0..K-1``.
        image_channels: ``C``.
        allowed_labels: Per class, the mask labels its masks may hold (the argmax is
            taken over those); None allows every label for every class.
        steps, class_names, device, model_id: As in :class:`MaskDiffusion`.

    Example:
        >>> from gdaload.bench.assets import DIGITS_JOINT_GENERATOR
        >>> gen = JointDiffusion.from_pretrained(DIGITS_JOINT_GENERATOR, steps=10, device="cpu")
        >>> images, masks = gen.generate_pairs([3], [0])
        >>> images.shape, masks.shape, set(masks.unique().tolist()) <= {0, 4}
        (torch.Size([1, 1, 8, 8]), torch.Size([1, 8, 8]), True)
    """

    kind = "joint-diffusion"

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: DDPMScheduler,
        *,
        num_mask_classes: int,
        image_channels: int,
        allowed_labels: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> None:
        total = image_channels + num_mask_classes
        if int(unet.config["in_channels"]) != total or int(unet.config["out_channels"]) != total:
            raise ValueError(
                f"a JointDiffusion UNet denoises {image_channels} image plus {num_mask_classes} "
                f"mask channels ({total}), but it has {unet.config['in_channels']} in and "
                f"{unet.config['out_channels']} out"
            )
        allowed = (
            None if allowed_labels is None else [sorted(int(v) for v in a) for a in allowed_labels]
        )
        super().__init__(
            unet,
            scheduler,
            num_mask_classes=num_mask_classes,
            image_channels=image_channels,
            extra_meta={"allowed_labels": allowed},
            **kwargs,
        )
        if allowed is not None and len(allowed) != self.num_classes:
            raise ValueError(f"allowed_labels needs one list per class ({self.num_classes})")
        self.allowed_labels = allowed

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str], **kwargs: Any) -> JointDiffusion:
        """Load a folder saved by :meth:`save_pretrained` or the trainer."""
        unet, scheduler, meta = cls._load(folder)
        kwargs.setdefault("class_names", meta.get("class_names"))
        kwargs.setdefault("model_id", os.fspath(folder))
        return cls(
            unet,
            scheduler,
            num_mask_classes=int(meta["num_mask_classes"]),
            image_channels=int(meta["image_channels"]),
            allowed_labels=meta.get("allowed_labels"),
            **kwargs,
        )

    def generate_pairs(
        self, labels: torch.Tensor | Sequence[int], seeds: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One ``(image (C, H, W) in [0, 1], mask (H, W) int64)`` pair per ``(label, seed)``,
        batched."""
        labels = as_labels(labels, self.num_classes)
        seeds = as_seeds(seeds, len(labels))
        c, h, w = self.image_shape
        if len(labels) == 0:
            return torch.empty(0, c, h, w, device=self.device), torch.empty(
                0, h, w, dtype=torch.long
            )
        x = self._sample(labels, seeds, c + self.num_mask_classes, None, None, [1.0] * len(labels))
        images = (x[:, :c].float() / 2 + 0.5).clamp_(0, 1)
        logits = x[:, c:].float().cpu()
        if self.allowed_labels is not None:
            keep = torch.zeros(len(labels), self.num_mask_classes, dtype=torch.bool)
            for i, y in enumerate(labels.tolist()):
                keep[i, self.allowed_labels[y]] = True
            logits = logits.masked_fill(~keep[:, :, None, None], float("-inf"))
        return images, logits.argmax(1)
