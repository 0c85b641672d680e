"""The synthetic plan: label and seed of every synthetic position of an epoch.

Shared by :class:`~gdaload.GenerativeLoader` and :class:`~gdaload.GenerativeDataset`, so
both serve the same samples for the same seed, policy and ratio.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gdaload.data.feedback import FeedbackHistory, smoothed_error
from gdaload.data.hard import HardExamples, active, variation_sources
from gdaload.data.policies import plan_labels
from gdaload.seeding import SeedPlan
from gdaload.seeding.refresh import source_epochs
from gdaload.seeding.vectorised import plan_seeds

__all__ = ["SyntheticPlan"]


@functools.lru_cache(maxsize=4)
def _label_plan(
    seed: int,
    policy: str,
    class_counts: tuple[int, ...] | None,
    ratio: float,
    num_classes: int,
    epoch: int,
    error: tuple[float, ...] | None = None,
) -> np.ndarray:
    rng = SeedPlan(seed).label_rng(epoch)
    if class_counts is None:
        bag = np.arange(num_classes)
        return plan_labels("uniform", np.ones_like(bag), len(bag), rng)
    total = math.floor(ratio * sum(class_counts) + 0.5)
    return plan_labels(policy, np.asarray(class_counts), max(total, 1), rng, error)


@functools.lru_cache(maxsize=4)
def _source_plan(labels_key: tuple, entry: HardExamples) -> np.ndarray:
    return variation_sources(_label_plan(*labels_key), entry)


#: Seeds are derived in aligned chunks of this many indices: one vectorised derivation
#: serves many small requests.
_SEED_CHUNK = 1024


@functools.lru_cache(maxsize=64)
def _seed_chunk(seed: int, epoch: int, chunk: int) -> np.ndarray:
    start = chunk * _SEED_CHUNK
    return np.asarray(
        plan_seeds(SeedPlan(seed), epoch, range(start, start + _SEED_CHUNK)), dtype=np.uint64
    )


@dataclass(frozen=True)
class SyntheticPlan:
    """Label and seed of every synthetic position; equal plans serve equal samples.

    Position ``k`` of a rank is the plan's synthetic index ``j = k * world + rank``. With
    ``refresh < 1`` only that fraction of indices gets a fresh seed each epoch; the others
    keep their earlier epoch's seed and their label (labels are then those of epoch 0's
    order, so carried-over samples keep the class counts exact).

    Example:
        >>> plan = SyntheticPlan(0, "match", (2, 1, 1), 1.0, 3, rank=0, world=1)
        >>> sorted(plan.labels(0, range(4)).tolist())  # the real frequencies, shuffled
        [0, 0, 1, 2]
        >>> plan.seeds(0, [5]) == [SeedPlan(0).sample_seed(0, 5)]
        True
    """

    seed: int
    policy: str
    class_counts: tuple[int, ...] | None
    ratio: float
    num_classes: int
    rank: int
    world: int
    refresh: float = 1.0
    #: ``feedback`` policy: the per-class errors handed over, by the epoch they are for.
    feedback: FeedbackHistory = ()
    #: Hard-example hand-overs, by the first epoch they apply to (see
    #: :mod:`gdaload.data.hard`).
    hard: tuple[HardExamples, ...] = ()

    def _indices(self, positions: Sequence[int]) -> np.ndarray:
        return np.asarray(positions, dtype=np.int64) * self.world + self.rank

    def _labels_key(self, epoch: int) -> tuple:
        # Under partial refresh a position keeps its label for good, so that a sample
        # carried over from an earlier epoch fits the counts of this one.
        label_epoch = epoch if self.refresh >= 1.0 else 0
        error = smoothed_error(self.feedback, label_epoch) if self.policy == "feedback" else None
        return (
            self.seed,
            self.policy,
            self.class_counts,
            self.ratio,
            self.num_classes,
            label_epoch,
            error,
        )

    def labels(self, epoch: int, positions: Sequence[int]) -> torch.Tensor:
        plan = _label_plan(*self._labels_key(epoch))
        return torch.as_tensor(plan[self._indices(positions) % len(plan)], dtype=torch.long)

    def variations(self, epoch: int, positions: Sequence[int]) -> tuple[np.ndarray, float]:
        """The real-dataset index each position varies (-1: a plain sample), and the
        SDEdit strength of the variations (see :mod:`gdaload.data.hard`)."""
        entry = active(self.hard, epoch)
        if entry is None:
            return np.full(len(positions), -1, dtype=np.int64), 0.0
        sources = _source_plan(self._labels_key(epoch), entry)
        return sources[self._indices(positions) % len(sources)], entry.strength

    def source_epochs(self, epoch: int, positions: Sequence[int]) -> np.ndarray:
        """The epoch whose sample each position holds: ``epoch`` itself unless partial
        refresh carries an earlier epoch's sample over (see :mod:`gdaload.seeding.refresh`)."""
        return source_epochs(epoch, self._indices(positions), self.refresh)

    def seeds(self, epoch: int, positions: Sequence[int]) -> list[int]:
        indices = self._indices(positions)
        epochs = source_epochs(epoch, indices, self.refresh)
        chunks = indices // _SEED_CHUNK
        out = np.empty(len(indices), dtype=np.uint64)
        for source, chunk in np.unique(np.stack([epochs, chunks]), axis=1).T.tolist():
            rows = (chunks == chunk) & (epochs == source)
            out[rows] = _seed_chunk(self.seed, source, chunk)[indices[rows] % _SEED_CHUNK]
        return out.tolist()
