"""``SampleStore``: generated samples kept on disk and reused by later epochs and runs.

A sample is a pure function of (model, config, label, seed), so ``(config hash, label,
seed)`` is a complete key: whatever produced a sample before, reading it back gives the
same image. Each generator config gets its own folder, named by its
:meth:`~gdaload.Generator.config_hash`, and every shard also records the hash in its
metadata, so samples of one config are never served for another.
"""

from __future__ import annotations

import itertools
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from gdaload.cache.folder import CONTENTS, Key, ShardFolder
from gdaload.cache.lru import LRU, tensor_bytes

__all__ = ["ConfiguredGenerator", "SampleStore"]


class ConfiguredGenerator(Protocol):
    """What :meth:`SampleStore.for_generator` reads of a generator: its config and hash.

    Every :class:`~gdaload.Generator` is one; the store asks no more, so that the cache
    layer does not depend on the generators.

    Example:
        >>> class Fixed:
        ...     config = {"kind": "fixed"}
        ...     def config_hash(self):
        ...         return "f1xed"
        >>> SampleStore.for_generator("runs/samples", Fixed())  # doctest: +SKIP
        SampleStore(runs/samples/f1xed, config=f1xed)
    """

    @property
    def config(self) -> dict[str, Any]:
        """Every setting that changes what is generated."""
        ...

    def config_hash(self) -> str:
        """Stable alphanumeric digest of :attr:`config`."""
        ...


class SampleStore:
    """Generated samples in checksummed safetensors shards, keyed by ``(label, seed)``.

    Every :meth:`put` writes one shard atomically (temporary file + ``os.replace``). A
    shard that is truncated, fails its checksum or belongs to another config is dropped
    with a warning when read, and its samples count as misses, so they are generated
    again instead of served damaged. When the folder cannot be written (permissions, full
    disk), the store warns once and keeps samples in memory instead: no batch is lost.

    Samples are stored exactly as generated (float32 images; ``content="masks"``: int64
    segmentation masks), so a sample read back is bit-identical to the one generated.

    Args:
        directory: Root folder of the store; one subfolder per generator config.
        config_hash: The generator's :meth:`~gdaload.Generator.config_hash`.
        config: The generator's :attr:`~gdaload.Generator.config`; recorded beside the
            shards so that two configs with colliding hashes are caught, not mixed.
        max_bytes: Cap on the total size of the shards under ``directory`` (all configs);
            the oldest shards are evicted first. ``None``: no cap.
        memory_bytes: Cap on the samples kept in memory when the folder is not writable.
        cache_bytes: Decoded shards kept in memory, so repeated reads skip the disk.
        content: ``"images"`` (default), or ``"masks"`` for the masks of generated
            (image, mask) pairs (see :meth:`masks_for`).

    Example:
        >>> store = SampleStore.for_generator("runs/samples", generator)  # doctest: +SKIP
        >>> store.put([0, 1], [11, 12], generator.generate([0, 1], [11, 12]))  # doctest: +SKIP
        >>> store.get([1, 2], [12, 13])  # doctest: +SKIP
        [tensor([...]), None]
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        config_hash: str,
        *,
        config: dict[str, Any] | None = None,
        max_bytes: int | None = None,
        memory_bytes: int = 1 << 30,
        cache_bytes: int = 256 << 20,
        content: str = "images",
    ) -> None:
        if content not in CONTENTS:
            raise ValueError(f"unknown store content {content!r}; valid ones are {CONTENTS}")
        self.content = content
        if not isinstance(config_hash, str) or not config_hash or not config_hash.isalnum():
            raise ValueError(
                f"config_hash must be a non-empty alphanumeric string such as "
                f"generator.config_hash(), got {config_hash!r}"
            )
        for name, value in (
            ("max_bytes", max_bytes),
            ("memory_bytes", memory_bytes),
            ("cache_bytes", cache_bytes),
        ):
            if value is not None and int(value) < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.root = Path(directory)
        self.config_hash = config_hash
        self.folder = self.root / config_hash
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self.memory_bytes = int(memory_bytes)
        self.cache_bytes = int(cache_bytes)
        self._init_state()
        self._open(config)

    @classmethod
    def for_generator(
        cls, directory: str | os.PathLike, generator: ConfiguredGenerator, **kwargs: Any
    ) -> SampleStore:
        """A store for ``generator``'s samples under ``directory``."""
        return cls(directory, generator.config_hash(), config=generator.config, **kwargs)

    def masks_for(self) -> SampleStore:
        """The store of the masks that go with this store's images (pairs of a
        :class:`~gdaload.PairGenerator`): a sibling folder named by the same config hash,
        so the masks of one generator config are never served for another's."""
        if self.content != "images":
            raise ValueError("masks_for() is a method of a store of images")
        return SampleStore(
            self.root,
            f"{self.config_hash}masks",
            config={"masks_of": self.config_hash},
            max_bytes=self.max_bytes,
            memory_bytes=self.memory_bytes,
            cache_bytes=self.cache_bytes,
            content="masks",
        )

    def _init_state(self) -> None:
        self._lock = threading.RLock()
        self._disk = ShardFolder(self.root, self.config_hash, self.cache_bytes, self.content)
        # The fallback when the folder is not writable. Reads use peek(): the samples
        # written first are dropped first, however often they are read.
        self._memory: LRU[Key, torch.Tensor] = LRU(self.memory_bytes, tensor_bytes)
        self.hits = self.misses = 0

    # ------------------------------------------------------------------ opening
    def _open(self, config: dict[str, Any] | None) -> None:
        self.memory_only = False
        try:
            foreign = self._disk.record_config(config)
        except OSError as err:
            self._fall_back(f"cannot write the sample store at {self.folder} ({err})")
            return
        if foreign:
            self._fall_back(
                f"{self.folder} holds samples of another generator config whose "
                "hash collides with this one; they are not served"
            )
            return
        self._disk.scan()

    def _fall_back(self, reason: str) -> None:
        self.memory_only = True
        warnings.warn(
            f"{reason}; keeping generated samples in memory (up to "
            f"{self.memory_bytes / 2**20:.0f} MiB) for this run instead",
            RuntimeWarning,
            stacklevel=3,
        )

    def _ensure_scanned(self) -> None:
        if not self._disk.scanned and not self.memory_only:
            self._disk.scan()

    def refresh(self) -> None:
        """Re-read the folder, picking up shards written by other processes."""
        with self._lock:
            if not self.memory_only:
                self._disk.scan()

    # ------------------------------------------------------------------ reading
    def get(
        self, labels: Sequence[int] | torch.Tensor, seeds: Sequence[int] | torch.Tensor
    ) -> list[torch.Tensor | None]:
        """The stored image for each ``(label, seed)``, or ``None`` where there is none."""
        keys = _keys(labels, seeds)
        out: list[torch.Tensor | None] = [None] * len(keys)
        for rows, images, source_rows in self._locate(keys):
            for i, row in zip(rows, source_rows, strict=True):
                out[i] = images[row]  # a view: the caller's stack is the only copy
        return out

    def fetch(
        self,
        labels: Sequence[int] | torch.Tensor,
        seeds: Sequence[int] | torch.Tensor,
        out: torch.Tensor,
    ) -> list[int]:
        """Copy the stored image of each ``(label, seed)`` into its row of ``out``.

        One copy per shard straight into the caller's batch (a slice copy when the rows
        are consecutive, as a block of positions usually is), with no per-sample tensors.

        Returns:
            The rows of ``out`` with no stored image (left untouched).
        """
        found = [False] * len(out)
        for rows, images, source_rows in self._locate(_keys(labels, seeds), tuple(out.shape[1:])):
            for i in rows:
                found[i] = True
            if _is_run(rows) and _is_run(source_rows):
                out[rows[0] : rows[-1] + 1].copy_(images[source_rows[0] : source_rows[-1] + 1])
            else:
                out[rows] = images[source_rows].to(out.dtype)
        return [i for i, hit in enumerate(found) if not hit]

    def _locate(
        self, keys: list[Key], image_shape: tuple[int, ...] | None = None
    ) -> list[tuple[list[int], torch.Tensor, list[int]]]:
        """``(request rows, images, rows of images)`` for each source holding some of the
        requested keys: a decoded shard, or the in-memory fallback. Shards whose images
        are not of ``image_shape`` (when given) are dropped as damaged."""
        parts = []
        with self._lock:
            self._ensure_scanned()
            by_shard: dict[str, tuple[list[int], list[int]]] = {}
            memory_rows, memory_images = [], []
            for i, key in enumerate(keys):
                if (image := self._memory.peek(key)) is not None:
                    memory_rows.append(i)
                    memory_images.append(image)
                elif (where := self._disk.locate(key)) is not None:
                    rows, source_rows = by_shard.setdefault(where[0], ([], []))
                    rows.append(i)
                    source_rows.append(where[1])
            if memory_rows:
                parts.append(
                    (memory_rows, torch.stack(memory_images), list(range(len(memory_rows))))
                )
            for name, (rows, source_rows) in by_shard.items():
                images = self._disk.load(name, image_shape)
                if images is not None:
                    parts.append((rows, images, source_rows))
            found = sum(len(rows) for rows, _, _ in parts)
            self.hits += found
            self.misses += len(keys) - found
        return parts

    # ------------------------------------------------------------------ writing
    def put(
        self,
        labels: Sequence[int] | torch.Tensor,
        seeds: Sequence[int] | torch.Tensor,
        images: torch.Tensor,
    ) -> None:
        """Store generated ``images`` under their ``(label, seed)``; never raises on I/O.

        Samples already stored are skipped. A write failure switches the store to memory
        with a warning.
        """
        keys = _keys(labels, seeds)
        if len(keys) != len(images):
            raise ValueError(f"got {len(images)} images for {len(keys)} (label, seed) pairs")
        dtype = torch.float32 if self.content == "images" else torch.int64
        images = images.detach().to("cpu", dtype)
        with self._lock:
            self._ensure_scanned()
            new = [
                i for i, key in enumerate(keys) if key not in self._disk and key not in self._memory
            ]
            if not new:
                return
            keys = [keys[i] for i in new]
            images = images[new].contiguous()
            if not self.memory_only:
                try:
                    self._disk.write(keys, images, self.max_bytes)
                    return
                except OSError as err:
                    self._fall_back(f"writing to the sample store at {self.folder} failed ({err})")
            for key, image in zip(keys, images.clone(), strict=True):
                self._memory.put(key, image)

    # ------------------------------------------------------------------ bookkeeping
    def __len__(self) -> int:
        with self._lock:
            self._ensure_scanned()
            return len(self._disk) + len(self._memory)

    def __contains__(self, key: Key) -> bool:
        with self._lock:
            self._ensure_scanned()
            return tuple(key) in self._disk or tuple(key) in self._memory

    def stats(self) -> dict[str, Any]:
        """Hits, misses, stored samples and shards, bytes on disk, memory fallback."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "samples": len(self._disk) + len(self._memory),
                "shards": self._disk.num_shards,
                "bytes": self._disk.num_bytes,
                "memory_only": self.memory_only,
            }

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers get the location and settings; each re-reads the index.
        keep = (
            "root",
            "config_hash",
            "folder",
            "max_bytes",
            "memory_bytes",
            "cache_bytes",
            "content",
            "memory_only",
        )
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_state()

    def __repr__(self) -> str:
        where = "memory" if self.memory_only else str(self.folder)
        return f"SampleStore({where}, config={self.config_hash})"


def _is_run(rows: list[int]) -> bool:
    """Whether ``rows`` are consecutive and increasing (then one slice copies them)."""
    return rows[-1] - rows[0] == len(rows) - 1 and all(
        b == a + 1 for a, b in itertools.pairwise(rows)
    )


def _keys(labels: Sequence[int] | torch.Tensor, seeds: Sequence[int] | torch.Tensor) -> list[Key]:
    labels = labels.tolist() if isinstance(labels, torch.Tensor) else [int(v) for v in labels]
    seeds = seeds.tolist() if isinstance(seeds, torch.Tensor) else [int(v) for v in seeds]
    if len(labels) != len(seeds):
        raise ValueError(f"got {len(labels)} labels but {len(seeds)} seeds")
    return list(zip(labels, seeds, strict=True))
