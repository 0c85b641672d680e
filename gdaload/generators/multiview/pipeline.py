"""``MultiViewPipeline``: the modules of a multi-view model, saved and loaded by diffusers.

A saved multi-view generator is a diffusers pipeline folder like a class-conditional one:
``model_index.json``, ``unet/``, ``autoencoder/`` and ``scheduler/`` (the training noise
schedule), plus gdaload's :data:`~gdaload.generators.metadata.GDALOAD_META` with the view
names, the observed view, the class names and how the model was trained.

Folders written before the pipeline existed have the same module folders but
``multiview.json`` instead of ``model_index.json``; :func:`load_multiview_folder` reads
both layouts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from diffusers.models.unets.unet_2d import UNet2DModel
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from gdaload.generators.hub import quiet_loading
from gdaload.generators.metadata import read_metadata
from gdaload.generators.multiview.autoencoder import ViewAutoencoder
from gdaload.generators.samplers import NoiseScheduler

__all__ = ["LEGACY_META", "MultiViewPipeline", "load_multiview_folder"]

#: The metadata file of multi-view folders written before :class:`MultiViewPipeline`.
LEGACY_META = "multiview.json"


class MultiViewPipeline(DiffusionPipeline):
    """The UNet, view autoencoder and scheduler of a multi-view model.

    It registers the modules with diffusers, so ``save_pretrained`` and
    ``from_pretrained`` are diffusers' own. Sampling is
    :class:`~gdaload.MultiViewDiffusion`'s.

    Args:
        unet: Denoiser built by :func:`~gdaload.generators.multiview.build_multiview_unet`.
        autoencoder: The views' autoencoder.
        scheduler: The training noise schedule.

    Example:
        >>> import tempfile
        >>> from diffusers import DDPMScheduler
        >>> from gdaload.generators.multiview import build_multiview_unet
        >>> pipe = MultiViewPipeline(build_multiview_unet(4, 5, 4, widths=(8, 16)),
        ...     ViewAutoencoder(in_channels=3, detail_channels=2, widths=(8,)), DDPMScheduler())
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     pipe.save_pretrained(folder)
        ...     type(MultiViewPipeline.from_pretrained(folder).autoencoder).__name__
        'ViewAutoencoder'
    """

    # Registered by register_modules; declared for type checkers.
    unet: UNet2DModel
    autoencoder: ViewAutoencoder
    scheduler: NoiseScheduler

    def __init__(
        self, unet: UNet2DModel, autoencoder: ViewAutoencoder, scheduler: SchedulerMixin
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, autoencoder=autoencoder, scheduler=scheduler)


def load_multiview_folder(
    folder: str | os.PathLike[str],
) -> tuple[MultiViewPipeline, dict[str, Any]]:
    """The pipeline and metadata of a saved multi-view model, in either layout.

    Raises:
        FileNotFoundError: If the folder is not a saved multi-view model.
        ValueError: If it holds another kind of pipeline.
    """
    path = Path(folder)
    index = path / "model_index.json"
    if index.is_file():
        kind = json.loads(index.read_text()).get("_class_name")
        if kind != MultiViewPipeline.__name__:
            raise ValueError(
                f"{path} holds a {kind}, not a multi-view model; load a class-conditional or "
                "text-to-image model with DiffusionGenerator.from_pretrained"
            )
        with quiet_loading():
            return MultiViewPipeline.from_pretrained(path), read_metadata(path)
    missing = [
        p for p in (LEGACY_META, "unet", "autoencoder", "scheduler") if not (path / p).exists()
    ]
    if missing:
        raise FileNotFoundError(
            f"{path} is not a saved multi-view model (no model_index.json, missing {missing}); "
            "train one with `gdaload train-multiview --output FOLDER` or "
            "MultiViewDiffusion.save_pretrained"
        )
    pipe = MultiViewPipeline(
        UNet2DModel.from_pretrained(path / "unet"),
        ViewAutoencoder.from_pretrained(path / "autoencoder"),
        DDPMScheduler.from_pretrained(path / "scheduler"),
    )
    return pipe, json.loads((path / LEGACY_META).read_text())
