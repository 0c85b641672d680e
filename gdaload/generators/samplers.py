"""Fast samplers by name, as diffusers schedulers built from a model's training scheduler.

Swapping samplers the diffusers way (``NewScheduler.from_config(old.config)``) keeps the
noise schedule the model was trained with and only changes the solver.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
from diffusers.schedulers.scheduling_lcm import LCMScheduler
from diffusers.schedulers.scheduling_unipc_multistep import UniPCMultistepScheduler

__all__ = ["SAMPLERS", "NoiseScheduler", "check_sampler", "make_scheduler"]

#: Sampler name -> (scheduler class, config overrides). ``dpm-solver++`` reaches the
#: quality of 1000-step DDPM in about 20 steps; ``ddpm`` is the slow, stochastic reference;
#: ``lcm`` samples latent consistency models (distilled, or with LCM-LoRA) in 1-8 steps.
SAMPLERS: dict[str, tuple[type[ConfigMixin], dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {}),
    "dpm-solver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "unipc": (UniPCMultistepScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "ddpm": (DDPMScheduler, {}),
    "lcm": (LCMScheduler, {}),
}


class StepOutput(Protocol):
    """What a scheduler's ``step`` returns (with the default ``return_dict=True``)."""

    @property
    def prev_sample(self) -> torch.Tensor: ...


class NoiseScheduler(Protocol):
    """The part of a diffusers scheduler that gdaload's samplers use.

    diffusers has no common type for it: ``SchedulerMixin`` declares none of these
    members, and each scheduler class spells ``step`` and ``set_timesteps`` its own way.
    """

    @property
    def config(self) -> dict[str, Any]: ...

    @property
    def timesteps(self) -> torch.Tensor: ...

    @property
    def init_noise_sigma(self) -> float | torch.Tensor: ...

    @property
    def order(self) -> int: ...

    def set_timesteps(self, *args: Any, **kwargs: Any) -> None: ...

    def scale_model_input(self, *args: Any, **kwargs: Any) -> torch.Tensor: ...

    def step(self, *args: Any, **kwargs: Any) -> StepOutput: ...

    def add_noise(self, *args: Any, **kwargs: Any) -> torch.Tensor: ...


def check_sampler(name: str) -> str:
    """Return ``name`` if it is one of :data:`SAMPLERS`.

    Raises:
        ValueError: Otherwise; the message lists the valid samplers.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid samplers are {sorted(SAMPLERS)}")
    return name


def make_scheduler(
    name: str, base: ConfigMixin | NoiseScheduler | dict[str, Any]
) -> NoiseScheduler:
    """Build the scheduler for sampler ``name`` on the noise schedule of ``base``.

    Args:
        name: One of :data:`SAMPLERS`.
        base: The model's scheduler (or its config), which fixes the noise schedule.

    Raises:
        ValueError: If ``name`` is not a known sampler; the message lists the valid ones.

    Example:
        >>> from diffusers import DDPMScheduler
        >>> type(make_scheduler("ddim", DDPMScheduler())).__name__
        'DDIMScheduler'
    """
    cls, overrides = SAMPLERS[check_sampler(name)]
    config = base if isinstance(base, dict) else base.config
    # from_config returns the scheduler alone unless asked for the unused kwargs.
    return cast(NoiseScheduler, cls.from_config(config, **overrides))
