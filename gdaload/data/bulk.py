"""Bulk generation: fill a store with the synthetic samples of a range of epochs, split
across the processes of a ``torchrun`` or ``accelerate launch`` job.

Every process computes the same list of samples to make (the plan's label and seed of
every synthetic index of every epoch, the samples that partial refresh carries over
from an epoch in the range left out), cuts it into blocks of ``batch_size`` and takes
the blocks ``b`` with ``b % world == rank``. So each sample is generated once across the
job, no process talks to another (none can hang waiting for a dead one), and a rerun
skips what the store already holds: after a process dies, running the job again
completes its share.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from gdaload.engine.base import EngineStats

if TYPE_CHECKING:
    from gdaload.data.dataset import GenerativeDataset
    from gdaload.data.plan import SyntheticPlan

__all__ = ["BulkReport", "fill_store", "job_samples", "process_rank_world"]


@dataclass
class BulkReport:
    """What one process did in :func:`fill_store`.

    Attributes:
        rank: This process's rank.
        world: Processes sharing the work.
        planned: Samples of the whole job (all processes).
        assigned: Samples this process was given.
        generated: Samples it generated.
        skipped: Samples it found in the store already.
        seconds: Wall time it took.

    Example:
        >>> report = BulkReport(0, 2, 100, 50, 20, 30, 4.0)
        >>> round(report.samples_per_second, 1)
        5.0
    """

    rank: int
    world: int
    planned: int
    assigned: int
    generated: int
    skipped: int
    seconds: float

    @property
    def samples_per_second(self) -> float:
        """Generated samples per second of this process."""
        return self.generated / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "samples_per_second": self.samples_per_second}


def process_rank_world() -> tuple[int, int]:
    """``(rank, world)`` of this process: from ``torch.distributed`` when initialised,
    else from the ``RANK`` / ``WORLD_SIZE`` variables that ``torchrun`` and ``accelerate
    launch`` set, else ``(0, 1)``.

    Raises:
        ValueError: If the variables are malformed or the rank is outside the world.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError as err:
        raise ValueError(f"RANK / WORLD_SIZE must be integers: {err}") from err
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not a rank of WORLD_SIZE={world}")
    return rank, world


def fill_store(
    dataset: GenerativeDataset,
    epochs: Iterable[int],
    *,
    batch_size: int = 64,
    rank: int | None = None,
    world: int | None = None,
    progress: bool = True,
) -> BulkReport:
    """Generate this process's share of the synthetic samples of ``epochs`` into
    ``dataset``'s store, skipping those already stored.

    Args:
        dataset: The :class:`~gdaload.GenerativeDataset` whose plan (ratio, policy, seed,
            real labels, refresh) and store to use.
        epochs: The epochs whose samples a training run will serve.
        batch_size: Samples per ``generate`` call; also the block dealt to processes.
        rank: This process (default: :func:`process_rank_world`).
        world: Number of processes (default: :func:`process_rank_world`).
        progress: Show a progress bar (on rank 0 only).

    Raises:
        ValueError: Without a store, on a negative epoch, a ``batch_size`` below 1, or a
            rank outside the world.

    Example:
        >>> ds = GenerativeDataset(real, generator, ratio=2, store="runs/samples")  # doctest: +SKIP
        >>> report = fill_store(ds, range(40))  # this rank's share  # doctest: +SKIP
        >>> report.generated, report.skipped  # doctest: +SKIP
        (1600, 0)
    """
    all_labels, seeds = job_samples(dataset, epochs, who="fill_store")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if rank is None or world is None:
        rank, world = process_rank_world()
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not a rank of a world of {world}")
    start = time.perf_counter()
    # Blocks run across epoch boundaries, so processes' shares differ by a block at most.
    blocks = [range(i, min(i + batch_size, len(seeds))) for i in range(0, len(seeds), batch_size)]
    mine = blocks[rank::world]
    stats = EngineStats()
    with tqdm(
        total=sum(len(block) for block in mine),
        desc=f"gdaload generate (rank {rank}/{world})",
        unit="sample",
        disable=True if not progress or rank != 0 else None,
    ) as bar:
        for block in mine:
            dataset.make_block(
                all_labels[block.start : block.stop], seeds[block.start : block.stop], stats
            )
            bar.update(len(block))
    return BulkReport(
        rank=rank,
        world=world,
        planned=len(seeds),
        assigned=sum(len(block) for block in mine),
        generated=stats.generated,
        skipped=stats.cache_hits,
        seconds=time.perf_counter() - start,
    )


def job_samples(
    dataset: GenerativeDataset, epochs: Iterable[int], *, who: str
) -> tuple[torch.Tensor, list[int]]:
    """Labels and seeds of every sample a bulk job over ``epochs`` makes, in plan order
    (epoch by epoch, index by index); what :func:`fill_store` deals to processes and
    :func:`~gdaload.data.ray_pool.fill_store_ray` maps over a Ray actor pool.

    Args:
        dataset: Its plan (ratio, policy, seed, real labels, refresh) and store.
        epochs: The epochs whose samples a training run will serve.
        who: The caller, named in error messages.

    Raises:
        ValueError: When ``dataset`` has no store, or on a negative epoch.
    """
    if dataset.store is None:
        raise ValueError(f"{who} needs a store: GenerativeDataset(..., store=folder)")
    epochs = sorted(set(int(e) for e in epochs))
    if any(epoch < 0 for epoch in epochs):
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    plan = dataset.spec.synthetic_plan()
    labels, seeds = [], []
    for epoch in epochs:
        todo = _to_make(plan, dataset.num_synthetic, epoch, epochs)
        labels.append(plan.labels(epoch, todo))
        seeds += plan.seeds(epoch, todo)
    return (torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)), seeds


def _to_make(plan: SyntheticPlan, count: int, epoch: int, epochs: list[int]) -> list[int]:
    """The first ``count`` synthetic indices of ``epoch`` to make, leaving out those
    partial refresh carries over from another epoch of the job (made there, once) and
    hard-example variations (never stored: made when read)."""
    source = plan.source_epochs(epoch, range(count))
    plain = plan.variations(epoch, range(count))[0] < 0
    return np.flatnonzero(((source == epoch) | ~np.isin(source, epochs)) & plain).tolist()
