"""GenerativeAugment: a torchvision v2 transform that swaps images for generated variations.

An image-conditioned generator (SDEdit-style: noise the real image part of the way, then
denoise it under the sample's class) turns one training image into a new one of the same
class. :class:`GenerativeAugment` applies that as an ordinary random augmentation, per
sample inside ``v2.Compose`` or per row on batches after the DataLoader.

Randomness never comes from a global random state: whether a sample is replaced, and
the seed of its variation, are derived from ``(seed, epoch, label, image content)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any, cast

import PIL.Image
import torch
from torch.utils._pytree import tree_flatten, tree_unflatten
from torch.utils.data import get_worker_info
from torchvision import tv_tensors
from torchvision.transforms.v2 import Transform
from torchvision.transforms.v2 import functional as F

from gdaload.fingerprint import content_hash
from gdaload.generators.base import (
    Generator,
    ImageConditionedGenerator,
    StrengthLike,
    as_labels,
    check_generated,
    check_source,
    require_kind,
    sample_strengths,
)
from gdaload.generators.masks import MaskConditionedGenerator
from gdaload.seeding import SharedEpoch, Stream, derive_rng, derive_seed
from gdaload.transforms.annotations import mask_rows, sample_mask

__all__ = ["GenerativeAugment"]

LabelsGetter = Callable[[Any], Any]


def _is_image_tensor(inpt: Any) -> bool:
    # Plain tensors of rank < 3 are labels, indices or masks of a sample, never images;
    # excluding them keeps v2's "first plain tensor is the image" rule from picking a
    # 0-d label that comes before the image.
    return (
        isinstance(inpt, torch.Tensor)
        and not isinstance(inpt, tv_tensors.TVTensor)
        and inpt.dim() >= 3
    )


def _is_label_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return (
        isinstance(value, torch.Tensor)
        and not isinstance(value, tv_tensors.TVTensor)
        and value.dim() <= 1
        and not value.dtype.is_floating_point
        and value.dtype != torch.bool
        and not value.dtype.is_complex
    )


def _label_from_mapping(sample: Mapping) -> Any:
    # torchvision's rule: a key named "labels" (any case), else the first containing "label".
    keys = [k for k in sample if isinstance(k, str)]
    exact = [k for k in keys if k.lower() == "labels"]
    partial = [k for k in keys if "label" in k.lower()]
    return sample[(exact + partial)[0]] if exact or partial else None


def _default_labels(sample: Any, images: list[Any]) -> Any:
    """The sample's class label(s): a "label"/"labels" entry of a dict, else the first
    integer (int or integer tensor of rank <= 1) of a tuple that is not an image."""
    if isinstance(sample, Mapping):
        return _label_from_mapping(sample)
    if isinstance(sample, (tuple, list)):
        for item in sample:
            if _is_label_like(item) and not any(item is image for image in images):
                return item
        for item in sample:
            if isinstance(item, Mapping) and (found := _label_from_mapping(item)) is not None:
                return found
    return None


class GenerativeAugment(Transform):
    """Replace images, with probability ``p``, by generated variations of them.

    A torchvision v2 transform: use it inside ``v2.Compose`` on single samples (in
    DataLoader workers, with a CPU generator), or call it on whole batches after the
    loader (``images, labels = augment(images, labels)``, the way to use a GPU
    generator). Each selected image is sent to ``generator.generate(labels, seeds,
    source=image, strength=strength)``, conditioned on the sample's class label.

    **Inputs.** ``tv_tensors.Image``, PIL images (mode ``L`` or ``RGB``) and plain
    tensors ``(C, H, W)`` or ``(B, C, H, W)``, float in [0, 1] or integer (uint8);
    outputs keep the input's type, dtype, range and device. Other entries of a sample
    (labels, metadata) pass through untouched. A ``tv_tensors.Mask`` needs a
    :class:`~gdaload.MaskConditionedGenerator` (e.g. :class:`~gdaload.MaskDiffusion`): the
    variation is drawn under the mask (mask-conditioned SDEdit), which then still
    describes the image and passes through unchanged; with any other generator, and for
    bounding boxes or keypoints, the transform refuses, naming the type. Images must match
    the generator's ``(C, H, W)``; put ``v2.Resize`` / ``v2.Grayscale`` / ``v2.RGB`` before
    this transform, and ``v2.Normalize`` after it.

    **Labels.** By default the label is a dict entry named ``"labels"`` (or containing
    ``"label"``), or, in a tuple sample such as ``(image, label)``, the first int or
    integer tensor of rank <= 1 that is not the image. In batch mode that is one label
    per row. ``labels_getter(sample)`` overrides the lookup; ``label=`` fixes one class
    for every sample.

    **Determinism.** Whether an image is replaced, and the seed of its variation, are a
    pure function of ``(seed, epoch, label, image content)`` (a hash of the image's
    bytes), never of global random state, worker, order or batch composition: the same
    image in the same epoch gets the same variation per sample and per batch row alike.
    :meth:`set_epoch` gives fresh variations for a new epoch. DataLoader workers hold
    copies of the transform; the epoch is shared with them (persistent workers too), so
    call ``set_epoch`` before creating the epoch's iterator.
    Random transforms placed before this one change the image, hence its hash; put
    ``GenerativeAugment`` first to vary each dataset image once per epoch.

    Args:
        generator: An :class:`~gdaload.ImageConditionedGenerator`,
            such as :class:`gdaload.DiffusionGenerator`.
        p: Probability that an image is replaced; 0 is the identity, 1 always replaces.
        strength: How far a variation may move from its source: 0 returns the source, 1
            ignores it. One value, or a ``(min, max)`` range drawn per sample from its seed.
        seed: Base seed of the decisions and of the variations.
        labels_getter: ``"default"`` (see above) or a callable ``sample -> label(s)``.
        label: One class index used for every sample; ignores ``labels_getter``.

    Raises:
        ValueError: If the generator does not take source images, or ``p``,
            ``strength``, ``seed`` or ``label`` is invalid.

    Example:
        >>> from torchvision.transforms import v2
        >>> from gdaload import DiffusionGenerator
        >>> generator = DiffusionGenerator.from_pretrained("path/to/model")  # doctest: +SKIP
        >>> pipeline = v2.Compose([
        ...     GenerativeAugment(generator, p=0.3, strength=(0.3, 0.6)),
        ...     v2.RandomAffine(degrees=10),
        ... ])  # doctest: +SKIP
        >>> image, label = pipeline(image, label)  # doctest: +SKIP
    """

    # Only images: bounding boxes, masks and videos pass through (v2 would otherwise treat
    # every tensor subclass as transformable).
    _transformed_types = (tv_tensors.Image, PIL.Image.Image, _is_image_tensor)
    _epoch: SharedEpoch

    def __init__(
        self,
        generator: Generator,
        p: float = 0.5,
        strength: StrengthLike = 0.5,
        seed: int = 0,
        labels_getter: str | LabelsGetter = "default",
        label: int | None = None,
    ) -> None:
        super().__init__()
        require_kind(
            generator,
            ImageConditionedGenerator,
            "GenerativeAugment",
            "It needs an image-conditioned generator to vary source images: use "
            "gdaload.DiffusionGenerator, or add purely synthetic samples with "
            "gdaload.GenerativeDataset / GenerativeLoader instead",
        )
        if not (isinstance(p, numbers.Real) and 0 <= p <= 1):
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        sample_strengths(strength, [])  # validates a value or a (min, max) range
        if not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if labels_getter != "default" and not callable(labels_getter):
            raise ValueError(
                f'labels_getter must be "default" or a callable sample -> label, '
                f"got {labels_getter!r}"
            )
        if label is not None:
            label = int(as_labels([label], generator.num_classes)[0])
        # require_kind above has checked the kind.
        self.generator: ImageConditionedGenerator = cast(ImageConditionedGenerator, generator)
        self.p: float = float(p)
        self.strength: StrengthLike = (
            tuple(float(s) for s in strength)
            if isinstance(strength, (tuple, list))
            else float(strength)
        )
        self.seed: int = int(seed)
        self.labels_getter: str | LabelsGetter = labels_getter
        self.label: int | None = label
        # Shared with the copies DataLoader workers hold, persistent ones included.
        self._epoch = SharedEpoch()

    @property
    def epoch(self) -> int:
        """The epoch whose decisions and variations are drawn."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Draw the decisions and variations of ``epoch`` (fresh ones for each epoch),
        also in DataLoader workers' copies of this transform, persistent ones included."""
        self._epoch.set(epoch)

    # v2's forward hands make_params only the image leaves, but the label lives elsewhere
    # in the sample; like torchvision's own label-aware transforms (SanitizeBoundingBoxes,
    # MixUp), forward is overridden to read it from the whole sample first.
    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        if self.p == 0:
            return sample
        self._check_worker_device()
        flat_inputs, spec = tree_flatten(sample)
        needs_transform = self._needs_transform_list(flat_inputs)
        images = [inpt for inpt, needs in zip(flat_inputs, needs_transform, strict=True) if needs]
        if not images:
            return sample
        mask = sample_mask(flat_inputs, self.generator, len(images))
        params = {"labels": self._find_labels(sample, images), "mask": mask}
        flat_outputs = [
            self.transform(inpt, params) if needs else inpt
            for inpt, needs in zip(flat_inputs, needs_transform, strict=True)
        ]
        return tree_unflatten(flat_outputs, spec)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, PIL.Image.Image):
            if inpt.mode not in ("L", "RGB"):
                raise ValueError(
                    f"PIL images of mode {inpt.mode!r} are not supported; convert "
                    "them with v2.RGB() or v2.Grayscale() first"
                )
            out = self._augment_tensor(F.pil_to_tensor(inpt), params["labels"], params["mask"])
            return F.to_pil_image(out, mode=inpt.mode)
        out = self._augment_tensor(inpt.as_subclass(torch.Tensor), params["labels"], params["mask"])
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out

    def decisions(self, images: torch.Tensor, labels: Any) -> torch.Tensor:
        """Which images this transform replaces at the current epoch.

        The same pure function the transform uses, so it can be recomputed anywhere (for
        example in the main process to count what DataLoader workers replaced).

        Args:
            images: ``(C, H, W)`` or ``(B, C, H, W)`` images as they reach the transform.
            labels: One label, or one per row.

        Returns:
            Bool tensor ``(B,)`` (``(1,)`` for a single image), on the CPU.
        """
        rows = self._as_rows(images.as_subclass(torch.Tensor))
        plan = self._plan(rows, self._label_rows(labels, len(rows)))
        return torch.tensor([replace for replace, _ in plan], dtype=torch.bool)

    def extra_repr(self) -> str:
        return (
            f"p={self.p}, strength={self.strength}, seed={self.seed}, epoch={self.epoch}, "
            f"generator={self.generator!r}"
        )

    # ------------------------------------------------------------------ internals
    def _check_worker_device(self) -> None:
        if get_worker_info() is not None and self.generator.device.type == "cuda":
            raise RuntimeError(
                "GenerativeAugment has a CUDA generator but runs inside a DataLoader worker "
                "process (forked workers cannot use CUDA, and each would load its own copy of "
                "the model). Apply it to batches after the loader instead "
                "(images, labels = augment(images.cuda(), labels.cuda())), use a CPU "
                "generator in the workers, or add synthetic samples with "
                "gdaload.GenerativeLoader, which generates in the main process."
            )

    def _find_labels(self, sample: Any, images: list[Any]) -> Any:
        if self.label is not None:
            return self.label
        if self.labels_getter == "default":
            found = _default_labels(sample, images)
        else:
            # __init__ accepts "default" or a callable, so anything else is the callable.
            found = cast(LabelsGetter, self.labels_getter)(sample)
        if found is None:
            raise ValueError(
                "GenerativeAugment could not find the sample's class label, and the generator is "
                "class-conditional. Pass samples as (image, label) or as a dict with a 'label' "
                "or 'labels' entry (batches: (images, labels) with one integer label per row), "
                "give labels_getter=lambda sample: ... , or label=<class index> when every "
                f"sample has the same class. Got a sample of type {type(sample).__name__}."
            )
        return found

    def _label_rows(self, labels: Any, n: int) -> torch.Tensor:
        rows = as_labels(labels, self.generator.num_classes)
        if len(rows) == 1 and n > 1:
            rows = rows.expand(n)
        if len(rows) != n:
            raise ValueError(
                f"found {len(rows)} labels for {n} images; GenerativeAugment needs "
                "one integer class label per image (or labels_getter= / label=)"
            )
        return rows

    def _as_rows(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() not in (3, 4):
            raise ValueError(
                f"images must be (C, H, W) or (B, C, H, W), got shape {tuple(image.shape)}"
            )
        return image if image.dim() == 4 else image.unsqueeze(0)

    def _plan(self, rows: torch.Tensor, labels: torch.Tensor) -> list[tuple[bool, int]]:
        """(replace?, generation seed) per row, keyed on seed, epoch, label and content."""
        host = rows.detach().cpu()
        plan = []
        for row, label in zip(host, labels.tolist(), strict=True):
            key = derive_seed(self.seed, Stream.AUGMENT, self.epoch, label, content_hash(row))
            replace = bool(derive_rng(key, Stream.AUGMENT_DECISION).random() < self.p)
            plan.append((replace, derive_seed(key, Stream.AUGMENT_SAMPLE)))
        return plan

    def _augment_tensor(self, image: torch.Tensor, labels: Any, mask: Any = None) -> torch.Tensor:
        rows = self._as_rows(image)
        labels = self._label_rows(labels, len(rows))
        # Mask-conditioned SDEdit: the variation is drawn under the sample's mask, which
        # therefore keeps describing it (see gdaload.transforms.annotations).
        generator = self.generator
        masks = (
            mask_rows(mask, len(rows), generator)
            if isinstance(generator, MaskConditionedGenerator)
            else None
        )
        # Check every image, not just the replaced ones, so a wrong size or range fails
        # at the first sample instead of at a random later one.
        source = F.to_dtype_image(rows, torch.float32, scale=True)
        check_source(source, self.generator.image_shape, len(rows))
        lo, hi = (float(v) for v in source.aminmax()) if source.numel() else (0.0, 1.0)
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(
                f"GenerativeAugment expects images in [0, 1] (or uint8), got values "
                f"in [{lo:.3g}, {hi:.3g}]; apply v2.Normalize after it"
            )
        plan = self._plan(rows, labels)
        chosen = [i for i, (replace, _) in enumerate(plan) if replace]
        if not chosen:
            return image
        index = torch.tensor(chosen, device=rows.device)
        device = self.generator.device
        seeds = [plan[i][1] for i in chosen]
        if isinstance(generator, MaskConditionedGenerator):
            assert masks is not None  # made above for a mask-conditioned generator
            out = generator.generate(
                labels[chosen],
                seeds,
                mask=masks[chosen],
                source=source[index].to(device),
                strength=self.strength,
            )
        else:
            out = self.generator.generate(
                labels[chosen], seeds, source=source[index].to(device), strength=self.strength
            )
        check_generated(
            out,
            len(chosen),
            self.generator.image_shape,
            source=type(self.generator).__name__,
            device=self.generator.device,
        )
        result = rows.clone()
        result[index] = F.to_dtype_image(out.detach().to(rows.device), rows.dtype, scale=True)
        return result if image.dim() == 4 else result[0]
