"""Synthetic (image, mask) pairs for :class:`~gdaload.GenerativeDataset` and
:class:`~gdaload.GenerativeLoader`: segmentation data.

The wrappers serve pairs when the generator makes them or needs masks:

* a :class:`~gdaload.PairGenerator` (e.g. :class:`~gdaload.JointDiffusion`, or
  :class:`~gdaload.BankedPairs`) makes both from ``(label, seed)``;
* a :class:`~gdaload.MaskConditionedGenerator` (e.g. :class:`~gdaload.MaskDiffusion`) is
  given the real masks as a :class:`~gdaload.MaskBank`: synthetic sample ``(label,
  seed)`` gets real mask number ``seed mod n`` of the ``n`` real masks of its class, so a
  pair is a pure function of (model, config, real masks, label, seed). The bank's digest
  is part of the config hash, so a store filled with other masks is never served.

**One rule for the sample structure**: a synthetic sample has the fields of the real
ones. Real samples ``(image, mask, label)`` (batches ``(x, masks, y)``) get synthetic
``(image, mask, label)``; real ``(image, mask)`` samples (labels given with ``labels=``)
get ``(image, mask)``. A mask is a ``tv_tensors.Mask`` or an integer tensor ``(H, W)``;
synthetic masks take the real masks' type and dtype.

With a store, images and masks are kept in two sibling folders named by the pair
generator's config hash (:meth:`~gdaload.cache.SampleStore.masks_for`), the masks as
int64 exactly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from gdaload.cache.store import SampleStore
from gdaload.data.policies import as_int_labels
from gdaload.engine.base import EngineStats
from gdaload.generators.base import Generator, check_generated
from gdaload.generators.masks import (
    BankedPairs,
    MaskBank,
    MaskConditionedGenerator,
    PairGenerator,
    check_mask,
)

__all__ = [
    "as_pair_generator",
    "check_batch_masks",
    "check_pair_sample",
    "is_mask",
    "loader_pair_setup",
    "make_pairs",
    "mask_like",
    "needs_pairs",
    "pair_setup",
    "real_masks",
    "segmentation_labels",
    "split_masks",
    "take_pairs",
]


def needs_pairs(generator: Any) -> bool:
    """Whether ``generator`` makes (image, mask) pairs or needs masks to make images."""
    return isinstance(generator, (PairGenerator, MaskConditionedGenerator))


def is_mask(value: Any) -> bool:
    """Whether a sample's field is a segmentation mask: a ``tv_tensors.Mask``, or an
    integer tensor ``(H, W)`` (a class label is 0-d)."""
    from torchvision import tv_tensors

    if isinstance(value, tv_tensors.Mask):
        return True
    return (
        isinstance(value, torch.Tensor)
        and value.dim() == 2
        and not value.dtype.is_floating_point
        and value.dtype != torch.bool
    )


def check_pair_sample(sample: Any, index: int, owner: str) -> tuple[Any, Any]:
    """``(image, mask)`` of a real sample, or a ValueError saying what it holds."""
    if not isinstance(sample, (tuple, list)) or len(sample) not in (2, 3):
        raise ValueError(
            f"{owner}: real sample {index} is a {type(sample).__name__}, not an (image, mask) "
            "or (image, mask, label) sample, but the generator makes (image, mask) pairs"
        )
    image, mask = sample[0], sample[1]
    _check_sample_mask(image, mask, f"{owner}: real sample {index}")
    return image, mask


def _check_sample_mask(image: Any, mask: Any, where: str) -> None:
    if isinstance(mask, torch.Tensor) and mask.dtype.is_floating_point:
        raise ValueError(
            f"{where} has a {mask.dtype} mask; masks hold integer labels: convert one-hot "
            "or soft masks with .argmax(0), and label masks with .long()"
        )
    if not is_mask(mask):
        got = (
            f"{mask.dtype} of shape {tuple(mask.shape)}"
            if isinstance(mask, torch.Tensor)
            else type(mask).__name__
        )
        raise ValueError(
            f"{where} has no mask: its second field is {got}, not an integer mask (H, W) "
            "or tv_tensors.Mask. Every sample of a segmentation dataset needs its mask: "
            "drop the samples without one (or give them a background mask), or use a "
            "classification generator"
        )
    if isinstance(image, torch.Tensor) and tuple(image.shape[-2:]) != tuple(mask.shape[-2:]):
        raise ValueError(
            f"{where} has a {tuple(mask.shape[-2:])} mask for a {tuple(image.shape[-2:])} "
            "image; resize masks with nearest-neighbour interpolation (v2.Resize applied "
            "to a tv_tensors.Mask does this) so each pixel keeps its label"
        )


def segmentation_labels(real: Dataset) -> np.ndarray:
    """Class labels of a dataset of ``(image, mask, label)`` samples (the third field),
    read without decoding images where possible (``TensorDataset``, ``Subset``).

    Raises:
        ValueError: For samples without a third field: pass ``labels=[...]``.
    """
    if isinstance(real, Subset):
        return segmentation_labels(real.dataset)[np.asarray(real.indices, dtype=np.int64)]
    if isinstance(real, TensorDataset) and len(real.tensors) >= 3:
        return as_int_labels(real.tensors[2], "the dataset's labels")
    labels = []
    for i in range(len(real)):  # type: ignore[arg-type]
        item = real[i]
        if not isinstance(item, (tuple, list)) or len(item) < 3:
            raise ValueError(
                f"sample {i} is not an (image, mask, label) triple, so its class is unknown; "
                "pass labels=[...] (one class per real sample) or class_policy='uniform'"
            )
        labels.append(int(item[2]))
    return as_int_labels(labels, "the dataset's labels")


def real_masks(real: Dataset, owner: str) -> torch.Tensor:
    """The masks of every real sample, ``(N, H, W)`` int64 (each sample checked)."""
    if isinstance(real, TensorDataset) and len(real.tensors) >= 2 and len(real.tensors[1]):
        check_pair_sample(real[0], 0, owner)
        return check_mask(real.tensors[1], len(real), real.tensors[1].shape[1:], 1 << 62)
    masks = [check_pair_sample(real[i], i, owner)[1] for i in range(len(real))]  # type: ignore[arg-type]
    return torch.stack([torch.as_tensor(m).as_subclass(torch.Tensor).long() for m in masks])


def as_pair_generator(
    generator: Generator,
    masks: torch.Tensor | None,
    labels: Sequence[int] | np.ndarray | None,
    owner: str,
) -> PairGenerator:
    """``generator`` as a :class:`~gdaload.PairGenerator`: itself, or a mask-conditioned
    one drawing the real ``masks`` (of classes ``labels``) from a
    :class:`~gdaload.MaskBank`.

    Raises:
        ValueError: For a mask-conditioned generator without masks or labels, or masks
            the generator cannot take (size, labels).
    """
    if isinstance(generator, PairGenerator):
        return generator
    if not isinstance(generator, MaskConditionedGenerator):
        raise TypeError(f"{owner}: {type(generator).__name__} makes no (image, mask) pairs")
    if masks is None or labels is None:
        raise ValueError(
            f"{owner}: the mask-conditioned {type(generator).__name__} makes each image "
            "from a mask, but no real masks were found; wrap (image, mask, label) samples, "
            "or pass a PairGenerator such as BankedPairs(generator, MaskBank(masks, labels))"
        )
    masks = check_mask(
        masks,
        len(masks),
        generator.image_shape[1:],
        generator.num_mask_classes,
        what="the real masks",
    )
    bank = MaskBank(masks, torch.as_tensor(np.asarray(labels)), generator.num_mask_classes)
    return BankedPairs(generator, bank)


def pair_setup(
    real: Dataset, generator: Generator, labels: Any, owner: str
) -> tuple[PairGenerator, np.ndarray | None]:
    """The pair generator a wrapper over ``real`` uses, and the real class labels
    (``labels`` when given, else the samples' third field; ``None`` for ``(image, mask)``
    samples without ``labels=``).

    Raises:
        ValueError: On real samples without a valid mask, labels of the wrong count, or
            a mask-conditioned generator without masks or labels to draw them by.
    """
    first = real[0]
    check_pair_sample(first, 0, owner)
    num_real = len(real)  # type: ignore[arg-type]
    values: np.ndarray | None = None
    if labels is not None:
        values = as_int_labels(labels, "the labels= given")
    elif len(first) == 3:
        values = segmentation_labels(real)
    if values is not None and len(values) != num_real:
        raise ValueError(f"got {len(values)} labels for {num_real} real samples")
    masks = real_masks(real, owner) if isinstance(generator, MaskConditionedGenerator) else None
    return as_pair_generator(generator, masks, values, owner), values


def loader_pair_setup(
    loader: Any, generator: Generator, labels: Any, engine: str, owner: str
) -> tuple[PairGenerator, np.ndarray | None]:
    """:func:`pair_setup` for a wrapped loader: over ``loader.dataset`` when it has one
    (its masks feed a mask-conditioned generator), else from ``labels`` alone.

    Raises:
        ValueError: As :func:`pair_setup`, and for ``engine="thread"`` (pairs are made
            in the loop's thread).
    """
    if engine != "sync":
        raise ValueError(
            f"{owner} serves (image, mask) pairs with the sync engine only; pass "
            "engine='sync' (or fill a store first, so pairs are read, not generated)"
        )
    dataset = getattr(loader, "dataset", None)
    if dataset is not None:
        return pair_setup(dataset, generator, labels, owner)
    values = None if labels is None else as_int_labels(labels, "the labels= given")
    return as_pair_generator(generator, None, values, owner), values


def split_masks(batch: Any, pairs: bool, owner: str) -> tuple[Any, Any]:
    """``((x, y), masks)`` of a segmentation batch ``(x, masks, y)`` when the wrapper
    serves pairs, else ``(batch, None)``; a batch with masks for a wrapper without a
    pair generator is refused (its synthetic rows would have none)."""
    is_triple = isinstance(batch, (tuple, list)) and len(batch) == 3
    if not pairs:
        if is_triple and isinstance(batch[1], torch.Tensor) and batch[1].dim() == 3:
            raise TypeError(
                f"{owner}: the batches look like (inputs, masks, labels) but the generator "
                "makes images only, so synthetic rows would have no masks; use a "
                "PairGenerator (JointDiffusion, BankedPairs) or a MaskConditionedGenerator "
                "(MaskDiffusion), or drop the masks from the batches"
            )
        return batch, None
    if not is_triple:
        length = f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
        raise TypeError(
            f"{owner} with a pair generator expects batches of (inputs, masks, labels); got "
            f"{type(batch).__name__}{length}. Have the dataset return (image, mask, label)"
        )
    x, masks, y = batch
    if isinstance(x, torch.Tensor):
        check_batch_masks(x, masks, owner)
    return (x, y), masks


def take_pairs(
    pairs: PairGenerator,
    stores: tuple[SampleStore | None, SampleStore | None],
    plan: Any,
    epoch: int,
    positions: range,
    stats: EngineStats,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images, masks, labels)`` of ``positions`` of ``epoch`` of ``plan`` (a
    :class:`~gdaload.data.plan.SyntheticPlan`), counted as served and waited for."""
    start = time.perf_counter()
    labels = plan.labels(epoch, positions)
    images, masks = make_pairs(
        pairs, stores[0], stores[1], labels, plan.seeds(epoch, positions), stats
    )
    stats.wait_seconds += time.perf_counter() - start
    stats.served += len(positions)
    return images, masks, labels


def mask_like(masks: torch.Tensor, like: Any) -> Any:
    """``masks`` (int64) in the type and dtype of a real mask, so a DataLoader collates
    real and synthetic samples together (a ``tv_tensors.Mask`` stays one)."""
    from torchvision import tv_tensors

    dtype = like.dtype if isinstance(like, torch.Tensor) else torch.int64
    out = masks.to(dtype)
    return tv_tensors.Mask(out) if isinstance(like, tv_tensors.Mask) else out


def check_batch_masks(x: torch.Tensor, masks: Any, owner: str) -> torch.Tensor:
    """The masks of a real batch ``(x, masks, y)``, checked: an integer tensor
    ``(B, H, W)`` matching ``x``'s rows and size."""
    if not isinstance(masks, torch.Tensor):
        raise ValueError(
            f"{owner}: the batch's masks are a {type(masks).__name__}, not one integer "
            "tensor (B, H, W); a batch mixes samples with and without masks or was not "
            "stacked: give every sample a mask and use a collate_fn that stacks them"
        )
    return check_mask(
        masks.as_subclass(torch.Tensor),
        len(x),
        x.shape[-2:],
        1 << 62,
        what=f"{owner}: the batch's masks",
    )


def make_pairs(
    pairs: PairGenerator,
    store: SampleStore | None,
    mask_store: SampleStore | None,
    labels: torch.Tensor,
    seeds: list[int],
    stats: EngineStats,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, C, H, W) float32, masks (N, H, W) int64)`` on the CPU for
    ``(labels, seeds)``: stored pairs read back, the rest generated, checked and stored.

    ``store`` keeps the images and ``mask_store`` (its :meth:`SampleStore.masks_for`)
    the masks; a pair counts as stored only when both are.
    """
    n, size = len(seeds), tuple(pairs.image_shape[1:])
    images = torch.empty(n, *pairs.image_shape)
    masks = torch.empty(n, *size, dtype=torch.int64)
    if store is None or mask_store is None:
        missing = list(range(n))
    else:
        lost = set(store.fetch(labels, seeds, images)) | set(mask_store.fetch(labels, seeds, masks))
        missing = sorted(lost)
        stats.cache_hits += n - len(missing)
        stats.cache_misses += len(missing)
    if missing:
        start = time.perf_counter()
        keys, key_seeds = labels[missing], [seeds[i] for i in missing]
        with torch.no_grad():
            made, made_masks = pairs.generate_pairs(keys, key_seeds)
        name = type(pairs).__name__
        check_generated(made, len(missing), pairs.image_shape, source=name, device=pairs.device)
        made_masks = check_mask(
            made_masks, len(missing), size, pairs.num_mask_classes, what=f"the masks {name} made"
        )
        stats.generation_seconds += time.perf_counter() - start
        stats.generated += len(missing)
        images[missing] = made.detach().to("cpu", torch.float32)
        masks[missing] = made_masks
        if store is not None and mask_store is not None:
            store.put(keys, key_seeds, images[missing])
            mask_store.put(keys, key_seeds, made_masks)
    return images, masks
