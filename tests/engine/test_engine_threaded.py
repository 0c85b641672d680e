"""The background engine through GenerativeLoader: determinism under asynchrony, dry-pool
policies, error propagation and shutdown."""

import os
import random
import threading
import time
import traceback
import warnings
from collections import Counter

import pytest
import torch
from checkers import SeedImageGenerator
from torch.utils.data import DataLoader, TensorDataset

from gdaload import GenerativeLoader
from gdaload.engine import GenerationStoppedError, ThreadEngine


def real_loader(n: int = 23, batch_size: int = 5, size: int = 4) -> DataLoader:
    ds = TensorDataset(torch.zeros(n, 1, size, size), torch.tensor([i % 3 for i in range(n)]))
    return DataLoader(ds, batch_size=batch_size)


def synthetic_run(loader: GenerativeLoader, epochs: int = 2, step: float = 0.0):
    xs, ys = [], []
    with loader:
        for _ in range(epochs):
            for x, y, mask in loader:
                xs.append(x[mask])
                ys.append(y[mask])
                time.sleep(step)
    return torch.cat(xs), torch.cat(ys)


class JitteryGenerator(SeedImageGenerator):
    """Sleeps a random time per call (private RNG), so thread interleavings differ."""

    def __init__(self, max_sleep: float, rng_seed: int) -> None:
        super().__init__(3)
        self.max_sleep, self.rng = max_sleep, random.Random(rng_seed)

    def generate(self, labels, seeds):
        time.sleep(self.rng.random() * self.max_sleep)
        return super().generate(labels, seeds)


def no_producer_left() -> bool:
    return not any(t.name == "gdaload-producer" for t in threading.enumerate())


@pytest.mark.parametrize(("pool_size", "block"), [(1, 1), (2, 2), (5, 3), (64, 16)])
def test_thread_engine_serves_exactly_the_sync_samples(pool_size: int, block: int) -> None:
    reference = synthetic_run(
        GenerativeLoader(real_loader(), SeedImageGenerator(3), ratio=1.7, seed=3, return_mask=True)
    )
    for run in range(2):
        loader = GenerativeLoader(
            real_loader(),
            JitteryGenerator(0.004, run + pool_size),
            ratio=1.7,
            seed=3,
            return_mask=True,
            engine="thread",
            pool_size=pool_size,
            generation_batch_size=block,
        )
        x, y = synthetic_run(loader, step=random.Random(run).random() * 0.002)
        assert torch.equal(x, reference[0]) and torch.equal(y, reference[1])
        assert loader.stats()["served"] == len(reference[1]) and loader.stats()["reused"] == 0
    assert no_producer_left()


def test_thread_engine_with_diffusion_is_bitwise_stable_and_matches_sync(class_generator) -> None:
    kwargs = dict(ratio=1.0, seed=1, return_mask=True)
    sync = synthetic_run(
        GenerativeLoader(real_loader(9, 3, 8), class_generator, **kwargs), epochs=1
    )
    runs = [
        synthetic_run(
            GenerativeLoader(
                real_loader(9, 3, 8),
                class_generator,
                engine="thread",
                pool_size=pool,
                generation_batch_size=4,
                **kwargs,
            ),
            epochs=1,
        )
        for pool in (4, 12)
    ]
    # Same position-aligned generation batches whatever the pool: identical bits.
    assert torch.equal(runs[0][0], runs[1][0])
    # Other batch composition than the sync path: equal up to batched-kernel rounding.
    torch.testing.assert_close(runs[0][0], sync[0], atol=1e-4, rtol=0)
    assert torch.equal(runs[0][1], sync[1])


def test_wait_policy_counts_the_wait() -> None:
    loader = GenerativeLoader(
        real_loader(),
        JitteryGenerator(0.02, 0),
        ratio=1.0,
        seed=0,
        return_mask=True,
        engine="thread",
        pool_size=4,
        generation_batch_size=2,
        dry_policy="wait",
    )
    synthetic_run(loader, epochs=1)
    stats = loader.stats()
    assert stats["wait_seconds"] > 0 and stats["reused"] == 0 and stats["generated"] >= 23


def test_reuse_policy_contract() -> None:
    reference = synthetic_run(
        GenerativeLoader(
            real_loader(60, 6), SeedImageGenerator(3), ratio=1.5, seed=5, return_mask=True
        )
    )
    gen = JitteryGenerator(0.03, 1)
    loader = GenerativeLoader(
        real_loader(60, 6),
        gen,
        ratio=1.5,
        seed=5,
        return_mask=True,
        engine="thread",
        pool_size=8,
        generation_batch_size=4,
        dry_policy="reuse",
        reuse_limit=2,
    )
    x, y = synthetic_run(loader)
    stats = loader.stats()
    assert stats["reused"] > 0  # the consumer outpaces a 15 ms/call generator
    # Ratio and per-class counts are exact: the plan's labels, position by position.
    assert torch.equal(y, reference[1])
    # Every image is a generated sample of its position's class...
    assert all(gen.label_of(img) == int(lbl) for img, lbl in zip(x, y, strict=True))
    generated = {tuple(img.flatten().tolist()) for img in reference[0]}
    assert all(tuple(img.flatten().tolist()) in generated for img in x)
    # ...positions served fresh hold exactly the wait-policy sample...
    fresh = (x == reference[0]).flatten(1).all(1)
    assert int(fresh.sum()) >= stats["served"] - stats["reused"]
    # ...and no sample is served more than 1 + reuse_limit times.
    assert max(Counter(tuple(img.flatten().tolist()) for img in x).values()) <= 3


def test_reuse_equals_wait_when_generation_keeps_up() -> None:
    reference = synthetic_run(
        GenerativeLoader(real_loader(), SeedImageGenerator(3), ratio=1.0, seed=2, return_mask=True)
    )
    # The pool holds both epochs and warm-up fills it: the pool can never run dry.
    loader = GenerativeLoader(
        real_loader(),
        SeedImageGenerator(3),
        ratio=1.0,
        seed=2,
        return_mask=True,
        engine="thread",
        pool_size=64,
        generation_batch_size=8,
        dry_policy="reuse",
        warmup=True,
        progress=False,
    )
    x, y = synthetic_run(loader)
    assert torch.equal(x, reference[0]) and torch.equal(y, reference[1])
    assert loader.stats()["reused"] == 0 and loader.stats()["warmup_seconds"] > 0


class FailingGenerator(SeedImageGenerator):
    def __init__(self, fail_at: int) -> None:
        super().__init__(3)
        self.fail_at, self.calls, self.raised = fail_at, 0, None

    def generate(self, labels, seeds):
        self.calls += 1
        if self.calls == self.fail_at:
            self.raised = KeyError("model exploded")
            raise self.raised
        return super().generate(labels, seeds)


@pytest.mark.reliability
def test_generator_exception_reaches_the_loop_with_its_traceback() -> None:
    gen = FailingGenerator(fail_at=3)
    loader = GenerativeLoader(
        real_loader(40, 4), gen, ratio=1.0, engine="thread", pool_size=4, generation_batch_size=2
    )
    served = 0
    with pytest.raises(KeyError, match="model exploded") as info:
        for _ in loader:
            served += 1
    assert info.value is gen.raised
    frames = traceback.extract_tb(info.value.__traceback__)
    assert any(f.name == "generate" and f.filename == __file__ for f in frames)
    assert served <= 2  # 4 samples made before the failure: at most two batches
    assert no_producer_left()


@pytest.mark.reliability
def test_clean_shutdown_leaves_no_thread(seed_generator) -> None:
    loader = GenerativeLoader(
        real_loader(),
        seed_generator,
        ratio=1.0,
        engine="thread",
        pool_size=8,
        generation_batch_size=4,
    )
    list(loader)
    assert not no_producer_left()  # kept running into the next epoch
    loader.close()
    assert no_producer_left()
    assert len(list(loader)) == 5  # iterating again restarts it
    loader.close()
    with GenerativeLoader(real_loader(), seed_generator, ratio=1.0, engine="thread") as loader:
        next(iter(loader))
    assert no_producer_left()
    for _ in GenerativeLoader(real_loader(), seed_generator, ratio=1.0, engine="thread"):
        break  # leaving the loop early stops the thread
    assert no_producer_left()


@pytest.mark.reliability
def test_keyboard_interrupt_stops_the_producer_quickly() -> None:
    gen = JitteryGenerator(0.05, 0)
    loader = GenerativeLoader(
        real_loader(400, 4), gen, ratio=2.0, engine="thread", pool_size=4, generation_batch_size=2
    )
    # Ctrl-C lands in the training step while the producer is busy generating ahead.
    with pytest.raises(KeyboardInterrupt):
        for step, _ in enumerate(loader):
            if step == 2:
                raise KeyboardInterrupt
    interrupted = time.monotonic()
    while not no_producer_left() and time.monotonic() - interrupted < 2:
        time.sleep(0.01)
    assert no_producer_left()


@pytest.mark.reliability
def test_sigint_mid_epoch_stops_the_thread_and_leaves_the_store_whole(tmp_path) -> None:
    import signal

    from gdaload.cache.shards import read_shard

    def run(store, interrupt_at: int | None = None) -> torch.Tensor:
        loader = GenerativeLoader(
            real_loader(60, 4),
            JitteryGenerator(0.01, 0),
            ratio=2.0,
            seed=9,
            return_mask=True,
            engine="thread",
            pool_size=8,
            generation_batch_size=2,
            store=store,
        )
        served = []
        for step, (x, _, mask) in enumerate(loader):
            served.append(x[mask])
            if step == interrupt_at:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, as the terminal sends it
                time.sleep(5)  # the signal interrupts the training step
        return torch.cat(served)

    reference = run(None)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path, interrupt_at=5)
    finally:
        signal.signal(signal.SIGINT, previous)
    interrupted = time.monotonic()
    while not no_producer_left() and time.monotonic() - interrupted < 2:
        time.sleep(0.01)
    assert no_producer_left()
    stored = sorted(tmp_path.rglob("*.safetensors"))
    assert stored and not list(tmp_path.rglob("*.tmp"))
    for path in stored:
        read_shard(path)  # whole and verified
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no shard is reported damaged
        assert torch.equal(run(tmp_path), reference)


@pytest.mark.reliability
def test_closed_engine_raises_instead_of_hanging(seed_generator) -> None:
    engine = ThreadEngine(seed_generator, pool_size=2, generation_batch_size=1)
    source = GenerativeLoader(real_loader(), seed_generator)._source()
    engine.begin_epoch(source, 0, total=None)
    engine.close()
    start = time.monotonic()
    with pytest.raises(GenerationStoppedError, match="not running"):
        engine.take(0, range(0, 3))
    assert time.monotonic() - start < 1


def test_stats_report_every_counter(seed_generator) -> None:
    loader = GenerativeLoader(
        real_loader(10, 5),
        seed_generator,
        ratio=1.0,
        engine="thread",
        pool_size=8,
        generation_batch_size=4,
    )
    with loader:
        list(loader)
    stats = loader.stats()
    for key in (
        "generated",
        "served",
        "reused",
        "dropped",
        "cache_hits",
        "cache_misses",
        "wait_seconds",
        "generation_seconds",
        "pool_fill",
        "pool_size",
    ):
        assert key in stats
    assert stats["served"] == stats["synthetic"] == 10 and stats["pool_size"] == 8


def test_dataloader_workers_fork_beside_the_producer() -> None:
    reference = synthetic_run(
        GenerativeLoader(real_loader(), SeedImageGenerator(3), ratio=1.0, seed=6, return_mask=True),
        epochs=3,
    )
    workers = DataLoader(real_loader().dataset, batch_size=5, num_workers=2)
    loader = GenerativeLoader(
        workers,
        JitteryGenerator(0.004, 0),
        ratio=1.0,
        seed=6,
        return_mask=True,
        engine="thread",
        pool_size=8,
        generation_batch_size=4,
    )
    x, y = synthetic_run(loader, epochs=3)  # workers fork anew each epoch, the thread runs on
    assert torch.equal(x, reference[0]) and torch.equal(y, reference[1])
