"""How an epoch's real samples are split across distributed ranks, padding excluded.

Under ``torch.distributed`` every rank iterates its own share of the real data, and the
samplers pad the shares to equal length with repeated samples: a
``DistributedSampler`` repeats the first indices; accelerate's prepared loaders
complete the last round of batches from the start of the epoch. Padding always comes
last in a rank's stream. From the sampler's settings alone (no communication), every
rank can tell how many *non-padded* rows each rank yields, so all ranks agree on the
epoch's real count ``N`` without padding, and on the synthetic plan: ``round(ratio * N)``
samples in all, index ``j`` served by rank ``j % world``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch.utils.data import DistributedSampler

__all__ = ["RankSplit", "rank_split"]


@dataclass(frozen=True)
class RankSplit:
    """Non-padded real rows each rank yields in an epoch, and which rank this is.

    Attributes:
        rank: This process's rank.
        rows: Per rank, the rows it yields that are not padding (they come first).

    Example:
        >>> split = RankSplit(rank=1, rows=(12, 11))
        >>> split.world, split.total, split.synthetic_share(7)
        (2, 23, 3)
    """

    rank: int
    rows: tuple[int, ...]

    @property
    def world(self) -> int:
        return len(self.rows)

    @property
    def total(self) -> int:
        """Real samples of the epoch across ranks, padding excluded."""
        return sum(self.rows)

    def synthetic_share(self, total: int) -> int:
        """This rank's part of ``total`` synthetic indices: those ``j`` with
        ``j % world == rank``."""
        return len(range(self.rank, total, self.world))

    def served(self, share: int, rows_seen: int) -> int:
        """Synthetic samples this rank has served after yielding ``rows_seen`` rows: its
        ``share`` spread over its non-padded rows (all of it at once on a rank with
        none)."""
        own = self.rows[self.rank]
        if own == 0:
            return share if rows_seen > 0 else 0
        return math.floor(share * min(rows_seen, own) / own + 0.5)


def rank_split(loader: Any) -> RankSplit | None:
    """The split of ``loader``'s epoch across ranks, when its sampler says it.

    Understood: a ``DataLoader`` with a ``DistributedSampler``, and one prepared by
    ``accelerate`` (batches dealt round-robin to processes, ``split_batches=False``).
    ``None`` for anything else (one process, or a split that cannot be read).
    """
    batch_sampler = getattr(loader, "batch_sampler", None)
    if type(batch_sampler).__name__ == "BatchSamplerShard":
        return _accelerate_split(batch_sampler)
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler) and sampler.num_replicas > 1:
        size = getattr(batch_sampler, "batch_size", None)
        drop_last = bool(getattr(batch_sampler, "drop_last", False))
        return _distributed_sampler_split(sampler, size, drop_last)
    return None


def _distributed_sampler_split(
    sampler: DistributedSampler, batch_size: int | None, drop_last: bool
) -> RankSplit:
    world, per_rank = sampler.num_replicas, sampler.num_samples
    # Rank q's i-th sample is position i * world + q of the padded index list; positions
    # past the dataset are the repeated ones (the sampler's drop_last cuts instead).
    limit = sampler.total_size if sampler.drop_last else len(sampler.dataset)  # type: ignore[arg-type]
    yielded = per_rank // batch_size * batch_size if drop_last and batch_size else per_rank
    rows = tuple(max(0, min(yielded, math.ceil((limit - q) / world))) for q in range(world))
    return RankSplit(int(sampler.rank), rows)


def _accelerate_split(shard: Any) -> RankSplit | None:
    world = int(shard.num_processes)
    base = shard.batch_sampler
    size = getattr(base, "batch_size", None)
    if shard.split_batches or world < 1 or not size:
        return None
    try:
        length = len(base.sampler)
    except (AttributeError, TypeError):
        return None
    sizes = [size] * (length // size)
    if length % size and not shard.drop_last:
        sizes.append(length % size)
    if shard.drop_last:
        # accelerate drops the last round of batches unless every process gets one.
        sizes = sizes[: len(sizes) // world * world]
    rows = tuple(sum(sizes[q::world]) for q in range(world))
    return RankSplit(int(shard.process_index), rows)
