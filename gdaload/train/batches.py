"""Which data a training step sees: a pure function of the seed and the step's index.

Epochs are orders keyed by ``(seed, tag, epoch)``, so a run resumed at any step draws
the same batches as a run straight through.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from accelerate import skip_first_batches
from torch.utils.data import DataLoader, Dataset, RandomSampler

from gdaload.seeding import Stream, derive_seed

__all__ = ["EpochBatches", "permuted_batch"]


class EpochBatches:
    """The batches of a dataset, one ``DataLoader`` per epoch, looked up by step.

    Epoch ``e`` is the dataset in the order of a ``RandomSampler`` seeded by
    ``(seed, TRAIN_ORDER, e)``, cut into ``len(dataset) // batch_size`` full batches
    (the rest is dropped). Consecutive steps read one loader; a jump (a resumed run)
    builds the epoch's loader and skips its first batches without loading them.

    Args:
        dataset: Map-style dataset.
        batch_size: Items per batch, at most ``len(dataset)``.
        seed: Seeds the orders.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.arange(10))
        >>> batches = EpochBatches(data, batch_size=4, seed=0)
        >>> [batches(step)[0].shape[0] for step in range(3)]  # two batches an epoch
        [4, 4, 4]
        >>> torch.equal(batches(3)[0], EpochBatches(data, 4, seed=0)(3)[0])  # resumed
        True
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int) -> None:
        if not isinstance(dataset, Sized):
            raise TypeError("the dataset needs a length: pass a map-style dataset")
        size = len(dataset)
        if batch_size > size:
            raise ValueError(
                f"batch_size ({batch_size}) is larger than the dataset ({size} items); "
                "lower it, every step needs a full batch"
            )
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.per_epoch = size // batch_size
        self._batches: Iterator[Any] | None = None
        self._next = -1

    def __call__(self, step: int) -> Any:
        """The batch of optimiser step ``step`` (from 0), as the loader collates it."""
        epoch, offset = divmod(step, self.per_epoch)
        if self._batches is None or step != self._next or offset == 0:
            self._batches = iter(self._loader(epoch, offset))
        self._next = step + 1
        return next(self._batches)

    def _loader(self, epoch: int, skip: int) -> DataLoader:
        order = torch.Generator().manual_seed(derive_seed(self.seed, Stream.TRAIN_ORDER, epoch))
        # The loader draws a base seed for workers; its own generator keeps that draw off
        # both the global RNG and the sampler's order.
        draws = torch.Generator().manual_seed(derive_seed(self.seed, Stream.TRAIN_LOADER, epoch))
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            drop_last=True,
            sampler=RandomSampler(self.dataset, generator=order),
            generator=draws,
        )
        return skip_first_batches(loader, skip) if skip else loader


def permuted_batch(
    size: int,
    batch_size: int,
    seed: int,
    tag: int,
    step: int,
    process_index: int = 0,
    num_processes: int = 1,
) -> torch.Tensor:
    """Indices of the items of step ``step``, for data held in one tensor.

    Epochs are permutations keyed by ``(seed, tag, epoch)`` cut into
    ``max(1, size // batch_size)`` batches (a dataset smaller than a batch is one
    batch); each process takes every ``num_processes``-th index of the batch.

    Example:
        >>> permuted_batch(10, 4, seed=0, tag=1, step=0).shape
        torch.Size([4])
        >>> torch.equal(permuted_batch(10, 4, 0, 1, 2), permuted_batch(10, 4, 0, 1, 2))
        True
    """
    epoch, offset = divmod(step, max(1, size // batch_size))
    rng = torch.Generator().manual_seed(derive_seed(seed, tag, epoch))
    index = torch.randperm(size, generator=rng)[offset * batch_size : (offset + 1) * batch_size]
    return index[process_index::num_processes]
