"""``LRU``: a bounded map that forgets its least recently used entries first.

The in-memory caches of gdaload (decoded sample-store shards, samples kept in memory when
the store cannot write, VAE latents, the views of :class:`~gdaload.GenerativeTTA`) all
keep tensors under hashable keys up to a budget, counted in entries or in bytes. This is
that map, written once. ``functools.lru_cache`` does not fit: the caches are filled and
read by hand (a batch at a time, with misses computed together), and some are bounded
by bytes rather than by entries.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

import torch

__all__ = ["LRU", "tensor_bytes"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes of a tensor's elements (of the view, not of the storage behind it)."""
    return tensor.numel() * tensor.element_size()


def _one(value: object) -> int:
    return 1


class LRU(Generic[K, V]):
    """A map bounded by the total weight of its values; the least recently used go first.

    Each value weighs ``weigh(value)`` (by default 1, so ``capacity`` counts entries).
    :meth:`put` makes an entry the most recent and then drops the least recent ones
    until the total weight fits ``capacity``; a value heavier than ``capacity`` on its
    own is not kept, and drops nothing else. :meth:`get` makes the entry it finds the
    most recent; :meth:`peek`, ``in`` and ``len`` leave the order alone.

    Not thread-safe: an owner that shares one between threads holds its own lock around
    every call (as :class:`~gdaload.cache.SampleStore` and
    :class:`~gdaload.cache.LatentCache` do).

    Args:
        capacity: Most total weight kept (``>= 0``); ``None``: no bound.
        weigh: Weight of one value, e.g. :func:`tensor_bytes` for a budget in bytes.

    Example:
        >>> lru = LRU[str, int](capacity=2)
        >>> lru.put("a", 1), lru.put("b", 2), lru.get("a")
        (True, True, 1)
        >>> lru.put("c", 3)  # "b" is the least recently used
        True
        >>> list(lru), lru.get("b")
        (['a', 'c'], None)
    """

    def __init__(self, capacity: int | None, weigh: Callable[[V], int] | None = None) -> None:
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._weigh: Callable[[V], int] = weigh if weigh is not None else _one
        self._weight = 0
        self._capacity = self._checked(capacity)

    @staticmethod
    def _checked(capacity: int | None) -> int | None:
        if capacity is None:
            return None
        if isinstance(capacity, bool) or int(capacity) != capacity or capacity < 0:
            raise ValueError(f"capacity must be an integer >= 0 or None, got {capacity!r}")
        return int(capacity)

    @property
    def capacity(self) -> int | None:
        """Most total weight kept; lowering it drops the least recently used entries."""
        return self._capacity

    @capacity.setter
    def capacity(self, capacity: int | None) -> None:
        self._capacity = self._checked(capacity)
        self._shrink()

    @property
    def weight(self) -> int:
        """Total weight of the values held."""
        return self._weight

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key`` (now the most recently used), or ``default``."""
        entry = self._entries.get(key)
        if entry is None:
            return default
        self._entries.move_to_end(key)
        return entry[0]

    def peek(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key``, or ``default``, leaving the order alone."""
        entry = self._entries.get(key)
        return default if entry is None else entry[0]

    def put(self, key: K, value: V) -> bool:
        """Keep ``value`` under ``key`` as the most recently used entry.

        Returns:
            Whether it is kept: ``False`` when it alone weighs more than the capacity
            (then any older value of ``key`` is dropped too, and nothing else).
        """
        self.pop(key)
        weight = int(self._weigh(value))
        if self._capacity is not None and weight > self._capacity:
            return False
        self._entries[key] = (value, weight)
        self._weight += weight
        self._shrink()
        return True

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove ``key`` and return its value, or ``default`` when it is not held."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return default
        self._weight -= entry[1]
        return entry[0]

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self._weight = 0

    def _shrink(self) -> None:
        while self._capacity is not None and self._weight > self._capacity:
            _, (_, weight) = self._entries.popitem(last=False)
            self._weight -= weight

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        """Keys from the least to the most recently used."""
        return iter(self._entries)

    def __repr__(self) -> str:
        return f"LRU({len(self)} entries, weight {self._weight} of {self._capacity})"
