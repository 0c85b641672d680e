"""StoredSamples: the samples another process generates, read from its store."""

import threading
import time
from pathlib import Path

import pytest
import torch
from checkers import SeedImageGenerator
from torch.utils.data import DataLoader, TensorDataset

from gdaload import GenerativeLoader, SampleStore, StoredSamples
from gdaload.engine import ThreadEngine


def write_later(
    folder: Path, labels: list[int], seeds: list[int], delay: float
) -> threading.Thread:
    """A producer that writes the samples of ``(labels, seeds)`` after ``delay`` seconds."""

    def produce() -> None:
        time.sleep(delay)
        generator = SeedImageGenerator(num_classes=3)
        store = SampleStore.for_generator(folder, generator)
        for i in range(0, len(seeds), 4):  # a few shards, as a pool writes them
            store.put(
                labels[i : i + 4],
                seeds[i : i + 4],
                generator.generate(labels[i : i + 4], seeds[i : i + 4]),
            )

    thread = threading.Thread(target=produce)
    thread.start()
    return thread


def test_waits_for_samples_written_later_and_returns_them_bit_for_bit(tmp_path: Path) -> None:
    generator = SeedImageGenerator(num_classes=3)
    labels, seeds = [0, 1, 2, 0, 1, 2, 0, 1, 2, 1], list(range(100, 110))
    store = SampleStore.for_generator(tmp_path, generator)
    store.put(labels[:3], seeds[:3], generator.generate(labels[:3], seeds[:3]))  # some there
    reader = StoredSamples(tmp_path, like=generator, timeout=20, poll_seconds=0.05)
    assert reader.config_hash() == generator.config_hash()
    producer = write_later(tmp_path, labels[3:], seeds[3:], delay=0.3)
    start = time.monotonic()
    images = reader.generate(labels, seeds)
    producer.join()
    assert time.monotonic() - start >= 0.3  # it waited instead of substituting
    assert torch.equal(images, generator.generate(labels, seeds))


@pytest.mark.parametrize("like", ["config", "hash"])
def test_the_producer_config_or_hash_alone_will_do(tmp_path: Path, like: str) -> None:
    generator = SeedImageGenerator(num_classes=3)
    write_later(tmp_path, [2, 1], [7, 8], delay=0).join()
    reader = StoredSamples(
        tmp_path,
        like=generator.config if like == "config" else generator.config_hash(),
        image_shape=generator.image_shape,
        num_classes=3,
        timeout=5,
    )
    assert reader.config_hash() == generator.config_hash()
    assert torch.equal(reader.generate([2, 1], [7, 8]), generator.generate([2, 1], [7, 8]))


def test_a_loader_streams_what_a_producer_writes_meanwhile(tmp_path: Path) -> None:
    generator = SeedImageGenerator(num_classes=3)
    real = TensorDataset(torch.zeros(12, 1, 4, 4), torch.tensor([i % 3 for i in range(12)]))

    def loader(gen: object) -> GenerativeLoader:
        return GenerativeLoader(
            DataLoader(real, batch_size=4), gen, ratio=1.0, seed=5, engine="thread"
        )

    with loader(generator) as local:
        expected = [x for x, _ in local]
    plan = loader(generator).spec.synthetic_plan()
    producer = write_later(
        tmp_path, plan.labels(0, range(12)).tolist(), plan.seeds(0, range(12)), 0.3
    )
    reader = StoredSamples(tmp_path, like=generator, timeout=20, poll_seconds=0.05)
    with loader(reader) as streamed:
        got = [x for x, _ in streamed]
    producer.join()
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_under_reuse_a_pool_behind_is_covered_by_samples_already_served(tmp_path: Path) -> None:
    generator = SeedImageGenerator(num_classes=3)
    real = TensorDataset(torch.zeros(12, 1, 4, 4), torch.tensor([i % 3 for i in range(12)]))
    plan = GenerativeLoader(DataLoader(real), generator, ratio=1.0).spec.synthetic_plan()
    labels, seeds = plan.labels(0, range(12)).tolist(), plan.seeds(0, range(12))
    write_later(tmp_path, labels, seeds, delay=0).join()  # the pool wrote epoch 0 only
    reader = StoredSamples(tmp_path, like=generator, timeout=30, poll_seconds=0.05)
    with GenerativeLoader(
        DataLoader(real, batch_size=4),
        reader,
        ratio=1.0,
        engine="thread",
        dry_policy="reuse",
        reuse_limit=3,  # slack, should the loop also outpace the reader in epoch 0
        return_mask=True,
    ) as loader:
        first = [(x[m], y[m]) for x, y, m in loader]
        second = [(x[m], y[m]) for x, y, m in loader]  # epoch 1 is never written
    stats = loader.stats()
    assert stats["reused"] >= 12 and stats["generated"] == 12  # read: epoch 0 only

    def samples(batches: list) -> list[tuple[int, bytes]]:
        return [
            (int(y), x.numpy().tobytes()) for xs, ys in batches for x, y in zip(xs, ys, strict=True)
        ]

    # Every sample of epoch 1 is one of epoch 0's, of its own class.
    assert set(samples(second)) <= set(samples(first))


def test_closing_a_thread_engine_ends_a_wait_at_once(tmp_path: Path) -> None:
    generator = SeedImageGenerator(num_classes=3)
    real = TensorDataset(torch.zeros(6, 1, 4, 4), torch.tensor([0, 1, 2] * 2))
    plan = GenerativeLoader(DataLoader(real), generator, ratio=1.0).spec.synthetic_plan()
    reader = StoredSamples(tmp_path, like=generator, timeout=60, poll_seconds=0.05)
    engine = ThreadEngine(reader, pool_size=4, generation_batch_size=2)
    engine.begin_epoch(plan, 0, total=6)  # nothing is ever written: the producer waits
    time.sleep(0.2)
    start = time.monotonic()
    engine.close()
    assert time.monotonic() - start < 1.0 and not engine._thread.is_alive()


@pytest.mark.reliability
def test_a_pool_that_never_writes_times_out_with_the_count_missing(tmp_path: Path) -> None:
    generator = SeedImageGenerator(num_classes=3)
    write_later(tmp_path, [0], [1], delay=0).join()
    reader = StoredSamples(tmp_path, like=generator, timeout=0.2, poll_seconds=0.05)
    with pytest.raises(TimeoutError, match=r"2 of 3 samples .* behind or dead"):
        reader.generate([0, 1, 2], [1, 2, 3])


@pytest.mark.reliability
def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    generator = SeedImageGenerator(num_classes=3)
    with pytest.raises(ValueError, match="image_shape= and num_classes="):
        StoredSamples(tmp_path, like=generator.config)
    with pytest.raises(ValueError, match="timeout"):
        StoredSamples(tmp_path, like=generator, timeout=0)
    other = SampleStore(tmp_path, "0ther")
    with pytest.raises(ValueError, match="not the producer's"):
        StoredSamples(other, like=generator)
