"""``DiffusersGenerator``: what every generator over a diffusers pipeline shares.

Placement on a device and dtype, evaluation mode, the sampler (a scheduler built on the
training scheduler's noise schedule), step and batch-size settings, the config with its
weights fingerprint (computed once and kept), saving, and batching of large requests.
Concrete generators add their modes, inputs and sampling loops.
"""

from __future__ import annotations

import abc
import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast

import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from gdaload.fingerprint import ModulesFingerprint
from gdaload.generators.base import Generator, config_digest
from gdaload.generators.metadata import write_metadata
from gdaload.generators.samplers import NoiseScheduler, check_sampler, make_scheduler

__all__ = ["DiffusersGenerator"]

PipelineT = TypeVar("PipelineT", bound=DiffusionPipeline)


def default_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when available, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


class DiffusersGenerator(Generator, Generic[PipelineT]):
    """Base of the generators that sample a diffusers pipeline (:attr:`pipeline`).

    The pipeline's scheduler is the *sampler*, built by
    :func:`~gdaload.generators.samplers.make_scheduler` from the scheduler the pipeline
    came with (kept as :attr:`train_scheduler`, which fixes the noise schedule and is what
    :meth:`save_pretrained` writes). Assigning :attr:`sampler` swaps it.

    :attr:`config` is built once and kept: settings changed through their properties
    rebuild it, and the weights fingerprint is recomputed only when a weight changed in
    place (see :class:`~gdaload.fingerprint.ModulesFingerprint`), so reading the config
    or :meth:`config_hash` per batch costs well under a millisecond.

    Subclasses set :attr:`kind`, :attr:`num_classes` and :attr:`image_shape`, implement
    ``generate`` and :meth:`_own_config`, and may override :meth:`_fingerprinted_modules`
    and :meth:`_metadata`.

    Args:
        pipeline: The diffusers pipeline; it is moved to ``device`` (and cast to ``dtype``).
        sampler: One of :data:`~gdaload.generators.samplers.SAMPLERS`.
        steps: Sampler steps.
        max_batch_size: Largest batch sent to the model at once.
        device: Where to generate; default CUDA if available, else CPU.
        dtype: Weights' dtype, or ``None`` to keep the pipeline's.
        model_id: Name recorded in :attr:`config`.

    Example:
        >>> from gdaload import DiffusionGenerator
        >>> gen = DiffusionGenerator.from_pretrained("path/to/model")  # doctest: +SKIP
        >>> key = gen.config_hash()  # hashes the weights once  # doctest: +SKIP
        >>> gen.config_hash() == key  # kept: no weight or setting changed  # doctest: +SKIP
        True
        >>> gen.sampler = "ddim"  # swaps the scheduler and rebuilds the config  # doctest: +SKIP
        >>> gen.config_hash() == key  # doctest: +SKIP
        False
    """

    #: ``config["kind"]``: which generator made a sample.
    kind: ClassVar[str]

    def __init__(
        self,
        pipeline: PipelineT,
        *,
        sampler: str,
        steps: int,
        max_batch_size: int,
        device: str | torch.device | None,
        dtype: torch.dtype | None,
        model_id: str,
    ) -> None:
        check_sampler(sampler)
        self._config: dict[str, Any] | None = None
        self._config_hash: str | None = None
        self._weights = ModulesFingerprint()
        self.steps = steps
        if int(max_batch_size) < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.max_batch_size = int(max_batch_size)
        self._device = default_device(device)
        # Cast only when asked: diffusers warns about casting modules it keeps in float32.
        self.pipeline: PipelineT = (
            pipeline.to(self._device) if dtype is None else pipeline.to(self._device, dtype)
        )
        self.dtype: torch.dtype = self.pipeline.dtype
        self.pipeline.set_progress_bar_config(disable=True)
        # Freshly built modules are in training mode; DiT's label dropout would then drop
        # classes at random (from the global RNG) during generation.
        for component in self.pipeline.components.values():
            if isinstance(component, torch.nn.Module):
                component.eval()
        self.model_id = model_id
        self.train_scheduler: NoiseScheduler = self.pipeline.scheduler
        self.sampler = sampler

    # ------------------------------------------------------------------ settings
    @property
    def sampler(self) -> str:
        """The sampler's name; assigning one swaps the pipeline's scheduler."""
        return self._sampler

    @sampler.setter
    def sampler(self, name: str) -> None:
        self._check_setting("sampler", check_sampler(name))
        self.pipeline.scheduler = make_scheduler(name, self.train_scheduler)
        self._sampler = name
        self._settings_changed()

    @property
    def scheduler(self) -> NoiseScheduler:
        """The sampler's scheduler (the pipeline's)."""
        return cast(NoiseScheduler, self.pipeline.scheduler)

    @property
    def steps(self) -> int:
        """Sampler steps."""
        return self._steps

    @steps.setter
    def steps(self, steps: int) -> None:
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self._check_setting("steps", int(steps))
        self._steps = int(steps)
        self._settings_changed()

    @property
    def model_id(self) -> str:
        """Name of the model recorded in :attr:`config`."""
        return self._model_id

    @model_id.setter
    def model_id(self, name: str) -> None:
        self._model_id = name
        self._settings_changed()

    def _check_setting(self, name: str, value: Any) -> None:
        """Raise if the model cannot use ``value`` for setting ``name`` (all can here)."""

    def _settings_changed(self) -> None:
        """Forget the config; the next read rebuilds it (the weights hash is kept)."""
        self._config = self._config_hash = None

    # ------------------------------------------------------------------ config
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def config(self) -> dict[str, Any]:
        return copy.deepcopy(self._current_config())

    def config_hash(self) -> str:
        config = self._current_config()
        if self._config_hash is None:
            self._config_hash = config_digest(config)
        return self._config_hash

    def refresh_config(self) -> None:
        """Rebuild the config and rehash every weight on the next read.

        Only needed after changing modules in ways their tensors' version counters do
        not show, such as replacing a submodule of the UNet.
        """
        self._weights.clear()
        self._settings_changed()

    def weights_fingerprint(self) -> str:
        """Fingerprint of every weight of the generator's modules.

        Two folders holding the same name but different weights (a retrained model) must
        not share cached samples.
        """
        return self._weights(self._fingerprinted_modules())

    def _current_config(self) -> dict[str, Any]:
        weights = self.weights_fingerprint()
        if self._config is None or self._config["weights"] != weights:
            self._config = {
                "kind": self.kind,
                "model": self.model_id,
                "weights": weights,
                "sampler": self.sampler,
                "steps": self.steps,
                "image_shape": list(self.image_shape),
                **self._own_config(),
            }
            self._config_hash = None
        return self._config

    @abc.abstractmethod
    def _own_config(self) -> dict[str, Any]:
        """The subclass's settings that change what is generated, JSON-serialisable."""

    def _fingerprinted_modules(self) -> list[tuple[str, torch.nn.Module]]:
        """The named modules whose weights :meth:`weights_fingerprint` covers, in order."""
        return [
            (name, component)
            for name, component in sorted(self.pipeline.components.items())
            if isinstance(component, torch.nn.Module)
        ]

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, folder: str | os.PathLike[str], **meta: Any) -> Path:
        """Save the pipeline (with :attr:`train_scheduler`) through diffusers and the
        generator's own settings plus ``meta`` to :data:`~gdaload.generators.metadata.GDALOAD_META`.

        Returns:
            The folder.
        """
        out = Path(folder)
        sampling = self.pipeline.scheduler
        self.pipeline.scheduler = self.train_scheduler
        try:
            self.pipeline.save_pretrained(out)
        finally:
            self.pipeline.scheduler = sampling
        write_metadata(out, {**self._metadata(), **meta})
        return out

    def _metadata(self) -> dict[str, Any]:
        """Settings saved beside the pipeline, read back by ``from_pretrained``."""
        return {}

    # ------------------------------------------------------------------ batching
    def _chunks(self, n: int) -> Iterator[slice]:
        """Slices of ``range(n)`` of at most :attr:`max_batch_size` items."""
        for start in range(0, n, self.max_batch_size):
            yield slice(start, start + self.max_batch_size)
