"""``StoredSamples``: a generator that reads the samples another process generates.

A training loop that does not hold the model (a pool of machines fills the store, see
:func:`~gdaload.data.ray_pool.fill_store_ray`) hands this to
:class:`~gdaload.GenerativeLoader` in place of the generator. ``generate(labels,
seeds)`` returns the stored images of those pairs, re-reading the store's folder and
waiting while the producer has not written them yet.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from gdaload.cache.store import ConfiguredGenerator, SampleStore
from gdaload.generators.base import (
    GenerationStoppedError,
    Generator,
    as_labels,
    as_seeds,
    config_digest,
    wait_unless_stopped,
)

__all__ = ["StoredSamples"]


class StoredSamples(Generator):
    """The samples of a generator, read from its store instead of generated.

    Guarantees, with the producer's generator config (``like``):

    * The images are the producer's, bit for bit (stored as generated, in float32), so a
      loader serves what it would serve generating locally, whatever order or machine
      the producer wrote them in.
    * A sample not stored yet is waited for (the folder is re-read every
      ``poll_seconds``), never substituted; after ``timeout`` seconds a
      :class:`TimeoutError` says how many are missing. Closing a thread-engine loader
      ends a wait at once (:class:`~gdaload.engine.GenerationStoppedError` in its
      generation thread). Under ``GenerativeLoader(..., engine="thread",
      dry_policy="reuse")`` the loop is served an already served sample of the same
      class while this waits, as with any slow generator.

    Pass it to the loader without ``store=``: it reads the store itself, and a loader
    store would write back what it reads.

    Args:
        store: The folder the producer writes (its ``store=``), or its
            :class:`~gdaload.SampleStore` (the folder is read; its settings are kept).
        like: The producer's generator (only its config, hash, classes and shape are
            read; an unloaded generator will do), its ``config`` dict, or its
            ``config_hash()``.
        image_shape: ``(C, H, W)`` of the samples; taken from ``like`` when it is a
            generator.
        num_classes: Classes of the producer; taken from ``like`` when it is a generator.
        timeout: Seconds ``generate`` waits for missing samples before it raises.
        poll_seconds: Seconds between re-reads of the folder while waiting.

    Raises:
        ValueError: Without ``image_shape`` / ``num_classes`` when ``like`` is not a
            generator, or on a non-positive ``timeout`` or ``poll_seconds``.

    Example:
        >>> reader = StoredSamples("runs/samples", like=generator.config,  # doctest: +SKIP
        ...                        image_shape=(3, 32, 32), num_classes=10)
        >>> loader = GenerativeLoader(train_loader, reader, ratio=1.0)  # doctest: +SKIP
    """

    def __init__(
        self,
        store: str | os.PathLike | SampleStore,
        like: ConfiguredGenerator | Mapping[str, Any] | str,
        *,
        image_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        timeout: float = 600.0,
        poll_seconds: float = 0.5,
    ) -> None:
        if isinstance(like, str):
            self._config: dict[str, Any] = {"config_hash": like}
            self._hash = like
        elif isinstance(like, Mapping):
            self._config = dict(like)
            self._hash = config_digest(self._config)  # what Generator.config_hash returns
        else:
            self._config, self._hash = dict(like.config), like.config_hash()
            image_shape = image_shape or getattr(like, "image_shape", None)
            num_classes = num_classes or getattr(like, "num_classes", None)
        if image_shape is None or num_classes is None:
            raise ValueError(
                "StoredSamples needs image_shape= and num_classes= (the producer's) when "
                "like= is a config or a hash rather than a generator"
            )
        if not timeout > 0 or not poll_seconds > 0:
            raise ValueError(
                f"timeout and poll_seconds must be > 0, got {timeout!r} and {poll_seconds!r}"
            )
        channels, height, width = (int(v) for v in image_shape)
        self.image_shape = (channels, height, width)
        self.num_classes = int(num_classes)
        self.timeout, self.poll_seconds = float(timeout), float(poll_seconds)
        if isinstance(store, SampleStore):
            if store.config_hash != self._hash:
                raise ValueError(
                    f"the store holds config {store.config_hash}, not the producer's {self._hash}"
                )
            self.store = store
        else:
            config = None if isinstance(like, str) else self._config
            self.store = SampleStore(store, self._hash, config=config)

    @property
    def config(self) -> dict[str, Any]:
        """The producer's config (``{"config_hash": ...}`` when only its hash was given)."""
        return dict(self._config)

    def config_hash(self) -> str:
        """The producer's config hash: loaders and stores file these samples under it."""
        return self._hash

    def generate(self, labels: torch.Tensor | Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
        """The stored images of ``(labels, seeds)``, waiting for those not written yet.

        Raises:
            TimeoutError: When some are still missing after :attr:`timeout` seconds.
        """
        labels = as_labels(labels, self.num_classes)
        seeds = as_seeds(seeds, len(labels))
        images = torch.empty(len(seeds), *self.image_shape)
        missing = self.store.fetch(labels, seeds, images)
        deadline = time.monotonic() + self.timeout
        while missing:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{len(missing)} of {len(seeds)} samples (e.g. label "
                    f"{int(labels[missing[0]])}, seed {seeds[missing[0]]}) are not in "
                    f"{self.store.folder} after {self.timeout:g} s; the pool filling it may "
                    "be behind or dead (a rerun of it completes the store)"
                )
            if wait_unless_stopped(min(self.poll_seconds, left)):
                raise GenerationStoppedError(
                    f"stopped waiting for {len(missing)} stored samples: the caller (a "
                    "closed loader's generation thread) asked generation to stop"
                )
            self.store.refresh()
            found = torch.empty(len(missing), *self.image_shape)
            still = set(self.store.fetch(labels[missing], [seeds[i] for i in missing], found))
            got = [k for k in range(len(missing)) if k not in still]
            images[[missing[k] for k in got]] = found[got]
            missing = [missing[k] for k in sorted(still)]
        return images

    def __repr__(self) -> str:
        return f"StoredSamples({self.store.folder}, timeout={self.timeout:g})"
