"""Bulk generation on a Ray cluster: the samples of a range of epochs generated into a
store by a pool of actors, one per GPU (or per CPU slot).

The rows are the job's samples as :func:`~gdaload.data.bulk.fill_store` lists them
(:func:`~gdaload.data.bulk.job_samples`), mapped through Ray Data's ``map_batches``
with a fixed pool of actors. Each actor builds its generator once, opens the store and
calls :func:`~gdaload.engine.base.make_samples` per batch, so stored samples are skipped
and new ones written under their ``(label, seed)``. Output order never matters: a sample
is found by its key, not by where it arrives, and the driver receives only counts, never
images. Ray is an optional dependency (``pip install 'gdaload[ray]'``), imported when
:func:`fill_store_ray` is called.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gdaload.cache.store import SampleStore
from gdaload.data.bulk import job_samples
from gdaload.engine.base import EngineStats, make_samples
from gdaload.generators.base import Generator

if TYPE_CHECKING:
    from gdaload.data.dataset import GenerativeDataset

__all__ = ["PoolReport", "fill_store_ray"]

#: Makes the generator inside an actor; called once per actor.
GeneratorFactory = Callable[[], Generator]


@dataclass
class PoolReport:
    """What :func:`fill_store_ray` did, over the whole pool.

    Attributes:
        planned: Samples of the job.
        generated: Samples the actors generated.
        skipped: Samples they found in the store already.
        seconds: Wall time, pool start-up included.
        per_actor: Samples each actor handled (generated or skipped), keyed by
            ``host:pid`` of the actor's process.

    Example:
        >>> report = PoolReport(100, 60, 40, 3.0, {"node-a:101": 50, "node-b:202": 50})
        >>> report.samples_per_second, len(report.per_actor)
        (20.0, 2)
    """

    planned: int
    generated: int
    skipped: int
    seconds: float
    per_actor: dict[str, int] = field(default_factory=dict)

    @property
    def samples_per_second(self) -> float:
        """Generated samples per second of the pool."""
        return self.generated / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "samples_per_second": self.samples_per_second}


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError that names the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra is ray[data]; plain ray lacks it)
    except ImportError as err:
        raise ImportError(
            f"fill_store_ray needs Ray Data, which is not installed ({err}); install "
            "gdaload's Ray extra: pip install 'gdaload[ray]'"
        ) from err
    return ray


class _KeepGenerator:
    """The default factory: the dataset's own generator, shipped to each actor by Ray's
    pickling (its weights included, so best for small models)."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    def __call__(self) -> Generator:
        return self.generator


class _StoreFiller:
    """A pool actor: one generator and one store, a batch of plan rows per call."""

    def __init__(self, factory: GeneratorFactory, store: SampleStore) -> None:
        self.generator = factory()
        if self.generator.config_hash() != store.config_hash:
            raise ValueError(
                f"generator_factory made a generator of config {self.generator.config_hash()}, "
                f"but the dataset's store holds config {store.config_hash}; the factory must "
                "make the dataset's generator (same weights and settings)"
            )
        self.store = store  # unpickled: re-reads the folder index on first use
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stats = EngineStats()
        make_samples(
            self.generator,
            self.store,
            torch.as_tensor(batch["label"], dtype=torch.long),
            [int(s) for s in batch["seed"]],
            stats,
        )
        return {
            "actor": np.array([self.name]),
            "generated": np.array([stats.generated]),
            "skipped": np.array([stats.cache_hits]),
        }


def fill_store_ray(
    dataset: GenerativeDataset,
    epochs: Iterable[int],
    *,
    batch_size: int = 64,
    num_actors: int | None = None,
    num_gpus_per_actor: float | None = None,
    generator_factory: GeneratorFactory | None = None,
) -> PoolReport:
    """Generate the synthetic samples of ``epochs`` into ``dataset``'s store on a Ray
    cluster, skipping those already stored.

    The job's samples are the same as :func:`~gdaload.data.bulk.fill_store`'s (every
    synthetic index of every epoch, samples that partial refresh carries over left to
    their source epoch); a pool of ``num_actors`` actors takes them ``batch_size`` at a
    time, as fast as each actor goes. Every sample is in exactly one batch, so it is
    generated once; a rerun after a failure generates only what is missing. Connect to
    the cluster first (``ray.init(address=...)``); without that, Ray starts a local
    instance. The store folder must be one every node reads and writes (a shared file
    system), and a store that fell back to memory is refused.

    Args:
        dataset: The :class:`~gdaload.GenerativeDataset` whose plan and store to use.
        epochs: The epochs whose samples a training run will serve.
        batch_size: Samples per ``generate`` call of an actor.
        num_actors: Size of the actor pool (default: one per GPU of the cluster, or
            one per CPU without GPUs).
        num_gpus_per_actor: GPUs each actor reserves (default: 1 when the cluster has
            GPUs, else 0; each actor then reserves one CPU).
        generator_factory: A picklable callable that builds the generator inside each
            actor, once, e.g. ``functools.partial(DiffusionGenerator.from_pretrained,
            "my-model/", device="cuda")``, so weights load from the model folder on each
            node instead of travelling from the driver. It must make the dataset's
            generator (same config hash). Default: the dataset's generator, pickled to
            each actor with its weights (fine for small models); it runs there on the
            device it has, so for GPU actors hand over a CUDA generator or a factory.

    Returns:
        A :class:`PoolReport`: planned, generated, skipped, seconds, per-actor counts.

    Raises:
        ImportError: When Ray Data is not installed (names the ``gdaload[ray]`` extra).
        ValueError: Without a store or with one kept in memory, on a negative epoch, a
            ``batch_size`` or ``num_actors`` below 1, a negative GPU count, or a
            dataset of (image, mask) pairs.

    Example:
        >>> import functools, ray  # doctest: +SKIP
        >>> ray.init(address="auto")  # doctest: +SKIP
        >>> factory = functools.partial(DiffusionGenerator.from_pretrained, "m/")  # doctest: +SKIP
        >>> report = fill_store_ray(dataset, range(40), generator_factory=factory)  # doctest: +SKIP
        >>> report.generated + report.skipped == report.planned  # doctest: +SKIP
        True
    """
    if dataset.serves_pairs:
        raise ValueError(
            "fill_store_ray fills images only, and this dataset serves (image, mask) pairs; "
            "use dataset.fill_store(), which stores both"
        )
    labels, seeds = job_samples(dataset, epochs, who="fill_store_ray")
    store = dataset.store
    assert store is not None  # job_samples refuses a dataset without one
    if store.memory_only:
        raise ValueError(
            f"the store at {store.folder} fell back to memory (not writable here); the pool "
            "would write nothing that training could read: use a writable shared folder"
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if num_actors is not None and (not isinstance(num_actors, int) or num_actors < 1):
        raise ValueError(f"num_actors must be an integer >= 1, got {num_actors!r}")
    if num_gpus_per_actor is not None and not num_gpus_per_actor >= 0:
        raise ValueError(f"num_gpus_per_actor must be >= 0, got {num_gpus_per_actor!r}")
    ray = import_ray()
    if not seeds:
        return PoolReport(planned=0, generated=0, skipped=0, seconds=0.0)
    start = time.perf_counter()
    if not ray.is_initialized():
        ray.init()
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    if num_gpus_per_actor is None:
        num_gpus_per_actor = 1 if gpus >= 1 else 0
    if num_actors is None:
        num_actors = int(gpus // num_gpus_per_actor) if num_gpus_per_actor else 0
        num_actors = max(1, num_actors or int(resources.get("CPU", 1)))
    rows = [
        {"label": label, "seed": seed} for label, seed in zip(labels.tolist(), seeds, strict=True)
    ]
    counts = (
        ray.data.from_items(rows)
        .map_batches(
            _StoreFiller,
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=num_actors),
            fn_constructor_args=(generator_factory or _KeepGenerator(dataset.generator), store),
            **({"num_gpus": num_gpus_per_actor} if num_gpus_per_actor else {"num_cpus": 1}),
        )
        .take_all()
    )
    per_actor: dict[str, int] = {}
    for row in counts:
        name = str(row["actor"])
        per_actor[name] = per_actor.get(name, 0) + int(row["generated"]) + int(row["skipped"])
    return PoolReport(
        planned=len(seeds),
        generated=sum(int(row["generated"]) for row in counts),
        skipped=sum(int(row["skipped"]) for row in counts),
        seconds=time.perf_counter() - start,
        per_actor=per_actor,
    )
