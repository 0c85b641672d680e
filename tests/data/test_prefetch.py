"""GenerativeLoader(prefetch=k): the same batches, merged ahead in a background thread;
errors reach the loop, leaving early stops the thread, resume stays exact."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch
from checkers import SeedImageGenerator
from resume_checkers import assert_same, dataset, plain, stateful, take_epoch
from torch.utils.data import DataLoader

from gdaload import GenerativeLoader
from gdaload.data.prefetch import Prefetcher


def wrap(loader, prefetch: int, engine: str = "sync", generator=None) -> GenerativeLoader:
    return GenerativeLoader(
        loader,
        generator or SeedImageGenerator(num_classes=3),
        ratio=1.3,
        seed=4,
        return_mask=True,
        engine=engine,
        pool_size=8,
        generation_batch_size=4,
        prefetch=prefetch,
    )


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gdaload-prefetch"]


@pytest.mark.parametrize("engine", ["sync", "thread"])
def test_prefetched_batches_are_the_plain_ones_in_order(engine: str) -> None:
    with wrap(plain(), 0, engine) as reference:
        expected = [take_epoch(reference)[0] for _ in range(2)]
    with wrap(plain(), 3, engine) as ahead:
        got = [take_epoch(ahead)[0] for _ in range(2)]
        assert ahead.epoch == 2 and ahead.stats()["batches"] == 10
    for a, b in zip(got, expected, strict=True):
        assert_same(a, b)
    assert not prefetch_threads()


@pytest.mark.parametrize("stop", [1, 3])
def test_state_taken_mid_epoch_counts_only_the_batches_the_loop_got(stop: int) -> None:
    with wrap(plain(), 0) as reference:
        full, _ = take_epoch(reference)
    with wrap(plain(), 2) as interrupted:
        _, state = take_epoch(interrupted, stop)
    assert state["position"]["batches"] == stop
    with wrap(plain(), 2) as resumed:
        resumed.load_state_dict(json.loads(json.dumps(state)))
        rest, _ = take_epoch(resumed)
    assert_same(rest, full[stop:])


def test_a_stateful_loaders_state_is_the_one_after_the_held_batch() -> None:
    with wrap(stateful(0), 0) as reference:
        full, _ = take_epoch(reference)
    with wrap(stateful(0), 3) as interrupted:
        _, state = take_epoch(interrupted, 2)
    # Another shuffle seed: only the restored loader state can give the saved order.
    with wrap(stateful(99), 3) as resumed:
        resumed.load_state_dict(state)
        rest, _ = take_epoch(resumed)
    assert_same(rest, full[2:])


class FailingGenerator(SeedImageGenerator):
    def __init__(self, fail_at_call: int) -> None:
        super().__init__(num_classes=3)
        self.calls, self.fail_at_call = 0, fail_at_call

    def generate(self, labels, seeds):
        self.calls += 1
        if self.calls == self.fail_at_call:
            raise RuntimeError("generator broke")
        return super().generate(labels, seeds)


@pytest.mark.reliability
def test_an_error_while_merging_ahead_reaches_the_loop_in_its_thread() -> None:
    got = []
    loader = wrap(plain(), 2, generator=FailingGenerator(fail_at_call=3))
    with pytest.raises(RuntimeError, match="generator broke") as raised:
        for batch in loader:
            got.append(batch)
    # The batches merged before the failing one are served first, in order.
    assert len(got) == 2
    assert any(frame.name == "generate" for frame in raised.traceback)
    assert not prefetch_threads()


@pytest.mark.reliability
def test_break_and_an_error_in_the_step_stop_the_thread_without_a_hang() -> None:
    slow = DataLoader(dataset(200), batch_size=5)
    loader = wrap(slow, 4)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    start = time.perf_counter()
    loader.close()
    with pytest.raises(KeyError):
        for _ in loader:
            raise KeyError("step failed")
    assert time.perf_counter() - start < 5
    deadline = time.perf_counter() + 5
    while prefetch_threads() and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert not prefetch_threads()


@pytest.mark.reliability
@pytest.mark.parametrize("prefetch", [-1, 1.5, True])
def test_bad_prefetch_is_refused(prefetch) -> None:
    with pytest.raises(ValueError, match="prefetch must be a whole number of batches >= 0"):
        wrap(plain(), prefetch)


def test_the_prefetcher_stops_a_source_that_runs_forever() -> None:
    closed = threading.Event()

    def forever():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    ahead = Prefetcher(forever(), depth=2)
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    ahead.close()
    assert closed.wait(5)
    with pytest.raises(StopIteration):
        next(ahead)
    assert torch.equal(torch.tensor(list(Prefetcher(iter(range(4)), 1))), torch.arange(4))
