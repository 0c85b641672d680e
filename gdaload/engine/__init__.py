"""Generation engines: keep generation from stalling the training loop.

* :class:`SyncEngine` generates each batch's samples when asked (the default).
* :class:`ThreadEngine` generates ahead in a background thread into a bounded
  :class:`SamplePool`, with a ``wait`` or ``reuse`` policy when the pool runs dry.

Both read a :class:`~gdaload.cache.SampleStore` before generating.
"""

from gdaload.engine.base import ENGINES, Engine, EngineStats, Served, SyntheticSource
from gdaload.engine.pool import DRY_POLICIES, ReuseBank, SamplePool
from gdaload.engine.sync import SyncEngine
from gdaload.engine.threaded import GenerationStoppedError, ThreadEngine

__all__ = [
    "DRY_POLICIES",
    "ENGINES",
    "Engine",
    "EngineStats",
    "GenerationStoppedError",
    "ReuseBank",
    "SamplePool",
    "Served",
    "SyncEngine",
    "SyntheticSource",
    "ThreadEngine",
]
