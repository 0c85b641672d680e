"""Few-step generation: the limits of a distilled model, and LCM-LoRA weights.

A model made by :func:`gdaload.train.distill` is a latent consistency model: it samples
with diffusers' ``LCMScheduler`` only, without classifier-free guidance (it is distilled
from its teacher's unguided ODE, the setting gdaload samples with by default), and on
the skipping-step schedule it was distilled on. Its ``gdaload.json`` holds a
``distillation`` block; :class:`Distillation` reads it and checks the generator's
settings against it.

Text-to-image models get few-step sampling from published LCM-LoRA weights instead
(``latent-consistency/lcm-lora-sdv1-5`` and the like), loaded the diffusers way with
``load_lora_weights`` and sampled with ``sampler="lcm"``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusers.pipelines.pipeline_utils import DiffusionPipeline

__all__ = ["Distillation", "load_lcm_lora"]


@dataclass(frozen=True)
class Distillation:
    """What a distilled model allows: the ``lcm`` sampler, guidance 1 and its step limits.

    Args:
        settings: The ``distillation`` block of the model's ``gdaload.json``; it joins the
            generator's config (and so its config hash).

    Example:
        >>> d = Distillation({"max_steps": 4, "solver_steps": 24})
        >>> d.max_steps, d.solver_steps
        (4, 24)
        >>> d.check_steps(30)
        Traceback (most recent call last):
        ...
        ValueError: this model was distilled on a 24-step schedule: steps must be at most 24, got 30
    """

    settings: Mapping[str, Any]

    @property
    def max_steps(self) -> int:
        """Most sampler steps the model was distilled for."""
        return int(self.settings["max_steps"])

    @property
    def solver_steps(self) -> int:
        """Length of the schedule it was distilled on: no more steps exist."""
        return int(self.settings["solver_steps"])

    def check_sampler(self, name: str) -> None:
        """Raise ValueError unless ``name`` is ``lcm``."""
        if name != "lcm":
            raise ValueError(
                f"this model is consistency-distilled and samples with sampler='lcm' only, "
                f"got {name!r}; use its teacher for {name!r}"
            )

    def check_steps(self, steps: int) -> None:
        """Raise ValueError beyond the schedule; warn beyond :attr:`max_steps`."""
        if steps > self.solver_steps:
            raise ValueError(
                f"this model was distilled on a {self.solver_steps}-step schedule: steps must "
                f"be at most {self.solver_steps}, got {steps}"
            )
        if steps > self.max_steps:
            warnings.warn(
                f"this model was distilled for at most {self.max_steps} steps; {steps} steps "
                "cost more and are not expected to look better",
                UserWarning,
                stacklevel=4,
            )

    def check_guidance(self, scale: float) -> None:
        """Raise ValueError unless ``scale`` is 1 (no guidance)."""
        if scale != 1.0:
            raise ValueError(
                f"a consistency-distilled model samples without classifier-free guidance: "
                f"guidance_scale must be 1, got {scale}"
            )


def load_lcm_lora(pipeline: DiffusionPipeline, source: str | os.PathLike[str]) -> str:
    """Load LCM-LoRA weights (a folder or a ``.safetensors`` file) into a text-to-image
    pipeline with diffusers' ``load_lora_weights``; returns their fingerprint.

    The fingerprint (16 hex digits of the weight file's SHA-256) joins the generator's
    config, so samples of two LoRAs never share a store.

    Raises:
        ValueError: If the pipeline takes no LoRA weights or ``source`` holds none.
    """
    path = Path(source)
    if not hasattr(pipeline, "load_lora_weights"):
        raise ValueError(
            f"{type(pipeline).__name__} takes no LoRA weights; lcm_lora= is for "
            "Stable-Diffusion-family pipelines"
        )
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if len(files) != 1:
            raise ValueError(
                f"{path} must hold one .safetensors LoRA file (found {len(files)}); "
                "pass the file itself"
            )
        path = files[0]
    if not path.is_file():
        raise ValueError(f"no LCM-LoRA weights at {source}: pass a folder or .safetensors file")
    pipeline.load_lora_weights(str(path.parent), weight_name=path.name)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
