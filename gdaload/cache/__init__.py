"""Caches of generated samples and encoded latents, on disk and in memory.

* :class:`SampleStore` keeps generated samples in checksummed safetensors shards for
  later epochs and runs, keyed by the generator's config hash.
* :class:`LatentCache` encodes each real image with the VAE only once.
"""

from gdaload.cache.latents import LatentCache
from gdaload.cache.shards import CorruptShardError
from gdaload.cache.store import SampleStore

__all__ = ["CorruptShardError", "LatentCache", "SampleStore"]
