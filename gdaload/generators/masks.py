"""Generator kinds over segmentation masks, the mask contract, and a bank of masks.

* :class:`MaskConditionedGenerator` makes an image from a mask (and a label), and can
  vary a source image under its mask (SDEdit), so the mask keeps describing the image.
* :class:`PairGenerator` makes (image, mask) pairs from ``(label, seed)`` alone.
* :class:`MaskBank` holds the masks a mask-conditioned generator draws from, and
  :class:`BankedPairs` turns such a generator plus a bank into a :class:`PairGenerator`.

Masks are integer tensors ``(B, H, W)`` of labels ``0..num_mask_classes - 1``, the size
of the images; :func:`check_mask` enforces that on every input and output.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import torch

from gdaload.generators.base import (
    Generator,
    ImageConditionedGenerator,
    StrengthLike,
    as_labels,
    as_seeds,
    config_digest,
)

__all__ = [
    "BankedPairs",
    "MaskBank",
    "MaskConditionedGenerator",
    "PairGenerator",
    "check_mask",
]


def check_mask(
    mask: Any, n: int, size: Sequence[int], num_mask_classes: int, *, what: str = "mask"
) -> torch.Tensor:
    """Validate a batch of masks and return it as CPU ``int64`` ``(n, H, W)``.

    A ``(n, 1, H, W)`` batch is accepted and squeezed.

    Args:
        mask: The masks.
        n: Number of samples.
        size: ``(H, W)`` of the images the masks describe.
        num_mask_classes: Labels allowed: ``0..num_mask_classes - 1``.
        what: Name used in error messages.

    Raises:
        ValueError: On a missing or non-tensor mask, a floating-point or bool dtype, a
            wrong count or size, or labels outside the generator's classes.

    Example:
        >>> check_mask(torch.zeros(2, 4, 4, dtype=torch.uint8), 2, (4, 4), 3).dtype
        torch.int64
    """
    if mask is None:
        raise ValueError(
            f"{what} is missing: a mask-conditioned generator needs one mask (H, W) per "
            "sample; pass mask=, or draw masks with a MaskBank (BankedPairs)"
        )
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{what} must be an integer tensor (B, H, W), got {type(mask).__name__}")
    if mask.dtype.is_floating_point or mask.dtype.is_complex or mask.dtype == torch.bool:
        raise ValueError(
            f"{what} has dtype {mask.dtype}; masks hold integer labels: convert one-hot or "
            "soft masks with .argmax(1), and label masks with .long()"
        )
    if mask.dim() == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.dim() != 3 or mask.shape[0] != n:
        raise ValueError(
            f"{what} must have shape ({n}, H, W), one per sample; got {tuple(mask.shape)}"
        )
    if tuple(mask.shape[1:]) != tuple(size):
        raise ValueError(
            f"{what} is {mask.shape[1]}x{mask.shape[2]} but the images are {size[0]}x{size[1]}; "
            "resize masks with nearest-neighbour interpolation (v2.Resize applied to a "
            "tv_tensors.Mask does this) so each pixel keeps its label"
        )
    mask = mask.to("cpu", torch.int64)
    if mask.numel() and (int(mask.min()) < 0 or int(mask.max()) >= num_mask_classes):
        bad = mask[(mask < 0) | (mask >= num_mask_classes)].unique().tolist()
        raise ValueError(
            f"{what} holds labels {bad[:10]} outside the generator's mask classes "
            f"0..{num_mask_classes - 1}; remap them or use a generator trained on those labels"
        )
    return mask


class MaskConditionedGenerator(ImageConditionedGenerator):
    """A generator that makes each image from a segmentation mask (and its label).

    :meth:`generate` needs ``mask=`` (``(B, H, W)`` integer labels, checked with
    :func:`check_mask`); with ``source=`` it varies the source under its mask, which is
    what :class:`~gdaload.GenerativeAugment` uses to keep a ``tv_tensors.Mask`` valid.

    Example:
        >>> class Paint(MaskConditionedGenerator):
        ...     num_classes, num_mask_classes, image_shape = 2, 3, (1, 2, 2)
        ...     def generate(self, labels, seeds, *, mask=None, source=None, strength=1.0):
        ...         labels = as_labels(labels, self.num_classes)
        ...         mask = check_mask(mask, len(labels), (2, 2), self.num_mask_classes)
        ...         return (mask > 0).float().unsqueeze(1)
        ...     @property
        ...     def config(self):
        ...         return {"kind": "paint"}
        >>> Paint().generate([0], [0], mask=torch.tensor([[[0, 1], [2, 0]]])).flatten().tolist()
        [0.0, 1.0, 1.0, 0.0]
    """

    #: Mask labels are ``0..num_mask_classes - 1`` (0 is the background).
    num_mask_classes: int

    @abc.abstractmethod
    def generate(
        self,
        labels: torch.Tensor | Sequence[int],
        seeds: Sequence[int],
        *,
        mask: torch.Tensor | None = None,
        source: torch.Tensor | None = None,
        strength: StrengthLike = 1.0,
    ) -> torch.Tensor:
        """One image per ``(label, seed, mask)``; raises ``ValueError`` without ``mask``."""


class PairGenerator(Generator):
    """A generator of (image, mask) pairs from ``(label, seed)`` alone.

    :meth:`generate_pairs` returns both; :meth:`generate` returns the images of the same
    pairs, so a pair generator also serves classification consumers.

    Example:
        >>> class Squares(PairGenerator):
        ...     num_classes, num_mask_classes, image_shape = 2, 3, (1, 2, 2)
        ...     def generate_pairs(self, labels, seeds):
        ...         labels = as_labels(labels, self.num_classes)
        ...         masks = (labels + 1).view(-1, 1, 1).expand(-1, 2, 2).clone()
        ...         return torch.ones(len(labels), 1, 2, 2), masks
        ...     @property
        ...     def config(self):
        ...         return {"kind": "squares"}
        >>> Squares().generate_pairs([1], [0])[1].tolist()
        [[[2, 2], [2, 2]]]
    """

    #: Mask labels are ``0..num_mask_classes - 1`` (0 is the background).
    num_mask_classes: int

    @abc.abstractmethod
    def generate_pairs(
        self, labels: torch.Tensor | Sequence[int], seeds: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (B, C, H, W) float in [0, 1], masks (B, H, W) int64)``."""

    def generate(self, labels: torch.Tensor | Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
        return self.generate_pairs(labels, seeds)[0]


class MaskBank:
    """The masks a mask-conditioned generator draws from, per class.

    Sample ``(label, seed)`` gets mask number ``seed mod n_label`` of its class (a pure
    function of the pair, so pairs are as reproducible as images).

    Args:
        masks: ``(N, H, W)`` integer masks (e.g. the few labelled ones).
        labels: ``(N,)`` class of each mask.
        num_mask_classes: Labels a mask may hold; inferred as ``max + 1`` when None.

    Example:
        >>> bank = MaskBank(torch.tensor([[[0, 1]], [[2, 0]]]), torch.tensor([0, 1]))
        >>> bank.draw([1, 0], [7, 7]).tolist()
        [[[2, 0]], [[0, 1]]]
    """

    def __init__(
        self,
        masks: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        num_mask_classes: int | None = None,
    ) -> None:
        if not isinstance(masks, torch.Tensor) or masks.dim() != 3:
            raise ValueError("masks must be an integer tensor (N, H, W)")
        k = int(num_mask_classes or int(masks.max()) + 1)
        self.masks = check_mask(masks, len(masks), masks.shape[1:], k)
        self.labels = torch.as_tensor(labels).long().reshape(-1)
        if len(self.labels) != len(self.masks):
            raise ValueError(f"{len(self.masks)} masks but {len(self.labels)} labels")
        self.num_mask_classes = k
        self.size = tuple(self.masks.shape[1:])
        self._by_class = {
            int(c): torch.nonzero(self.labels == c).flatten().tolist() for c in self.labels.unique()
        }

    def draw(self, labels: torch.Tensor | Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
        """One mask of its class per ``(label, seed)``, ``(B, H, W)`` int64.

        Raises:
            ValueError: For a class the bank has no mask of.
        """
        labels_t = torch.as_tensor(labels).long().reshape(-1)
        seeds = as_seeds(seeds, len(labels_t))
        missing = sorted({int(c) for c in labels_t.tolist()} - set(self._by_class))
        if missing:
            raise ValueError(f"the mask bank has no masks of classes {missing}; add some of each")
        picks = [
            self._by_class[int(c)][s % len(self._by_class[int(c)])]
            for c, s in zip(labels_t.tolist(), seeds, strict=True)
        ]
        return self.masks[picks].clone() if picks else self.masks[:0].clone()

    def fingerprint(self) -> str:
        """Digest of the masks and labels (keys stores of pairs drawn from the bank)."""
        return config_digest(
            {"masks": self.masks.flatten().tolist(), "labels": self.labels.tolist()}
        )


class BankedPairs(PairGenerator):
    """A :class:`PairGenerator` from a mask-conditioned generator and a :class:`MaskBank`:
    each pair's mask is drawn from the bank by ``(label, seed)``, its image generated from it.

    Example:
        >>> from gdaload import MaskDiffusion
        >>> from gdaload.bench.assets import DIGITS_MASK_GENERATOR
        >>> from gdaload.datasets.segmentation import digit_segmentation_splits
        >>> gen = MaskDiffusion.from_pretrained(DIGITS_MASK_GENERATOR, steps=10, device="cpu")
        >>> _, masks, labels = digit_segmentation_splits(shots=2).train.tensors
        >>> pairs = BankedPairs(gen, MaskBank(masks, labels, num_mask_classes=11))
        >>> images, drawn = pairs.generate_pairs([3, 7], [0, 1])
        >>> images.shape, set(drawn[1].unique().tolist()) <= {0, 8}
        (torch.Size([2, 1, 8, 8]), True)
    """

    def __init__(self, generator: MaskConditionedGenerator, bank: MaskBank) -> None:
        if not isinstance(generator, MaskConditionedGenerator):
            raise TypeError(
                f"BankedPairs needs a MaskConditionedGenerator, got {type(generator).__name__}"
            )
        if (
            bank.size != tuple(generator.image_shape[1:])
            or bank.num_mask_classes > generator.num_mask_classes
        ):
            raise ValueError(
                f"the bank's masks ({bank.size}, {bank.num_mask_classes} labels) do not fit "
                f"the generator ({tuple(generator.image_shape[1:])}, "
                f"{generator.num_mask_classes} labels)"
            )
        self.generator, self.bank = generator, bank
        self.num_classes = generator.num_classes
        self.num_mask_classes = generator.num_mask_classes
        self.image_shape = generator.image_shape
        self._bank_key = bank.fingerprint()

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def generate_pairs(
        self, labels: torch.Tensor | Sequence[int], seeds: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        labels = as_labels(labels, self.num_classes)
        masks = self.bank.draw(labels, seeds)
        return self.generator.generate(labels, seeds, mask=masks), masks

    @property
    def config(self) -> dict[str, Any]:
        return {"kind": "banked-pairs", "generator": self.generator.config, "bank": self._bank_key}
