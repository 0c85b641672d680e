"""Ways into a training loop: a dataset wrapper and a loader wrapper.

* :class:`GenerativeLoader` appends synthetic samples to the batches of a loader.
* :class:`GenerativeDataset` puts synthetic samples after the real ones of a dataset.
* :class:`AdaptiveRatio` picks the ratio of each epoch from validation feedback.
* :class:`SyntheticSpec` is what both share: checked settings, store and epoch state.
* :func:`fill_store` generates the samples of a range of epochs into a store, split
  across the processes of a job; :func:`fill_store_ray` does it on a Ray cluster.
"""

from gdaload.data.adaptive import AdaptiveRatio
from gdaload.data.bulk import BulkReport, fill_store
from gdaload.data.dataset import GenerativeDataset
from gdaload.data.loader import GenerativeLoader
from gdaload.data.policies import CLASS_POLICIES
from gdaload.data.ray_pool import PoolReport, fill_store_ray
from gdaload.data.spec import SyntheticSpec

__all__ = [
    "CLASS_POLICIES",
    "AdaptiveRatio",
    "BulkReport",
    "GenerativeDataset",
    "GenerativeLoader",
    "PoolReport",
    "SyntheticSpec",
    "fill_store",
    "fill_store_ray",
]
