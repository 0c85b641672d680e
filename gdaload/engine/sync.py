"""``SyncEngine``: generate each batch's synthetic samples when the batch is asked for.

The simple, safe default: nothing runs in the background, and the training loop waits
for every generated batch (the wait is counted in :class:`~gdaload.engine.EngineStats`).
With a :class:`~gdaload.cache.SampleStore`, stored samples are read instead of generated.
"""

from __future__ import annotations

import time

from gdaload.engine.base import Engine, Served, make_samples, plan_variations

__all__ = ["SyncEngine"]


class SyncEngine(Engine):
    """Generate exactly the samples asked for, in the calling thread.

    Example:
        >>> engine = SyncEngine(generator)  # doctest: +SKIP
        >>> engine.begin_epoch(source, epoch=0, total=None)  # doctest: +SKIP
        >>> engine.take(0, range(0, 8)).images.shape  # doctest: +SKIP
        torch.Size([8, 3, 32, 32])
    """

    def take(self, epoch: int, positions: range) -> Served:
        if self._source is None:
            raise RuntimeError("call begin_epoch before take")
        labels = self._source.labels(epoch, positions)
        start = time.perf_counter()
        images = make_samples(
            self.generator,
            self.store,
            labels,
            self._source.seeds(epoch, positions),
            self.stats,
            variations=plan_variations(self._source, epoch, positions, self.source_images),
        )
        self.stats.wait_seconds += time.perf_counter() - start
        self.stats.served += len(positions)
        return Served(images, labels)
