"""Seeds: every random choice in gdaload is a pure function of integer keys."""

from gdaload.seeding.plan import SeedPlan, derive_rng, derive_seed
from gdaload.seeding.streams import Stream
from gdaload.seeding.vectorised import derive_seeds, plan_seeds

__all__ = ["SeedPlan", "Stream", "derive_rng", "derive_seed", "derive_seeds", "plan_seeds"]
