"""``LatentCache``: encode each real image with the VAE once, however many epochs use it.

Image-conditioned generation with a latent-diffusion model starts from the VAE latents
of real images. A real image is encoded again every epoch it is drawn, although its
latent never changes; the cache keys latents by a hash of the image's content (and of
the encoder), so the encoder only sees images it has not seen before.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from gdaload.cache.lru import LRU
from gdaload.cache.shards import SHARD_SUFFIX, CorruptShardError, read_shard, write_shard
from gdaload.fingerprint import module_fingerprint, tensor_fingerprint

__all__ = ["LatentCache"]


class LatentCache:
    """Latents of real images keyed by image content, in memory and optionally on disk.

    ``encode_fn`` must be deterministic (e.g. ``vae.encode(x).latent_dist.mean``, not
    ``.sample()``): the cache returns the first encoding of an image forever after.

    Args:
        namespace: Names the encoder (see :meth:`for_module`); latents of another
            namespace are never returned.
        directory: Folder for checksummed shards of latents, so later runs skip the
            encoder too; damaged shards are dropped with a warning. ``None``: memory only.
        max_items: Latents kept in memory (least recently used dropped first); ``None``:
            no cap.

    Example:
        >>> cache = LatentCache.for_module(vae, directory="runs/latents")  # doctest: +SKIP
        >>> encode = lambda x: vae.encode(x * 2 - 1).latent_dist.mean  # doctest: +SKIP
        >>> latents = cache.get_or_encode(images, encode)  # doctest: +SKIP
        >>> latents = cache.get_or_encode(images, encode)  # no encoder call  # doctest: +SKIP
    """

    def __init__(
        self,
        namespace: str,
        directory: str | os.PathLike | None = None,
        *,
        max_items: int | None = None,
    ) -> None:
        if not isinstance(namespace, str) or not namespace.isalnum():
            raise ValueError(
                f"namespace must be a non-empty alphanumeric string (e.g. "
                f"module_fingerprint(vae)), got {namespace!r}"
            )
        if max_items is not None and int(max_items) < 1:
            raise ValueError(f"max_items must be >= 1 or None, got {max_items}")
        self.namespace = namespace
        self.max_items = None if max_items is None else int(max_items)
        self.folder = Path(directory) / namespace if directory is not None else None
        self._latents: LRU[str, torch.Tensor] = LRU(self.max_items)
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        if self.folder is not None:
            self._load_folder()

    @classmethod
    def for_module(
        cls,
        encoder: torch.nn.Module,
        directory: str | os.PathLike | None = None,
        **kwargs: int | None,
    ) -> LatentCache:
        """A cache whose namespace is the fingerprint of ``encoder``'s weights."""
        return cls(module_fingerprint(encoder), directory, **kwargs)

    def _load_folder(self) -> None:
        assert self.folder is not None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            warnings.warn(
                f"cannot create the latent cache folder {self.folder} ({err}); "
                "keeping latents in memory only",
                RuntimeWarning,
                stacklevel=3,
            )
            self.folder = None
            return
        for path in sorted(self.folder.glob(f"*{SHARD_SUFFIX}")):
            try:
                tensors, meta = read_shard(path)
                keys = json.loads(meta["keys"])
                if meta.get("namespace") != self.namespace or len(keys) != len(tensors["latents"]):
                    raise CorruptShardError("its keys do not match its latents")
            except (CorruptShardError, KeyError, ValueError) as err:
                warnings.warn(
                    f"dropping damaged latent shard {path}: {err}", RuntimeWarning, stacklevel=3
                )
                path.unlink(missing_ok=True)
                continue
            for key, latent in zip(keys, tensors["latents"], strict=True):
                self._latents.put(key, latent)

    def get_or_encode(
        self, images: torch.Tensor, encode_fn: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Latents of ``images`` ``(B, C, H, W)``; ``encode_fn`` runs on unseen images only.

        Returns:
            ``(B, *latent_shape)`` on the device of ``images``, in input order.
        """
        if not isinstance(images, torch.Tensor) or images.dim() < 2:
            raise ValueError("images must be a batched tensor (B, C, H, W)")
        keys = [tensor_fingerprint(image) for image in images]
        found: dict[str, torch.Tensor] = {}
        with self._lock:
            for key in dict.fromkeys(keys):
                if (latent := self._latents.get(key)) is not None:
                    found[key] = latent
            missing = [k for k in dict.fromkeys(keys) if k not in found]
            self.misses += sum(k not in found for k in keys)
            self.hits += sum(k in found for k in keys)
        if missing:
            first: dict[str, int] = {}
            for i, key in enumerate(keys):
                first.setdefault(key, i)
            with torch.no_grad():
                encoded = encode_fn(images[[first[k] for k in missing]])
            if not isinstance(encoded, torch.Tensor) or len(encoded) != len(missing):
                got = len(encoded) if isinstance(encoded, torch.Tensor) else type(encoded).__name__
                raise ValueError(
                    f"encode_fn must return a tensor with one latent per image "
                    f"({len(missing)}), got {got}"
                )
            encoded = encoded.detach().cpu()
            found.update(zip(missing, encoded.clone(), strict=True))
            with self._lock:
                for key in missing:
                    self._latents.put(key, found[key])
            self._persist(missing, encoded)
        return torch.stack([found[k] for k in keys]).to(images.device)

    def _persist(self, keys: list[str], latents: torch.Tensor) -> None:
        if self.folder is None:
            return
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{SHARD_SUFFIX}"
        try:
            write_shard(
                self.folder / name,
                {"latents": latents},
                {"keys": json.dumps(keys), "namespace": self.namespace},
            )
        except OSError as err:
            warnings.warn(
                f"cannot write the latent cache at {self.folder} ({err}); keeping "
                "latents in memory only",
                RuntimeWarning,
                stacklevel=3,
            )
            self.folder = None

    def __len__(self) -> int:
        return len(self._latents)

    def __contains__(self, image: torch.Tensor) -> bool:
        return tensor_fingerprint(image) in self._latents

    def stats(self) -> dict[str, int]:
        """Hits and misses (images not cached when asked for) and latents held."""
        return {"hits": self.hits, "misses": self.misses, "latents": len(self._latents)}

    def __repr__(self) -> str:
        return f"LatentCache({self.namespace}, {len(self)} latents, folder={self.folder})"
