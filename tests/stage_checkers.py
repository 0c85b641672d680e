"""Cutting a two-stage trainer off at one step of one stage, and reading which stages
a later run resumed: shared by the multi-view and the text-to-image trainers' tests."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


class Interrupted(Exception):
    """What the patched batch function raises, standing for a killed run."""


def cut_at(
    monkeypatch: pytest.MonkeyPatch,
    trainer: ModuleType,
    stage: int,
    step: int,
    run: Callable[[], Any],
) -> None:
    """Run ``run()`` with ``trainer.permuted_batch`` raising at ``(stage tag, step)``;
    the run must be cut off there."""
    real = trainer.permuted_batch

    def batch(size: int, batch_size: int, seed: int, tag: int, at: int, *rest: Any) -> Any:
        if (tag, at) == (stage, step):
            raise Interrupted
        return real(size, batch_size, seed, tag, at, *rest)

    monkeypatch.setattr(trainer, "permuted_batch", batch)
    with pytest.raises(Interrupted):
        run()
    monkeypatch.undo()


def resumed_stages(caplog: pytest.LogCaptureFixture, step: int) -> list[str]:
    """The checkpoint folders (one per stage) runs resumed from, in order; each resume
    must be from ``step``. Needs ``caplog`` at INFO for ``gdaload.train.checkpoints``."""
    # "resumed from .../checkpoints/<stage>/step-<n> at step <n>"
    found = [m.split()[2] for m in caplog.messages if m.startswith("resumed")]
    assert all(path.endswith(f"step-{step}") for path in found)
    return [Path(path).parent.name for path in found]


def cut_in_each_stage_then_finish(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    trainer: ModuleType,
    stages: list[tuple[int, str]],
    run: Callable[[], Path],
) -> Path:
    """Cut ``run()`` off at step 2 of each stage in turn (``(stream tag, checkpoint
    folder)``, in training order), checking that each run resumes the stages before,
    then run it to the end; returns its output folder."""
    caplog.set_level(logging.INFO, logger="gdaload.train.checkpoints")
    folders = [folder for _, folder in stages]
    for done, (tag, _) in enumerate(stages):
        cut_at(monkeypatch, trainer, tag, 2, run)
        # A finished stage loads from its saved model, not from a checkpoint: each run
        # resumes only the stage it was cut off in.
        assert resumed_stages(caplog, 2) == folders[:done]
    out = run()
    assert resumed_stages(caplog, 2) == folders
    return out
