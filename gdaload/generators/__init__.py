"""Generators: the contract and the diffusers-backed implementations.

The contract (:class:`Generator` and its kinds) is imported at once; the
diffusers-backed classes on first use, so that code which only checks a generator's kind
does not pay for importing diffusers.
"""

from typing import TYPE_CHECKING

from gdaload.generators.base import (
    GeneratedOutputError,
    Generator,
    GeneratorKindError,
    ImageConditionedGenerator,
    MultiViewGenerator,
    check_generated,
)
from gdaload.lazy import lazy_exports

_EXPORTS = {
    "Adapter": "gdaload.generators.adapter",
    "AdapterMismatchError": "gdaload.generators.adapter",
    "DiffusersGenerator": "gdaload.generators.diffusers_base",
    "DiffusionGenerator": "gdaload.generators.diffusion",
    "ModelNotAvailableError": "gdaload.generators.hub",
    "GDALOAD_META": "gdaload.generators.metadata",
    "read_metadata": "gdaload.generators.metadata",
    "write_metadata": "gdaload.generators.metadata",
    "MultiViewDiffusion": "gdaload.generators.multiview",
    "MultiViewPipeline": "gdaload.generators.multiview",
    "ViewAutoencoder": "gdaload.generators.multiview",
    "build_multiview_unet": "gdaload.generators.multiview",
    "ClassConditionalPipeline": "gdaload.generators.pipeline",
    "SAMPLERS": "gdaload.generators.samplers",
    "make_scheduler": "gdaload.generators.samplers",
    "StoredSamples": "gdaload.generators.stored",
    "BankedPairs": "gdaload.generators.masks",
    "MaskBank": "gdaload.generators.masks",
    "MaskConditionedGenerator": "gdaload.generators.masks",
    "PairGenerator": "gdaload.generators.masks",
    "check_mask": "gdaload.generators.masks",
    "JointDiffusion": "gdaload.generators.mask_diffusion",
    "MaskDiffusion": "gdaload.generators.mask_diffusion",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from gdaload.generators.adapter import Adapter, AdapterMismatchError
    from gdaload.generators.diffusers_base import DiffusersGenerator
    from gdaload.generators.diffusion import DiffusionGenerator
    from gdaload.generators.hub import ModelNotAvailableError
    from gdaload.generators.mask_diffusion import JointDiffusion, MaskDiffusion
    from gdaload.generators.masks import (
        BankedPairs,
        MaskBank,
        MaskConditionedGenerator,
        PairGenerator,
        check_mask,
    )
    from gdaload.generators.metadata import GDALOAD_META, read_metadata, write_metadata
    from gdaload.generators.multiview import (
        MultiViewDiffusion,
        MultiViewPipeline,
        ViewAutoencoder,
        build_multiview_unet,
    )
    from gdaload.generators.pipeline import ClassConditionalPipeline
    from gdaload.generators.samplers import SAMPLERS, make_scheduler
    from gdaload.generators.stored import StoredSamples

__all__ = [
    "GDALOAD_META",
    "SAMPLERS",
    "Adapter",
    "AdapterMismatchError",
    "BankedPairs",
    "JointDiffusion",
    "MaskBank",
    "MaskConditionedGenerator",
    "MaskDiffusion",
    "PairGenerator",
    "check_mask",
    "ClassConditionalPipeline",
    "DiffusersGenerator",
    "DiffusionGenerator",
    "GeneratedOutputError",
    "Generator",
    "GeneratorKindError",
    "ImageConditionedGenerator",
    "ModelNotAvailableError",
    "MultiViewDiffusion",
    "MultiViewGenerator",
    "MultiViewPipeline",
    "StoredSamples",
    "ViewAutoencoder",
    "build_multiview_unet",
    "check_generated",
    "make_scheduler",
    "read_metadata",
    "write_metadata",
]
