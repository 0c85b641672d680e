"""LRU: recency order, weighted capacity, oversized values and capacity changes."""

import pytest
import torch

from gdaload.cache.lru import LRU, tensor_bytes


def test_get_makes_an_entry_recent_and_put_drops_the_least_recent() -> None:
    lru: LRU[str, int] = LRU(capacity=3)
    for key, value in zip("abc", range(3), strict=True):
        assert lru.put(key, value)
    assert lru.get("a") == 0
    assert lru.put("d", 3)
    assert list(lru) == ["c", "a", "d"] and "b" not in lru and lru.get("b") is None
    assert len(lru) == 3 and lru.weight == 3 and lru.capacity == 3


def test_peek_contains_and_len_leave_the_order_alone() -> None:
    lru: LRU[str, int] = LRU(capacity=2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.peek("a") == 1 and "a" in lru and len(lru) == 2
    lru.put("c", 3)
    assert list(lru) == ["b", "c"]  # "a" was only peeked at: still the oldest
    assert lru.peek("a", -1) == -1 and lru.get("a", -1) == -1


def test_put_of_a_held_key_replaces_it_and_makes_it_recent() -> None:
    lru: LRU[str, int] = LRU(capacity=2)
    lru.put("a", 1)
    lru.put("b", 2)
    lru.put("a", 10)
    lru.put("c", 3)
    assert list(lru) == ["a", "c"] and lru.peek("a") == 10 and lru.weight == 2


def test_weighted_capacity_counts_bytes() -> None:
    lru: LRU[int, torch.Tensor] = LRU(capacity=3 * 16, weigh=tensor_bytes)
    for key in range(4):
        assert lru.put(key, torch.zeros(4))  # 16 bytes each
    assert list(lru) == [1, 2, 3] and lru.weight == 48
    assert lru.put(9, torch.zeros(8))  # 32 bytes: the two oldest go
    assert list(lru) == [3, 9] and lru.weight == 48
    assert tensor_bytes(torch.zeros(2, 3, dtype=torch.float64)[0]) == 24  # the view's bytes


def test_a_value_heavier_than_the_capacity_is_not_kept_and_drops_nothing() -> None:
    lru: LRU[int, torch.Tensor] = LRU(capacity=32, weigh=tensor_bytes)
    lru.put(0, torch.zeros(4))
    lru.put(1, torch.zeros(2))
    assert not lru.put(1, torch.zeros(100))
    assert list(lru) == [0] and lru.weight == 16  # the older value of 1 is gone too
    empty: LRU[str, int] = LRU(capacity=0)
    assert not empty.put("a", 1) and len(empty) == 0


def test_pop_clear_unbounded_and_capacity_changes() -> None:
    lru: LRU[int, int] = LRU(capacity=None)
    for key in range(100):
        lru.put(key, key)
    assert len(lru) == 100 and lru.pop(5) == 5 and lru.pop(5, -1) == -1 and len(lru) == 99
    lru.capacity = 3
    assert list(lru) == [97, 98, 99] and lru.weight == 3
    lru.clear()
    assert len(lru) == 0 and lru.weight == 0 and list(lru) == []
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="capacity must be an integer >= 0"):
            LRU(capacity=bad)  # type: ignore[arg-type]
    lru.put(1, 1)
    assert repr(lru) == "LRU(1 entries, weight 1 of 3)"
