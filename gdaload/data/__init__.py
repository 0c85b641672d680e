"""Ways into a training loop: a dataset wrapper and a loader wrapper."""

from gdaload.data.dataset import GenerativeDataset
from gdaload.data.loader import GenerativeLoader
from gdaload.data.policies import CLASS_POLICIES

__all__ = ["CLASS_POLICIES", "GenerativeDataset", "GenerativeLoader"]
