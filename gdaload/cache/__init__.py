"""Caches of generated samples and encoded latents, on disk and in memory.

* :class:`SampleStore` keeps generated samples in checksummed safetensors shards for
  later epochs and runs, keyed by the generator's config hash.
* :class:`LatentCache` encodes each real image with the VAE only once.
* :class:`LRU` is the bounded in-memory map behind both (and behind the view cache of
  :class:`~gdaload.GenerativeTTA`).
"""

from gdaload.cache.latents import LatentCache
from gdaload.cache.lru import LRU
from gdaload.cache.shards import CorruptShardError
from gdaload.cache.store import ConfiguredGenerator, SampleStore

__all__ = ["LRU", "ConfiguredGenerator", "CorruptShardError", "LatentCache", "SampleStore"]
