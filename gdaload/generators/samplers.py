"""Fast samplers by name, as diffusers schedulers built from a model's training scheduler.

Swapping samplers the diffusers way (``NewScheduler.from_config(old.config)``) keeps the
noise schedule the model was trained with and only changes the solver.
"""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

__all__ = ["SAMPLERS", "make_scheduler"]

#: Sampler name -> (scheduler class, config overrides). ``dpm-solver++`` reaches the
#: quality of 1000-step DDPM in about 20 steps; ``ddpm`` is the slow, stochastic reference.
SAMPLERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {}),
    "dpm-solver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "unipc": (UniPCMultistepScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "ddpm": (DDPMScheduler, {}),
}


def make_scheduler(name: str, base: SchedulerMixin | dict[str, Any]) -> SchedulerMixin:
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
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid samplers are {sorted(SAMPLERS)}")
    cls, overrides = SAMPLERS[name]
    config = base if isinstance(base, dict) else base.config
    return cls.from_config(config, **overrides)
