"""The training loop every trainer runs: one model, one optimiser, one loss per step.

The loop owns what is the same in every trainer: ``accelerate`` (device placement and
the mixed precision ``accelerate config`` or ``ACCELERATE_MIXED_PRECISION`` asks for),
the exponential moving average of the weights (diffusers ``EMAModel``), the progress
bar, periodic checkpoints and resuming from the newest one. A trainer supplies the loss
of a step as a function of the step's index; because that function draws its batch and
noise from generators seeded by the index, a run resumed at step k sees the same draws
as a run straight through, and ends with the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from gdaload.train.checkpoints import Checkpoints

__all__ = ["StepLoss", "train_loop"]

ModelT = TypeVar("ModelT", bound=torch.nn.Module)

StepLoss = Callable[[torch.nn.Module, int], torch.Tensor]
"""``loss(model, step) -> scalar loss``: the loss of optimiser step ``step`` (from 0),
computed with ``model``, the prepared (device-placed, possibly wrapped) model."""


def train_loop(
    model: ModelT,
    optimizer: torch.optim.Optimizer,
    loss: StepLoss,
    *,
    accelerator: Accelerator,
    steps: int,
    checkpoints: Checkpoints | None = None,
    resume: bool = True,
    ema_decay: float | None = None,
    ema_target: tuple[torch.nn.Module, float] | None = None,
    progress: bool = True,
    desc: str = "train",
    loss_name: str = "loss",
) -> ModelT:
    """Run optimiser steps ``0 .. steps - 1`` of ``loss``, resuming from a checkpoint.

    Args:
        model: The model to train; ``accelerator`` prepares it with ``optimizer``, so
            pass an accelerator that has prepared nothing else (one per stage).
        optimizer: Optimiser of ``model``'s parameters.
        loss: ``loss(prepared_model, step)``; it must draw its randomness from
            generators seeded by ``step``, never from the global random state.
        accelerator: Places the model and runs the backward pass.
        steps: Number of optimiser steps in all (a resumed run counts the steps done).
        checkpoints: Where checkpoints go; None for none.
        resume: Continue from the newest of ``checkpoints``.
        ema_decay: Decay of an exponential moving average of the weights that replaces
            them at the end; None for none.
        ema_target: ``(target, decay)``: a copy of the model that the loss reads (the
            target network of consistency distillation) and the loop keeps as a moving
            average of the model's weights, ``target = decay * target + (1 - decay) *
            model`` after every step, with a constant decay; it is saved in the
            checkpoints, so a resumed run continues with the same target.
        progress: Show a progress bar.
        desc, loss_name: The bar's title and the name its loss is shown under.

    Returns:
        ``model`` (unwrapped), holding the moving average when ``ema_decay`` is given.

    Raises:
        ValueError: If the checkpoints were made with other settings.

    Example:
        >>> net = torch.nn.Linear(2, 1)
        >>> x = torch.randn(8, 2)
        >>> trained = train_loop(
        ...     net,
        ...     torch.optim.SGD(net.parameters(), lr=0.1),
        ...     lambda model, step: model(x.to(model.weight.device)).pow(2).mean(),
        ...     accelerator=Accelerator(cpu=True),
        ...     steps=3,
        ...     progress=False,
        ... )
        >>> trained is net
        True
    """
    prepared, optimizer = accelerator.prepare(model, optimizer)
    raw = cast(ModelT, accelerator.unwrap_model(prepared))
    names = [name for name, _ in raw.named_parameters()]
    ema = None
    if ema_decay is not None:
        ema = EMAModel(raw.parameters(), decay=ema_decay)
        ema.to(accelerator.device)
    target = None
    if ema_target is not None:
        target, target_decay = ema_target
        target.to(accelerator.device).requires_grad_(False)
        if [name for name, _ in target.named_parameters()] != names:
            raise ValueError("ema_target must have the model's parameters, in the same order")

    step = 0
    if checkpoints is not None and resume:
        latest = checkpoints.latest()
        if latest is not None:
            step = checkpoints.load(accelerator, latest, ema, names, target)

    bar = tqdm(
        total=steps,
        initial=min(step, steps),
        disable=not progress or not accelerator.is_local_main_process,
        desc=desc,
    )
    while step < steps:
        value = loss(prepared, step)
        accelerator.backward(value)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(raw.parameters())
        if target is not None:
            with torch.no_grad():
                for kept, new in zip(target.parameters(), raw.parameters(), strict=True):
                    kept.lerp_(new.detach(), 1 - target_decay)
        step += 1
        bar.update(1)
        bar.set_postfix({loss_name: f"{value.item():.4f}"})
        if checkpoints is not None and checkpoints.due(step, steps):
            checkpoints.save(accelerator, step, ema, names, target)
    bar.close()

    if ema is not None:
        ema.copy_to(raw.parameters())
    return raw
