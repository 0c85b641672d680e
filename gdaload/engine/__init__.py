"""Generation engines and caches: keep generation from stalling the training loop.

* :class:`SyncEngine` generates each batch's samples when asked (the default).
* :class:`ThreadEngine` generates ahead in a background thread into a bounded
  :class:`SamplePool`, with a ``wait`` or ``reuse`` policy when the pool runs dry.
* :class:`SampleStore` keeps generated samples on disk for later epochs and runs.
* :class:`LatentCache` encodes each real image with the VAE only once.
"""

from gdaload.engine.base import ENGINES, Engine, EngineStats, Served, SyntheticSource
from gdaload.engine.latents import LatentCache
from gdaload.engine.pool import DRY_POLICIES, ReuseBank, SamplePool
from gdaload.engine.shards import CorruptShardError
from gdaload.engine.store import SampleStore
from gdaload.engine.sync import SyncEngine
from gdaload.engine.threaded import GenerationStoppedError, ThreadEngine

__all__ = [
    "DRY_POLICIES",
    "ENGINES",
    "CorruptShardError",
    "Engine",
    "EngineStats",
    "GenerationStoppedError",
    "LatentCache",
    "ReuseBank",
    "SamplePool",
    "SampleStore",
    "Served",
    "SyncEngine",
    "SyntheticSource",
    "ThreadEngine",
]
