"""Seeds: every random choice in gdaload is a pure function of integer keys.

* :func:`derive_seed` / :func:`derive_rng` (:mod:`~gdaload.seeding.derive`): a seed or a
  NumPy generator from integer keys.
* :class:`Stream` (:mod:`~gdaload.seeding.streams`): the registry of stream tags.
* :class:`SeedPlan` (:mod:`~gdaload.seeding.plan`): the seeds of synthetic samples.
* :func:`derive_seeds` / :func:`plan_seeds` (:mod:`~gdaload.seeding.vectorised`): many
  seeds at once, on arrays.
* :class:`SharedEpoch` (:mod:`~gdaload.seeding.epoch`): the epoch DataLoader workers see.
"""

from gdaload.seeding.derive import derive_rng, derive_seed
from gdaload.seeding.epoch import SharedEpoch
from gdaload.seeding.plan import SeedPlan
from gdaload.seeding.streams import Stream
from gdaload.seeding.vectorised import derive_seeds, plan_seeds

__all__ = [
    "SeedPlan",
    "SharedEpoch",
    "Stream",
    "derive_rng",
    "derive_seed",
    "derive_seeds",
    "plan_seeds",
]
