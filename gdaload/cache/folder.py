"""``ShardFolder``: the shards of one generator config, on disk and decoded in memory.

The disk side of :class:`~gdaload.cache.SampleStore`: which ``(label, seed)`` each shard
holds, reading a shard back verified (a damaged one is deleted so its samples are
generated again), writing new shards, and the size cap over all configs of the root.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from gdaload.cache.lru import LRU, tensor_bytes
from gdaload.cache.shards import SHARD_SUFFIX, CorruptShardError, read_shard, write_shard

__all__ = ["CONTENTS", "Key", "ShardFolder"]

logger = logging.getLogger(__name__)

#: ``(label, seed)`` of a sample.
Key = tuple[int, int]

#: What a folder's shards may hold: generated images, or the masks of generated pairs.
CONTENTS = ("images", "masks")


class ShardFolder:
    """The shards of one config in ``root / config_hash``, indexed by ``(label, seed)``.

    Not thread-safe: :class:`~gdaload.cache.SampleStore` calls it under its lock.

    Args:
        root: Root folder of the store (one subfolder per config).
        config_hash: Names the subfolder; shards of another config are never read.
        cache_bytes: Decoded shards kept in memory (least recently read dropped first).
        content: What the shards hold: ``"images"`` (float ``(N, C, H, W)`` in [0, 1])
            or ``"masks"`` (integer segmentation masks ``(N, H, W)``, kept exactly).

    Example:
        >>> folder = ShardFolder(Path("runs/samples"), "0123abcd", cache_bytes=1 << 20)
        >>> folder.write([(0, 11)], torch.zeros(1, 1, 2, 2), max_bytes=None)  # doctest: +SKIP
        >>> folder.locate((0, 11))  # doctest: +SKIP
        ('00000001712345678901-1a2b3c4d.safetensors', 0)
    """

    def __init__(
        self, root: Path, config_hash: str, cache_bytes: int, content: str = "images"
    ) -> None:
        if content not in CONTENTS:
            raise ValueError(f"unknown shard content {content!r}; valid ones are {CONTENTS}")
        self.content = content
        self.root = root
        self.config_hash = config_hash
        self.path = root / config_hash
        self.scanned = False
        self._index: dict[Key, tuple[str, int]] = {}  # key -> (shard, row)
        self._shards: dict[str, tuple[int, list[Key]]] = {}  # shard -> (bytes, keys)
        self._decoded: LRU[str, torch.Tensor] = LRU(cache_bytes, tensor_bytes)
        self._root_bytes = 0

    # ------------------------------------------------------------------ opening
    def record_config(self, config: dict[str, Any] | None) -> bool:
        """Write the config beside the shards (which also proves the folder is writable);
        return whether the folder already holds a different config.

        Raises:
            OSError: When the folder cannot be created or written.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / "config.json"
        blob = json.dumps(config, sort_keys=True, default=str) if config is not None else None
        if blob is not None and path.is_file():
            if path.read_text() != blob:
                return True
            blob = None  # already recorded; still probe that we can write
        tmp = self.path / f".config-{uuid.uuid4().hex}.tmp"
        tmp.write_text(blob or "")
        if blob is None:
            tmp.unlink()
        else:
            os.replace(tmp, path)
        return False

    def scan(self) -> None:
        """Index every shard of this config (headers and keys only, no images)."""
        self.scanned = True
        self._index.clear()
        self._shards.clear()
        # Another process may evict shards while this one lists them: a shard gone
        # between listing and reading is skipped, not reported as damaged.
        self._root_bytes = sum(_size(p) for p in self._all_shards())
        for path in sorted(self.path.glob(f"*{SHARD_SUFFIX}")):
            try:
                size = path.stat().st_size
                with safe_open(str(path), framework="pt") as f:
                    meta = f.metadata() or {}
                    labels, seeds = f.get_tensor("labels"), f.get_tensor("seeds")
                if meta.get("config_hash") != self.config_hash:
                    logger.warning(
                        "ignoring shard %s: written for config %s, not %s",
                        path,
                        meta.get("config_hash"),
                        self.config_hash,
                    )
                    continue
                _check_keys(labels, seeds)
            except FileNotFoundError:
                continue
            except CorruptShardError as err:
                self._drop(path.name, str(err))
                continue
            except Exception as err:  # safetensors raises its own error type for bad files
                if path.exists():
                    self._drop(path.name, f"cannot read its header ({err})")
                continue
            self._register(path.name, size, labels.tolist(), seeds.tolist())
        logger.debug(
            "sample store %s: %d samples in %d shards",
            self.path,
            len(self._index),
            len(self._shards),
        )

    def _all_shards(self) -> list[Path]:
        return list(self.root.glob(f"*/*{SHARD_SUFFIX}"))

    def _register(self, name: str, size: int, labels: list[int], seeds: list[int]) -> None:
        keys = list(zip(labels, seeds, strict=True))
        self._shards[name] = (size, keys)
        for row, key in enumerate(keys):
            self._index[key] = (name, row)

    # ------------------------------------------------------------------ reading
    def locate(self, key: Key) -> tuple[str, int] | None:
        """``(shard, row)`` holding ``key``, or ``None``."""
        return self._index.get(key)

    def load(self, name: str, image_shape: tuple[int, ...] | None = None) -> torch.Tensor | None:
        """The images of shard ``name``, verified; ``None`` when it is gone or damaged
        (then it is forgotten, and a damaged one deleted with a warning).

        A shard is damaged when its checksum, config or key count do not match, or when
        its images are not what a generator may return: float ``(N, C, H, W)`` values in
        [0, 1], all finite, of ``image_shape`` when the caller knows it. A valid checksum
        only says the file is the one that was written, not that what was written fits.
        """
        if (cached := self._decoded.get(name)) is not None:
            if image_shape is None or tuple(cached.shape[1:]) == tuple(image_shape):
                return cached
            self._drop(name, _shape_mismatch(cached, image_shape))
            return None
        path = self.path / name
        try:
            tensors, meta = read_shard(path)
            if meta.get("config_hash") != self.config_hash:
                raise CorruptShardError(f"it belongs to config {meta.get('config_hash')}")
            images = tensors[self.content]
            if len(images) != len(self._shards[name][1]):
                raise CorruptShardError(f"its {self.content} count does not match its keys")
            (_check_images if self.content == "images" else _check_masks)(images, image_shape)
        except FileNotFoundError:
            self._forget(name)  # evicted by another process
            return None
        except (CorruptShardError, KeyError) as err:
            self._drop(name, str(err))
            return None
        self._decoded.put(name, images)
        return images

    def _drop(self, name: str, reason: str) -> None:
        """Delete a damaged shard so it is regenerated, never served."""
        warnings.warn(
            f"dropping damaged sample-store shard {self.path / name}: {reason}; "
            "its samples will be generated again",
            RuntimeWarning,
            stacklevel=4,
        )
        (self.path / name).unlink(missing_ok=True)
        self._forget(name)

    def _forget(self, name: str) -> None:
        size, keys = self._shards.pop(name, (0, []))
        self._root_bytes -= size
        for key in keys:
            if self._index.get(key, (None,))[0] == name:
                del self._index[key]
        self._decoded.pop(name)

    # ------------------------------------------------------------------ writing
    def write(self, keys: list[Key], images: torch.Tensor, max_bytes: int | None) -> None:
        """Write ``images`` as one new shard, then evict the oldest shards under the root
        while their total exceeds ``max_bytes``.

        Raises:
            OSError: When the shard cannot be written (nothing is left behind).
        """
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{SHARD_SUFFIX}"
        labels = torch.tensor([k[0] for k in keys], dtype=torch.int64)
        seeds = torch.tensor([k[1] for k in keys], dtype=torch.int64)
        size = write_shard(
            self.path / name,
            {self.content: images, "labels": labels, "seeds": seeds},
            {"config_hash": self.config_hash},
        )
        self._root_bytes += size
        self._register(name, size, labels.tolist(), seeds.tolist())
        self._decoded.put(name, images)
        if max_bytes is not None and self._root_bytes > max_bytes:
            self._evict(max_bytes)

    def _evict(self, max_bytes: int) -> None:
        """Delete the oldest shards under the root until the total fits ``max_bytes``."""
        shards = []
        for path in self._all_shards():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            shards.append((stat.st_mtime_ns, path.name, path, stat.st_size))
        total = sum(s[3] for s in shards)
        for _, name, path, size in sorted(shards):
            if total <= max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            if path.parent == self.path:
                self._forget(name)
            logger.debug("evicted shard %s (%d bytes)", path, size)
        self._root_bytes = total

    # ------------------------------------------------------------------ bookkeeping
    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __len__(self) -> int:
        """Samples indexed."""
        return len(self._index)

    @property
    def num_shards(self) -> int:
        return len(self._shards)

    @property
    def num_bytes(self) -> int:
        """Bytes of this config's shards."""
        return sum(size for size, _ in self._shards.values())


def _shape_mismatch(images: torch.Tensor, image_shape: tuple[int, ...]) -> str:
    return f"its images are {tuple(images.shape[1:])}, not the requested {tuple(image_shape)}"


def _check_images(images: torch.Tensor, image_shape: tuple[int, ...] | None) -> None:
    """Raise :class:`CorruptShardError` unless ``images`` could have come from a generator."""
    if images.dim() != 4 or not images.dtype.is_floating_point:
        raise CorruptShardError(
            f"its images are {images.dtype} of shape {tuple(images.shape)}, not float (N, C, H, W)"
        )
    if image_shape is not None and tuple(images.shape[1:]) != tuple(image_shape):
        raise CorruptShardError(_shape_mismatch(images, image_shape))
    if images.numel():
        if not bool(torch.isfinite(images).all()):
            raise CorruptShardError("its images hold NaN or Inf values")
        lo, hi = float(images.min()), float(images.max())
        # The same slack as the generator contract's check (rounding of float kernels).
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise CorruptShardError(f"its images have values in [{lo:.3g}, {hi:.3g}], not [0, 1]")


def _check_masks(masks: torch.Tensor, size: tuple[int, ...] | None) -> None:
    """Raise :class:`CorruptShardError` unless ``masks`` are what a store of masks writes:
    non-negative ``int64`` ``(N, H, W)``, of ``size`` when the caller knows it."""
    if masks.dim() != 3 or masks.dtype != torch.int64:
        raise CorruptShardError(
            f"its masks are {masks.dtype} of shape {tuple(masks.shape)}, not int64 (N, H, W)"
        )
    if size is not None and tuple(masks.shape[1:]) != tuple(size):
        raise CorruptShardError(_shape_mismatch(masks, size))
    if masks.numel() and int(masks.min()) < 0:
        raise CorruptShardError("its masks hold negative labels")


def _size(path: Path) -> int:
    """Bytes of ``path``; 0 when another process removed it meanwhile."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _check_keys(labels: torch.Tensor, seeds: torch.Tensor) -> None:
    """Raise :class:`CorruptShardError` unless ``labels`` and ``seeds`` are the keys a
    store writes: integer vectors of one length. A checksum does not vouch for that."""
    for name, keys in (("labels", labels), ("seeds", seeds)):
        if keys.dim() != 1 or keys.dtype.is_floating_point or keys.dtype == torch.bool:
            raise CorruptShardError(
                f"its {name} are {keys.dtype} of shape {tuple(keys.shape)}, not integers (N,)"
            )
    if len(labels) != len(seeds):
        raise CorruptShardError(f"it has {len(labels)} labels but {len(seeds)} seeds")
