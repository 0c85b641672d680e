"""The bounded pool between a background producer and the training loop.

The pool holds generated samples keyed by their position ``(epoch, index)``. The
producer asks :meth:`SamplePool.next_block` what to generate: the block of
``block_size`` positions, aligned to multiples of ``block_size``, that contains the
first position the training loop still needs and that is neither ready nor being
generated, minus positions already passed. It gets nothing while the pool is full
(backpressure). Since the training loop passes no position unserved under the ``wait``
policy, blocks then depend on the positions alone: the generator sees the same batches
in every run, so even batch-sensitive kernels give bit-identical samples whatever the
timing or the pool size.

Under the ``reuse`` policy a :class:`ReuseBank` keeps samples that were already
generated, so that a position whose sample is not ready can be served one of them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from gdaload.engine.base import Position

__all__ = ["DRY_POLICIES", "ReuseBank", "SamplePool", "check_pool_settings"]

#: What the training loop gets when the sample it needs is not ready yet.
DRY_POLICIES = ("wait", "reuse")


def check_pool_settings(pool_size: int, block_size: int, dry_policy: str, reuse_limit: int) -> None:
    """Validate pool settings, naming the fix in the message.

    Raises:
        ValueError: On a pool size < 1, a block size outside ``1..pool_size``, an unknown
            dry policy or a reuse limit < 1.
    """
    if not isinstance(pool_size, int) or pool_size < 1:
        raise ValueError(
            f"pool_size must be an integer >= 1 (samples held ready), got "
            f"{pool_size!r}; e.g. pool_size=4 * generation_batch_size"
        )
    if not isinstance(block_size, int) or not 1 <= block_size <= pool_size:
        raise ValueError(
            f"generation_batch_size must be an integer in 1..pool_size "
            f"({pool_size}), got {block_size!r}; raise pool_size or lower "
            "generation_batch_size"
        )
    if dry_policy not in DRY_POLICIES:
        raise ValueError(f"unknown dry_policy {dry_policy!r}; valid ones are {list(DRY_POLICIES)}")
    if not isinstance(reuse_limit, int) or reuse_limit < 1:
        raise ValueError(
            f"reuse_limit must be an integer >= 1 (times one generated sample "
            f"may be served again), got {reuse_limit!r}; use dry_policy='wait' "
            "to never reuse"
        )


@dataclass
class _Banked:
    """A sample in the :class:`ReuseBank` and how often it has been served."""

    image: torch.Tensor
    serves: int


class ReuseBank:
    """Generated samples that may stand in for a sample that is not ready.

    A stand-in has the label of the position it fills, so per-class counts stay exact.
    Among candidates of that label, the one served the fewest times wins (a sample that
    arrived too late for its own position, never served, comes first), then the most
    recently added. Each sample is served at most ``1 + reuse_limit`` times.

    The bank forgets by age, not by use: when full, the sample added first goes, however
    recently it was served (first in, first out; not an LRU).

    Args:
        capacity: Samples kept; the oldest are forgotten first.
        reuse_limit: Extra times one sample may be served.

    Example:
        >>> bank = ReuseBank(capacity=2, reuse_limit=1)
        >>> bank.add((0, 0), torch.zeros(1, 2, 2), label=3, serves=1)
        >>> bank.take(3).shape, bank.take(3)
        (torch.Size([1, 2, 2]), None)
    """

    def __init__(self, capacity: int, reuse_limit: int) -> None:
        self.capacity, self.reuse_limit = capacity, reuse_limit
        self._order: OrderedDict[Position, int] = OrderedDict()  # position -> label, by age
        self._by_label: dict[int, OrderedDict[Position, _Banked]] = {}

    def add(self, position: Position, image: torch.Tensor, label: int, serves: int) -> None:
        """Offer a sample that has been served ``serves`` times so far."""
        if serves > self.reuse_limit or position in self._order:
            return
        self._order[position] = label
        # A copy: a view would keep its whole generated batch alive in the bank.
        self._by_label.setdefault(label, OrderedDict())[position] = _Banked(image.clone(), serves)
        while len(self._order) > self.capacity:
            old, old_label = self._order.popitem(last=False)
            del self._by_label[old_label][old]

    def take(self, label: int) -> torch.Tensor | None:
        """A stand-in of class ``label``, or ``None`` when none is left."""
        candidates = self._by_label.get(label)
        if not candidates:
            return None
        # Fewest serves; among equals the first met from the newest end, the most recent.
        best = min(reversed(candidates), key=lambda position: candidates[position].serves)
        entry = candidates[best]
        entry.serves += 1
        if entry.serves > self.reuse_limit:
            del candidates[best]
            del self._order[best]
        return entry.image

    def clear(self) -> None:
        """Forget every sample."""
        self._order.clear()
        self._by_label.clear()

    def __len__(self) -> int:
        return len(self._order)


class SamplePool:
    """Ready samples keyed by position, bounded, shared by one producer and one consumer.

    All methods must be called with :attr:`cond` held; it is notified whenever samples
    arrive or leave. The consumer's next position (the *cursor*) and the expected size of
    the current and the next epoch define which positions are worth generating.

    Args:
        capacity: Most samples held ready or being generated.
        block_size: Positions generated together (aligned to multiples of it).
        reuse_limit: Enables the ``reuse`` policy with this limit; ``None``: ``wait``.

    Example:
        >>> pool = SamplePool(capacity=4, block_size=2)
        >>> with pool.cond:
        ...     pool.begin_epoch(0, total=3, next_total=3, new_plan=True)
        ...     token, block = pool.next_block()
        ...     pool.deliver(token, block, torch.zeros(2, 1, 2, 2), [0, 1])
        ...     batch, row, reused = pool.take((0, 0), label=0)
        >>> block, pool.fill()
        ([(0, 0), (0, 1)], 1)
    """

    def __init__(self, capacity: int, block_size: int, reuse_limit: int | None = None) -> None:
        self.capacity, self.block_size = capacity, block_size
        self.cond = threading.Condition()
        self.bank = ReuseBank(capacity, reuse_limit) if reuse_limit is not None else None
        self.dropped = 0
        # position -> (generated batch, row in it, label): rows of one batch served
        # together become one slice, with no copy.
        self._ready: dict[Position, tuple[torch.Tensor, int, int]] = {}
        self._inflight: set[Position] = set()
        self._cursor: Position | None = None
        self._totals: dict[int, int | None] = {}
        self._token = 0

    # ------------------------------------------------------------------ plan
    def begin_epoch(
        self, epoch: int, total: int | None, next_total: int | None, new_plan: bool, start: int = 0
    ) -> None:
        """Move the cursor to position ``start`` (0 unless resumed) of ``epoch`` and forget
        what the plan no longer needs.

        Args:
            new_plan: The labels or seeds of positions changed (another seed, ratio...):
                everything held or being generated is dropped.
        """
        if new_plan:
            self._token += 1
            self.dropped += len(self._ready)
            self._ready.clear()
            self._inflight.clear()
            if self.bank is not None:
                self.bank.clear()
        self._cursor = (epoch, start)
        self._totals = {epoch: total}
        if total is not None:
            self._totals[epoch + 1] = next_total
        for position in [p for p in self._ready if not self._wanted(p)]:
            del self._ready[position]
            self.dropped += 1
        self.cond.notify_all()

    def expect(self, position: Position) -> None:
        """The consumer needs ``position``: extend the epoch if it was expected to end sooner."""
        epoch, index = position
        total = self._totals.get(epoch)
        if total is not None and index >= total:
            self._totals = {epoch: None}
            self.cond.notify_all()

    def _wanted(self, position: Position) -> bool:
        if self._cursor is None or position < self._cursor or position[0] not in self._totals:
            return False
        total = self._totals[position[0]]
        return total is None or position[1] < total

    # ------------------------------------------------------------------ producer side
    def next_block(self) -> tuple[int, list[Position]] | None:
        """Positions to generate next (marked in flight) and the plan's token, or ``None``
        when there is nothing to do or no room."""
        if self._cursor is None:
            return None
        epoch, index = self._cursor
        while True:
            if not self._wanted((epoch, index)):
                if self._totals.get(epoch) is not None and epoch + 1 in self._totals:
                    epoch, index = epoch + 1, 0
                    continue
                return None
            if (epoch, index) not in self._ready and (epoch, index) not in self._inflight:
                break
            index += 1
        start = index - index % self.block_size
        block = [
            (epoch, i)
            for i in range(start, start + self.block_size)
            if self._wanted((epoch, i))
            and (epoch, i) not in self._ready
            and (epoch, i) not in self._inflight
        ]
        room = self.capacity - len(self._ready) - len(self._inflight)
        if len(block) > room:
            if self._cursor not in block:
                return None
            # The consumer is blocked on this block: make room by dropping the samples
            # needed last (they are generated again when their turn comes).
            for position in sorted(self._ready, reverse=True)[: len(block) - room]:
                del self._ready[position]
                self.dropped += 1
        self._inflight.update(block)
        return self._token, block

    def deliver(
        self, token: int, block: list[Position], images: torch.Tensor, labels: list[int]
    ) -> None:
        """Hand over the generated samples of a block from :meth:`next_block`."""
        current = token == self._token
        if current:
            self._inflight.difference_update(block)
        epoch = self._cursor[0] if self._cursor is not None else None
        for row, (position, label) in enumerate(zip(block, labels, strict=True)):
            if current and self._wanted(position):
                self._ready[position] = (images, row, label)
            elif current and self.bank is not None and position[0] == epoch:
                # Too late for its own position: a stand-in for a later one.
                self.bank.add(position, images[row], label, serves=0)
            else:
                self.dropped += 1
        self.cond.notify_all()

    # ------------------------------------------------------------------ consumer side
    def take(self, position: Position, label: int) -> tuple[torch.Tensor, int, bool] | None:
        """The sample for ``position`` (the cursor) as ``(batch, row, reused)``: row
        ``row`` of ``batch``, and whether it is a reused sample. ``None`` when it must be
        waited for. Advances the cursor on success; notify :attr:`cond` afterwards."""
        if position != self._cursor:
            raise RuntimeError(
                f"positions must be taken in order: expected {self._cursor}, got {position}"
            )
        entry = self._ready.pop(position, None)
        if entry is not None:
            batch, row, stored_label = entry
            if self.bank is not None:
                self.bank.add(position, batch[row], stored_label, serves=1)
            result = (batch, row, False)
        elif self.bank is not None and (image := self.bank.take(label)) is not None:
            result = (image[None], 0, True)
        else:
            return None
        self._cursor = (position[0], position[1] + 1)
        return result

    def fill(self) -> int:
        """Samples ready for the consumer."""
        return len(self._ready)

    def reachable(self) -> int | None:
        """Positions from the cursor the plan allows generating ahead (``None``: no bound)."""
        if self._cursor is None:
            return 0
        epoch, index = self._cursor
        total = self._totals.get(epoch)
        if total is None:
            return None
        ahead = max(total - index, 0)
        if epoch + 1 in self._totals:
            following = self._totals[epoch + 1]
            if following is None:
                return None
            ahead += following
        return ahead
