"""Adapters between datasets, loaders and the training loop of the benchmark."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from gdaload.data.loader import GenerativeLoader
from gdaload.seeding import Stream, derive_seed

__all__ = ["BatchAugment", "FixedEpoch", "dataset_tensors"]


class FixedEpoch:
    """Iterate a :class:`~gdaload.GenerativeLoader` at epoch 0 on every pass.

    Every pass then serves the same synthetic samples (those of epoch 0 of the seed
    plan), so a handful of generated images per real one is reused across epochs and
    shared between arms through :class:`~gdaload.bench.memo.MemoGenerator`.

    Example:
        >>> batches = FixedEpoch(GenerativeLoader(loader, generator, ratio=2.0))  # doctest: +SKIP
    """

    def __init__(self, loader: GenerativeLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        self.loader.set_epoch(0)
        return iter(self.loader)


class BatchAugment:
    """Apply a random batch transform to the images of every batch, reproducibly.

    Meant for transforms that draw parameters per sample from the global torch RNG, such
    as kornia's ``RandomAffine``: each batch runs under ``torch.random.fork_rng`` seeded
    from ``(seed, epoch, batch index)``, so the caller's global RNG is left untouched and
    a run is repeatable.

    Args:
        batches: Re-iterable ``(x, y, ...)`` batches; ``set_epoch`` is forwarded.
        transform: Maps an image batch ``(B, C, H, W)`` to one of the same shape.
        seed: Base seed of the per-batch draws.

    Example:
        >>> from kornia.augmentation import RandomAffine
        >>> affine = RandomAffine(degrees=10, p=1.0)
        >>> augmented = BatchAugment(loader, affine, seed=0)  # doctest: +SKIP
    """

    def __init__(
        self, batches: Iterable[Any], transform: Callable[[torch.Tensor], torch.Tensor], seed: int
    ) -> None:
        self.batches, self.transform, self.seed = batches, transform, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the next pass as epoch ``epoch`` (and forward it to the batches)."""
        self.epoch = int(epoch)
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        for index, (x, *rest) in enumerate(self.batches):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(self.seed, Stream.BENCH_AUGMENT, self.epoch, index))
                x = self.transform(x)
            yield (x, *rest)
        self.epoch += 1


def dataset_tensors(dataset: Dataset, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``(images, labels)`` of a dataset of pairs, as two tensors.

    Args:
        dataset: Yields ``(image, label, ...)``; extra items are ignored.
        batch_size: Images read at once (for a dataset that is not a ``TensorDataset``).

    Returns:
        ``(images, labels)``, labels as ``int64``; a ``TensorDataset``'s images are
        returned without a copy.
    """
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0], dataset.tensors[1].long()
    xs, ys = zip(
        *((x, torch.as_tensor(y)) for x, y, *_ in DataLoader(dataset, batch_size)), strict=True
    )
    return torch.cat(xs), torch.cat(ys).long()
