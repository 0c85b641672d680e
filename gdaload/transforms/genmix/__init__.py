"""GenMix: mixup between the real and the synthetic samples of a training batch.

Adding diffusion-generated images to a training set does not by itself help much; the
GenMix paper (CT liver lesions, 3 classes) reports 72.0-75.9 accuracy from adding them
versus 72.3 on real data only, and 81.4 once every real image is mixed with a synthetic
one:

    x = lam * x_S + (1 - lam) * x_R,    y = lam * y_S + (1 - lam) * y_R,

with ``lam ~ Beta(alpha, 1)``. :class:`GenMix` applies that rule to collated batches
that carry a boolean ``synthetic_mask``, with the call shape of ``timm.data.Mixup``.

:mod:`~gdaload.transforms.genmix.transform` holds the transform,
:mod:`~gdaload.transforms.genmix.record` the :class:`MixRecord` of a mixed batch,
:mod:`~gdaload.transforms.genmix.sampling` the partner dealing and cutmix boxes,
:mod:`~gdaload.transforms.genmix.soft_masks` the soft masks of segmentation batches, and
:mod:`~gdaload.transforms.genmix.inputs` the checks of batches, masks and targets.
"""

from gdaload.transforms.genmix.record import MixRecord
from gdaload.transforms.genmix.transform import (
    BETAS,
    FALLBACKS,
    MODES,
    PAIRINGS,
    SYNTHETIC_ROWS,
    GenMix,
)

__all__ = ["GenMix", "MixRecord", "BETAS", "FALLBACKS", "MODES", "PAIRINGS", "SYNTHETIC_ROWS"]
