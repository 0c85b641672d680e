"""The bounded pool and the reuse bank, driven directly (no thread), plus pool bounds and
settings checked through the loader."""

import threading
import time

import pytest
import torch
from checkers import SeedImageGenerator
from torch.utils.data import DataLoader, TensorDataset

from gdaload import GenerativeLoader
from gdaload.engine import ReuseBank, SamplePool, ThreadEngine


def real_loader(n: int = 12, batch_size: int = 3) -> DataLoader:
    ds = TensorDataset(torch.zeros(n, 1, 4, 4), torch.tensor([i % 3 for i in range(n)]))
    return DataLoader(ds, batch_size=batch_size)


def image(value: float) -> torch.Tensor:
    return torch.full((1, 2, 2), value)


def take(pool: SamplePool, position: tuple[int, int], label: int):
    """The served image and whether it was reused, or None."""
    got = pool.take(position, label)
    return None if got is None else (got[0][got[1]], got[2])


def test_blocks_are_aligned_in_order_and_bounded() -> None:
    pool = SamplePool(capacity=4, block_size=2)
    with pool.cond:
        assert pool.next_block() is None  # no epoch yet
        pool.begin_epoch(0, total=5, next_total=3, new_plan=True)
        blocks = []
        while (work := pool.next_block()) is not None:
            token, block = work
            blocks.append(block)
            pool.deliver(token, block, torch.stack([image(i) for _, i in block]), [0] * len(block))
        assert blocks == [[(0, 0), (0, 1)], [(0, 2), (0, 3)]]  # full: 4 ready
        assert pool.fill() == 4
        for i in range(3):
            assert torch.equal(take(pool, (0, i), 0)[0], image(i))
        # The epoch's last position, then the next epoch, in blocks aligned to its start.
        token, block = pool.next_block()
        assert block == [(0, 4)]
        pool.deliver(token, block, image(4)[None], [0])
        _, block = pool.next_block()
        assert block == [(1, 0), (1, 1)]


@pytest.mark.reliability
def test_positions_must_be_taken_in_order() -> None:
    pool = SamplePool(capacity=2, block_size=1)
    with pool.cond:
        pool.begin_epoch(0, total=None, next_total=None, new_plan=True)
        with pytest.raises(RuntimeError, match="in order"):
            take(pool, (0, 1), 0)


def test_new_plan_drops_everything_held_and_in_flight() -> None:
    pool = SamplePool(capacity=4, block_size=2)
    with pool.cond:
        pool.begin_epoch(0, total=4, next_total=4, new_plan=True)
        old_token, first = pool.next_block()
        pool.deliver(old_token, first, torch.stack([image(0), image(1)]), [0, 0])
        old_token, second = pool.next_block()
        pool.begin_epoch(0, total=4, next_total=4, new_plan=True)
        pool.deliver(old_token, second, torch.stack([image(2), image(3)]), [0, 0])  # stale
        assert pool.fill() == 0 and pool.dropped == 4
        _, block = pool.next_block()
        assert block == [(0, 0), (0, 1)]


def test_estimate_too_small_extends_the_epoch() -> None:
    pool = SamplePool(capacity=4, block_size=2)
    with pool.cond:
        pool.begin_epoch(0, total=1, next_total=1, new_plan=True)
        token, block = pool.next_block()
        assert block == [(0, 0)]
        pool.deliver(token, block, image(0)[None], [0])
        take(pool, (0, 0), 0)
        pool.expect((0, 2))
        _, block = pool.next_block()
        assert block == [(0, 1)]  # block [0, 2) minus the position already served


def test_reuse_bank_same_label_least_served_first_and_limit() -> None:
    bank = ReuseBank(capacity=3, reuse_limit=2)
    bank.add((0, 0), image(0), label=1, serves=1)
    bank.add((0, 1), image(1), label=2, serves=1)
    bank.add((0, 2), image(2), label=1, serves=0)  # arrived too late for its position
    assert bank.take(0) is None
    assert torch.equal(bank.take(1), image(2))  # never served comes first
    assert torch.equal(bank.take(1), image(2))  # now both served once: most recent
    served = [bank.take(1) for _ in range(4)]  # at most 1 + 2 serves each
    assert [float(t[0, 0, 0]) if t is not None else None for t in served] == [0.0, 2.0, 0.0, None]
    bank.add((0, 3), image(3), label=2, serves=0)
    bank.add((0, 4), image(4), label=2, serves=0)
    assert len(bank) == 3  # capacity: the oldest went


def test_reuse_bank_forgets_by_arrival_not_by_use() -> None:
    bank = ReuseBank(capacity=2, reuse_limit=3)
    bank.add((0, 0), image(0), label=1, serves=1)
    bank.add((0, 1), image(1), label=2, serves=1)
    assert torch.equal(bank.take(1), image(0))  # served, yet still the oldest arrival
    bank.add((0, 2), image(2), label=2, serves=1)
    assert bank.take(1) is None and len(bank) == 2
    bank.clear()
    assert len(bank) == 0 and bank.take(2) is None


def test_reuse_policy_serves_a_stand_in_only_when_dry() -> None:
    pool = SamplePool(capacity=4, block_size=2, reuse_limit=1)
    with pool.cond:
        pool.begin_epoch(0, total=6, next_total=None, new_plan=True)
        token, block = pool.next_block()
        pool.deliver(token, block, torch.stack([image(0), image(1)]), [0, 1])
        for position, label in (((0, 0), 0), ((0, 1), 1)):
            got, reused = take(pool, position, label)
            assert not reused and torch.equal(got, image(position[1]))
        got, reused = take(pool, (0, 2), 0)  # dry: position 0's sample stands in
        assert reused and torch.equal(got, image(0))
        assert take(pool, (0, 3), 0) is None  # used up its one reuse: wait


class CountingGenerator(SeedImageGenerator):
    def __init__(self) -> None:
        super().__init__(3)
        self.calls: list[int] = []

    def generate(self, labels, seeds):
        self.calls.append(len(seeds))
        return super().generate(labels, seeds)


def test_backpressure_keeps_the_pool_bounded() -> None:
    gen = CountingGenerator()
    with GenerativeLoader(
        real_loader(30, 3),
        gen,
        ratio=2.0,
        engine="thread",
        pool_size=6,
        generation_batch_size=2,
        warmup=True,
        progress=False,
    ) as loader:
        batches = iter(loader)
        next(batches)
        time.sleep(0.2)  # the producer would run ahead here if nothing held it back
        stats = loader.stats()
        assert stats["pool_fill"] <= 6 and stats["generated"] <= 6 + 6
        for _ in batches:
            assert loader.stats()["pool_fill"] <= 6
    assert max(gen.calls) <= 2
    assert loader.stats()["served"] == 60


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(pool_size=0), "pool_size must be an integer >= 1"),
        (dict(pool_size=-3), "pool_size must be an integer >= 1"),
        (dict(pool_size=4, generation_batch_size=8), "raise pool_size or lower"),
        (dict(reuse_limit=0), "reuse_limit must be an integer >= 1"),
        (dict(dry_policy="skip"), "valid ones are \\['wait', 'reuse'\\]"),
        (dict(engine="process"), "valid ones are \\['sync', 'thread'\\]"),
        (dict(engine="sync", dry_policy="reuse"), "pass engine='thread'"),
        (dict(engine="sync", warmup=8), "pass engine='thread'"),
        (dict(engine="thread", warmup=-1), "warmup must be >= 0"),
    ],
)
def test_bad_engine_settings_are_explained(seed_generator, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        GenerativeLoader(real_loader(), seed_generator, ratio=1.0, **kwargs)


@pytest.mark.reliability
def test_engine_checks_its_settings_and_starts_no_thread_when_invalid(seed_generator) -> None:
    before = threading.active_count()
    with pytest.raises(ValueError, match="pool_size"):
        ThreadEngine(seed_generator, pool_size=0)
    assert threading.active_count() == before
