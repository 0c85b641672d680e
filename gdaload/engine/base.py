"""What the generation engines share.

An engine serves the synthetic samples of an epoch by *position*: position ``k`` of
epoch ``e`` is the ``k``-th synthetic sample the training loop receives in that epoch.
A :class:`SyntheticSource` maps positions to ``(label, seed)`` pairs, and an image is a
pure function of its pair, so what a position holds never depends on when or where it
was generated. :func:`make_samples` is the one place that turns pairs into images:
stored samples first, the generator for the rest. A source may also name, per position,
a real image to vary (hard-example variations): :func:`plan_variations` reads those
images and :func:`make_samples` generates their rows image-conditioned, never through
the store (whose key does not hold the source image).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch

from gdaload.cache.store import SampleStore
from gdaload.generators.base import Generator, check_generated

__all__ = [
    "ENGINES",
    "Engine",
    "EngineStats",
    "Served",
    "SourceImages",
    "SyntheticSource",
    "Variations",
    "fetch_stored",
    "make_samples",
    "plan_variations",
]

#: Reads real images by dataset index: ``(N, C, H, W)`` in [0, 1] of the generator's shape.
SourceImages = Callable[[list[int]], torch.Tensor]

#: Engine names accepted by :class:`~gdaload.GenerativeLoader`.
ENGINES = ("sync", "thread")

#: ``(epoch, index)`` of a synthetic sample in the order the training loop receives it.
Position = tuple[int, int]


class SyntheticSource(Protocol):
    """The plan of synthetic samples: label and seed of every position of an epoch.

    Implementations must be pure (same answer for the same arguments, from any thread)
    and compare equal when they describe the same plan.
    :class:`~gdaload.data.plan.SyntheticPlan` is the one the loaders use.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class AllZero:
        ...     def labels(self, epoch, positions):
        ...         return torch.zeros(len(positions), dtype=torch.long)
        ...     def seeds(self, epoch, positions):
        ...         return [epoch * 1000 + k for k in positions]
        >>> AllZero().seeds(1, range(2)), AllZero() == AllZero()
        ([1000, 1001], True)
    """

    def labels(self, epoch: int, positions: Sequence[int]) -> torch.Tensor:
        """Class labels (CPU ``int64``) of ``positions`` of ``epoch``."""

    def seeds(self, epoch: int, positions: Sequence[int]) -> list[int]:
        """Seeds of ``positions`` of ``epoch``."""


@dataclass
class EngineStats:
    """Counters of an engine, kept across engine restarts by their owner.

    Attributes:
        generated: Images made by the generator.
        served: Synthetic samples handed to the training loop.
        reused: Positions served with an already generated sample (``reuse`` policy).
        dropped: Generated images never served (epoch ended, plan changed, too late).
        cache_hits: Samples read from the :class:`SampleStore` instead of generated.
        cache_misses: Samples looked up in the store and not found.
        generation_seconds: Time spent inside ``generator.generate``.
        wait_seconds: Time the training loop was blocked waiting for samples.
        warmup_seconds: Time spent filling the pool before the first batch.

    Example:
        >>> stats = EngineStats()
        >>> stats.generated += 8
        >>> stats.as_dict()["generated"], stats.as_dict()["served"]
        (8, 0)
    """

    generated: int = 0
    served: int = 0
    reused: int = 0
    dropped: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    generation_seconds: float = 0.0
    wait_seconds: float = 0.0
    warmup_seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class Served:
    """Synthetic samples for consecutive positions.

    Attributes:
        images: ``(N, C, H, W)`` floats in [0, 1].
        labels: ``(N,)`` CPU ``int64`` labels (the plan's, also for reused samples).
        reused: How many of the ``N`` are reused samples.

    Example:
        >>> served = Served(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]))
        >>> len(served.images), served.reused
        (2, 0)
    """

    images: torch.Tensor
    labels: torch.Tensor
    reused: int = 0


@dataclass
class Variations:
    """Rows of a block made as variations of real images (SDEdit) instead of from noise.

    Attributes:
        rows: Rows of the block, in order.
        images: Their source images ``(len(rows), C, H, W)``.
        strength: SDEdit strength.
    """

    rows: list[int]
    images: torch.Tensor
    strength: float


def plan_variations(
    source: SyntheticSource,
    epoch: int,
    positions: Sequence[int],
    read: SourceImages | None,
) -> Variations | None:
    """The variations a source plans for ``positions`` (``None``: plain samples only).

    A source without a ``variations(epoch, positions)`` method plans none.

    Raises:
        RuntimeError: If variations are planned but no reader of real images was given.
    """
    planned = getattr(source, "variations", None)
    if planned is None:
        return None
    sources, strength = planned(epoch, positions)
    rows = np.flatnonzero(np.asarray(sources) >= 0)
    if not rows.size:
        return None
    if read is None:
        raise RuntimeError(
            "the plan holds hard-example variations but the engine has no reader of the "
            "real images; pass source_images= to the engine"
        )
    return Variations(rows.tolist(), read(np.asarray(sources)[rows].tolist()), strength)


class Engine(abc.ABC):
    """Serves synthetic samples position by position; see :mod:`gdaload.engine`.

    Call :meth:`begin_epoch` before the first :meth:`take` of each epoch, and take
    positions in order from its ``start`` (``0, 1, 2, ...`` unless resumed). Subclasses
    implement :meth:`take`; those with a pool or a thread also override :meth:`warm_up`,
    :meth:`pool_fill` and :meth:`close`.

    Example:
        >>> class Blank(Engine):
        ...     def take(self, epoch, positions):
        ...         labels = self._source.labels(epoch, positions)
        ...         return Served(torch.zeros(len(labels), *self.generator.image_shape), labels)
        >>> with Blank(generator) as engine:  # doctest: +SKIP
        ...     engine.begin_epoch(source, epoch=0, total=None)
        ...     engine.take(0, range(4)).images.shape
        torch.Size([4, 3, 32, 32])
    """

    def __init__(
        self,
        generator: Generator,
        *,
        store: SampleStore | None = None,
        stats: EngineStats | None = None,
        source_images: SourceImages | None = None,
    ) -> None:
        self.generator = generator
        self.store = store
        self.stats = stats if stats is not None else EngineStats()
        #: Reads the real images that planned variations start from.
        self.source_images = source_images
        self._source: SyntheticSource | None = None

    def begin_epoch(
        self,
        source: SyntheticSource,
        epoch: int,
        total: int | None,
        next_total: int | None = None,
        start: int = 0,
    ) -> None:
        """Start serving ``epoch``.

        Args:
            source: Plan of labels and seeds.
            epoch: The epoch about to be served.
            total: Expected number of positions in ``epoch`` (``None``: unknown). Only a
                hint for generating ahead: positions beyond it are still served.
            next_total: Expected positions of ``epoch + 1``, so generation can run on
                into the next epoch while this one finishes.
            start: The first position to be taken (a run resumed mid-epoch).
        """
        self._source = source

    @abc.abstractmethod
    def take(self, epoch: int, positions: range) -> Served:
        """Samples of the consecutive ``positions`` of ``epoch``."""

    # warm_up and close are hooks, not abstract: an engine without a pool or a thread
    # (SyncEngine) has nothing to prepare or stop, so the defaults do nothing.
    def warm_up(self, count: int, progress: bool = True) -> None:
        """Have ``count`` samples ready before the first batch (no-op without a pool)."""
        return None

    def pool_fill(self) -> int:
        """Samples ready and not yet served."""
        return 0

    def close(self) -> None:
        """Stop background work; idempotent (no-op without a thread)."""
        return None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_samples(
    generator: Generator,
    store: SampleStore | None,
    labels: torch.Tensor,
    seeds: list[int],
    stats: EngineStats,
    *,
    host: bool = False,
    pin: bool = False,
    fetched: tuple[torch.Tensor, list[int]] | None = None,
    variations: Variations | None = None,
) -> torch.Tensor:
    """Images for ``(labels, seeds)``: stored ones read back, the rest generated.

    Generated images are checked against the generator contract and written to the
    store. Without a store the batch stays on the generator's device unless ``host``.

    Args:
        host: Return a CPU tensor (``pin``: in pinned memory, for asynchronous copies to
            the GPU).
        fetched: The result of :func:`fetch_stored` when the caller looked already
            (for the plain rows only when there are ``variations``).
        variations: Rows generated from source images, bypassing the store.
    """
    if variations is not None:
        return _with_variations(
            generator, store, labels, seeds, stats, host, pin, fetched, variations
        )
    if store is None:
        images, missing = None, list(range(len(seeds)))
    else:
        images, missing = (
            fetched
            if fetched is not None
            else fetch_stored(store, labels, seeds, generator.image_shape, pin=host and pin)
        )
        stats.cache_hits += len(seeds) - len(missing)
        stats.cache_misses += len(missing)
    if missing:
        generated = _timed_generate(generator, labels[missing], [seeds[i] for i in missing], stats)
        if images is None or store is None:  # no store: images is None too
            images = generated
        else:
            generated = generated.detach().to("cpu", torch.float32)
            store.put(labels[missing], [seeds[i] for i in missing], generated)
            images[missing] = generated
    if images is None:
        images = torch.empty(0, *generator.image_shape)
    return to_host(images, pin) if host else images


def _timed_generate(
    generator: Generator,
    labels: torch.Tensor,
    seeds: list[int],
    stats: EngineStats,
    **conditions: Any,
) -> torch.Tensor:
    """``generator.generate`` without autograd, checked against the generator contract and
    counted in ``stats`` (seconds and samples); ``conditions`` go to ``generate``."""
    start = time.perf_counter()
    with torch.no_grad():
        generated = generator.generate(labels, seeds, **conditions)
    check_generated(
        generated,
        len(seeds),
        generator.image_shape,
        source=type(generator).__name__,
        device=generator.device,
    )
    stats.generation_seconds += time.perf_counter() - start
    stats.generated += len(seeds)
    return generated


def _with_variations(
    generator: Generator,
    store: SampleStore | None,
    labels: torch.Tensor,
    seeds: list[int],
    stats: EngineStats,
    host: bool,
    pin: bool,
    fetched: tuple[torch.Tensor, list[int]] | None,
    variations: Variations,
) -> torch.Tensor:
    """:func:`make_samples` for a block with variation rows: plain rows as usual, the
    others generated from their source images."""
    rows = variations.rows
    plain = sorted(set(range(len(seeds))) - set(rows))
    out = torch.empty(len(seeds), *generator.image_shape, device=generator.device)
    if plain:
        out[plain] = make_samples(
            generator, store, labels[plain], [seeds[i] for i in plain], stats, fetched=fetched
        ).to(out.device)
    generated = _timed_generate(
        generator,
        labels[rows],
        [seeds[i] for i in rows],
        stats,
        source=variations.images.to(generator.device),
        strength=variations.strength,
    )
    out[rows] = generated.to(out.dtype)
    return to_host(out, pin) if host else out


def fetch_stored(
    store: SampleStore,
    labels: torch.Tensor,
    seeds: list[int],
    image_shape: Sequence[int],
    *,
    pin: bool = False,
) -> tuple[torch.Tensor, list[int]]:
    """A float32 CPU batch holding the stored images of ``(labels, seeds)``, and the rows
    that are not stored (still to be generated)."""
    images = torch.empty(len(seeds), *image_shape, pin_memory=pin)
    return images, store.fetch(labels, seeds, images)


def to_host(images: torch.Tensor, pin: bool) -> torch.Tensor:
    """``images`` on the CPU, pinned if asked; waits for the copy to finish."""
    images = images.detach()
    if not pin:
        return images.cpu()
    if images.device.type == "cpu":
        return images if images.is_pinned() else images.pin_memory()
    out = torch.empty(images.shape, dtype=images.dtype, pin_memory=True)
    out.copy_(images, non_blocking=True)
    # The copy is queued on the current stream: wait for it before anyone reads `out`.
    torch.cuda.current_stream(images.device).synchronize()
    return out
