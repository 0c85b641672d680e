"""Bulk generation on a Ray actor pool (a real local Ray instance), and streaming from it."""

import functools
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from checkers import SeedImageGenerator
from torch.utils.data import DataLoader, TensorDataset

from gdaload import (
    GenerativeDataset,
    GenerativeLoader,
    SampleStore,
    StoredSamples,
    fill_store,
    fill_store_ray,
)
from gdaload.data.bulk import job_samples


def real(n: int = 30) -> TensorDataset:
    return TensorDataset(torch.zeros(n, 1, 4, 4), torch.tensor([i % 3 for i in range(n)]))


def dataset(folder: Path, refresh: float = 1.0) -> GenerativeDataset:
    return GenerativeDataset(
        real(), SeedImageGenerator(num_classes=3), ratio=1.5, seed=3, store=folder, refresh=refresh
    )


def training_loader(
    generator: Any, store: Path | None, refresh: float = 1.0, engine: str = "thread"
) -> GenerativeLoader:
    return GenerativeLoader(
        DataLoader(real(), batch_size=7, shuffle=False),
        generator,
        ratio=1.5,
        seed=3,
        store=store,
        refresh=refresh,
        engine=engine,
    )


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    # Actors unpickle the test generator by reference: its module must be importable there.
    saved = os.environ.get("PYTHONPATH")
    here = str(Path(__file__).parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join([here, *sys.path])
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()
    if saved is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = saved


def test_a_pool_of_two_actors_generates_each_sample_once(local_ray: Any, tmp_path: Path) -> None:
    ds = dataset(tmp_path / "pool", refresh=0.25)
    report = fill_store_ray(ds, range(3), batch_size=8, num_actors=2)
    labels, seeds = job_samples(ds, range(3), who="test")
    assert report.planned == len(seeds) and report.skipped == 0
    assert report.generated == report.planned  # each sample once across the pool
    assert sum(report.per_actor.values()) == report.planned and 1 <= len(report.per_actor) <= 2
    # Whatever order the actors wrote in, the store holds the samples a single process makes.
    fill_store(dataset(tmp_path / "one", refresh=0.25), range(3), rank=0, world=1, progress=False)
    generator = SeedImageGenerator(num_classes=3)
    pooled = SampleStore.for_generator(tmp_path / "pool", generator).get(labels, seeds)
    alone = SampleStore.for_generator(tmp_path / "one", generator).get(labels, seeds)
    assert all(
        a is not None and b is not None and torch.equal(a, b)
        for a, b in zip(pooled, alone, strict=True)
    )
    # A rerun, with each actor building its generator from a factory, has nothing to do.
    again = fill_store_ray(
        dataset(tmp_path / "pool", refresh=0.25),
        range(3),
        num_actors=2,
        generator_factory=SeedImageGenerator,
    )
    assert again.generated == 0 and again.skipped == again.planned
    # A training run over those epochs reads every synthetic sample from the store (the
    # sync engine: the thread engine would run ahead into epoch 3, outside the job).
    with training_loader(generator, tmp_path / "pool", refresh=0.25, engine="sync") as loader:
        for _ in range(3):
            list(loader)
    stats = loader.stats()
    assert stats["generated"] == 0 and stats["cache_misses"] == 0 and stats["cache_hits"] > 0


def test_a_trainer_streams_from_the_store_while_the_pool_fills_it(
    local_ray: Any, tmp_path: Path
) -> None:
    generator = SeedImageGenerator(num_classes=3)
    with training_loader(generator, tmp_path / "local", refresh=0.5) as local:
        expected = [[x for x, _ in local] for _ in range(3)]
    pool = threading.Thread(
        target=fill_store_ray,
        args=(dataset(tmp_path / "pool", refresh=0.5), range(3)),
        kwargs={"num_actors": 2, "batch_size": 16},
    )
    pool.start()
    reader = StoredSamples(
        tmp_path / "pool", like=generator.config, image_shape=(1, 4, 4), num_classes=3
    )
    # No store= for the trainer: the reader serves carried-over samples from the pool's.
    with training_loader(reader, None, refresh=0.5) as streamed:
        got = [[x for x, _ in streamed] for _ in range(3)]
    pool.join()
    # The same batches as generating locally, bit for bit, whenever the pool wrote them.
    assert all(
        torch.equal(a, b)
        for e, g in zip(expected, got, strict=True)
        for a, b in zip(e, g, strict=True)
    )


@pytest.mark.reliability
def test_a_factory_of_another_generator_fails_in_the_actor_with_the_reason(
    local_ray: Any, tmp_path: Path
) -> None:
    other = functools.partial(SeedImageGenerator, num_classes=4)  # another config hash
    with pytest.raises(Exception, match="generator_factory made a generator of config"):
        fill_store_ray(dataset(tmp_path), [0], num_actors=1, generator_factory=other)
    assert len(SampleStore.for_generator(tmp_path, SeedImageGenerator(num_classes=3))) == 0


@pytest.mark.reliability
def test_missing_ray_is_reported_with_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    with pytest.raises(ImportError, match=r"pip install 'gdaload\[ray\]'"):
        fill_store_ray(dataset(tmp_path), [0])


@pytest.mark.reliability
def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a store"):
        fill_store_ray(GenerativeDataset(real(), SeedImageGenerator(num_classes=3)), [0])
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        fill_store_ray(dataset(tmp_path), [-1])
    with pytest.raises(ValueError, match="batch_size"):
        fill_store_ray(dataset(tmp_path), [0], batch_size=0)
    with pytest.raises(ValueError, match="num_actors"):
        fill_store_ray(dataset(tmp_path), [0], num_actors=0)
    with pytest.raises(ValueError, match="num_gpus_per_actor"):
        fill_store_ray(dataset(tmp_path), [0], num_gpus_per_actor=-1)
