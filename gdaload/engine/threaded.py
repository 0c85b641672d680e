"""``ThreadEngine``: generation in a background thread, beside the training loop.

A producer thread fills a :class:`~gdaload.engine.pool.SamplePool` in position order
while the training loop consumes it, so generation overlaps training instead of adding
to it. A thread (not a process) is enough: PyTorch releases the GIL inside its kernels,
a CUDA generator keeps its model in the main process (no CUDA in DataLoader workers),
and on the training GPU generation runs on its own CUDA stream.

Determinism: position ``k`` of epoch ``e`` holds the image of ``(label(e, k),
seed(e, k))`` from the plan, generated in position-aligned blocks, so under the ``wait``
policy the samples served are those of the synchronous path whatever the timing, pool
size or thread scheduling: bit-identical from run to run, and equal to the synchronous
path's up to the rounding of batched kernels that the generator contract allows (the
synchronous path batches per training batch instead). Under ``reuse`` a position whose
sample is not ready is served an already generated sample of the same class; *which*
positions that happens to depends on timing (see :class:`ThreadEngine`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import torch
from tqdm.auto import tqdm

from gdaload.cache.store import SampleStore
from gdaload.engine.base import (
    Engine,
    EngineStats,
    Served,
    SourceImages,
    SyntheticSource,
    make_samples,
    plan_variations,
)
from gdaload.engine.pool import SamplePool, check_pool_settings
from gdaload.generators.base import GenerationStoppedError, Generator, stop_waiting_on

__all__ = ["ThreadEngine"]

logger = logging.getLogger(__name__)

#: How often a blocked thread re-checks for errors, shutdown and a dead peer (seconds).
_POLL = 0.05


class ThreadEngine(Engine):
    """Generate synthetic samples ahead of the training loop in a background thread.

    The producer generates positions in order into a bounded pool and blocks while the
    pool is full. When the loop needs a sample that is not ready:

    * ``wait``: it waits (counted in ``stats.wait_seconds``). Samples are those of the
      synchronous path, whatever the timing.
    * ``reuse``: it is served an already generated sample of the same class, each sample
      at most ``1 + reuse_limit`` times, and only waits when none is left. Every served
      image is still the image of some ``(label, seed)`` of the plan, positions served
      fresh hold the ``wait`` sample (up to batched-kernel rounding), and per-class
      counts and the m_G/m_S ratio stay exact; which positions get a reused sample, and
      which one, depends on timing (none does when generation keeps up, and then the
      run equals ``wait``).

    An exception raised while generating is re-raised, the same object with its original
    traceback, at the loop's next request. :meth:`close` stops the thread; it waits at
    most ``join_timeout`` seconds for a block being generated.

    Args:
        generator: Any :class:`~gdaload.Generator`; it runs on its own device.
        store: Optional :class:`~gdaload.cache.SampleStore` read before generating.
        stats: Counters to update (shared with the owner).
        pool_size: Most samples held ready (or being generated).
        generation_batch_size: Samples per ``generate`` call.
        dry_policy: ``wait`` or ``reuse``.
        reuse_limit: Extra times one sample may be served under ``reuse``.
        pin_memory: Keep ready samples in pinned memory for fast copies to the GPU;
            default: when CUDA is available.
        join_timeout: Seconds :meth:`close` waits for the producer.
        source_images: Reads the real images of planned hard-example variations (they
            are read in the producer thread, so the reader must not draw random numbers).

    Example:
        >>> engine = ThreadEngine(generator, pool_size=64,
        ...                       generation_batch_size=16)  # doctest: +SKIP
        >>> with engine:  # doctest: +SKIP
        ...     engine.begin_epoch(source, epoch=0, total=100, next_total=100)
        ...     first = engine.take(0, range(0, 8))
    """

    def __init__(
        self,
        generator: Generator,
        *,
        store: SampleStore | None = None,
        stats: EngineStats | None = None,
        pool_size: int = 128,
        generation_batch_size: int = 32,
        dry_policy: str = "wait",
        reuse_limit: int = 1,
        pin_memory: bool | None = None,
        join_timeout: float = 2.0,
        source_images: SourceImages | None = None,
    ) -> None:
        check_pool_settings(pool_size, generation_batch_size, dry_policy, reuse_limit)
        super().__init__(generator, store=store, stats=stats, source_images=source_images)
        self.dry_policy = dry_policy
        self.pool = SamplePool(
            pool_size, generation_batch_size, reuse_limit if dry_policy == "reuse" else None
        )
        self.pin = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.join_timeout = join_timeout
        self._dropped_before = self.stats.dropped
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="gdaload-producer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer
    def _produce(self) -> None:
        cond = self.pool.cond
        stream = (
            torch.cuda.Stream(device=self.generator.device)
            if self.generator.device.type == "cuda"
            else None
        )
        try:
            with stop_waiting_on(self._stop):
                self._produce_blocks(cond, stream)
        except BaseException as err:  # noqa: BLE001 - handed to the training loop as is
            logger.debug("generation failed: %r", err)
            with cond:
                self._error = err
                cond.notify_all()

    def _produce_blocks(self, cond: threading.Condition, stream: torch.cuda.Stream | None) -> None:
        """Generate the blocks the pool asks for until the engine is stopped."""
        while True:
            with cond:
                work = None
                while work is None:
                    if self._stop.is_set():
                        return
                    work = self.pool.next_block()
                    if work is None:
                        cond.wait(_POLL)
                source = self._source
            token, block = work
            epoch, indices = block[0][0], [index for _, index in block]
            assert source is not None
            labels = source.labels(epoch, indices)
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                images = make_samples(
                    self.generator,
                    self.store,
                    labels,
                    source.seeds(epoch, indices),
                    self.stats,
                    host=True,
                    pin=self.pin,
                    variations=plan_variations(source, epoch, indices, self.source_images),
                )
            with cond:
                self.pool.deliver(token, block, images, labels.tolist())

    # ------------------------------------------------------------------ consumer
    def begin_epoch(
        self,
        source: SyntheticSource,
        epoch: int,
        total: int | None,
        next_total: int | None = None,
        start: int = 0,
    ) -> None:
        with self.pool.cond:
            new_plan = source != self._source
            self._source = source
            self.pool.begin_epoch(epoch, total, next_total, new_plan, start)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if not self._thread.is_alive():
            raise GenerationStoppedError(
                "the generation thread is not running (the loader was closed); iterate the "
                "loader again to restart it"
            )

    def take(self, epoch: int, positions: range) -> Served:
        if self._source is None:
            raise RuntimeError("call begin_epoch before take")
        labels = self._source.labels(epoch, positions)
        parts: list[tuple[torch.Tensor, int]] = []
        reused = 0
        cond = self.pool.cond
        with cond:
            self._check()
            if len(positions):
                self.pool.expect((epoch, positions[-1]))
            for index, label in zip(positions, labels.tolist(), strict=True):
                while (got := self.pool.take((epoch, index), label)) is None:
                    self._check()
                    cond.notify_all()  # the producer may be waiting for the room just freed
                    start = time.perf_counter()
                    cond.wait(_POLL)
                    self.stats.wait_seconds += time.perf_counter() - start
                parts.append(got[:2])
                reused += got[2]
            cond.notify_all()
            self.stats.served += len(positions)
            self.stats.reused += reused
            self.stats.dropped = self._dropped_before + self.pool.dropped
        return Served(self._gather(parts), labels, reused)

    def _gather(self, parts: list[tuple[torch.Tensor, int]]) -> torch.Tensor:
        """One batch from ``(generated batch, row)`` pairs: runs of consecutive rows become
        slices, so a batch served from one generated batch is a view, not a copy."""
        if not parts:
            return torch.empty(0, *self.generator.image_shape)
        slices, (source, start), end = [], parts[0], parts[0][1] + 1
        for batch, row in parts[1:]:
            if batch is source and row == end:
                end += 1
                continue
            slices.append(source[start:end])
            source, start, end = batch, row, row + 1
        slices.append(source[start:end])
        if len(slices) == 1:
            return slices[0]
        out = torch.empty((len(parts), *source.shape[1:]), dtype=source.dtype, pin_memory=self.pin)
        return torch.cat(slices, out=out)

    def warm_up(self, count: int, progress: bool = True) -> None:
        """Block until ``count`` samples (at most the pool size, and what the plan allows)
        are ready, showing a progress bar."""
        start = time.perf_counter()
        cond = self.pool.cond
        with cond:
            reachable = self.pool.reachable()
            count = min(count, self.pool.capacity, reachable if reachable is not None else count)
        with (
            tqdm(
                total=count,
                desc="gdaload warm-up",
                unit="sample",
                leave=False,
                disable=None if progress else True,
            ) as bar,
            cond,
        ):
            while (fill := self.pool.fill()) < count:
                self._check()
                bar.update(fill - bar.n)
                cond.wait(_POLL)
            bar.update(count - bar.n)
        self.stats.warmup_seconds += time.perf_counter() - start
        logger.info("warm-up: %d samples ready in %.2f s", count, time.perf_counter() - start)

    def pool_fill(self) -> int:
        with self.pool.cond:
            return self.pool.fill()

    def close(self) -> None:
        self._stop.set()
        with self.pool.cond:
            self.pool.cond.notify_all()
        if self._thread is threading.current_thread():
            return
        self._thread.join(self.join_timeout)
        if self._thread.is_alive():
            logger.warning(
                "the generation thread is still finishing a block after %.1f s; it "
                "exits when the block is done",
                self.join_timeout,
            )

    def __repr__(self) -> str:
        return (
            f"ThreadEngine(pool={self.pool.capacity}, block={self.pool.block_size}, "
            f"dry_policy={self.dry_policy}, generator={self.generator!r})"
        )
