"""Checkpoints of a training run: one ``Accelerator.save_state`` folder per saved step.

A checkpoint ``step-{N}/`` holds what ``save_state`` writes for the prepared model and
optimiser: ``model.safetensors`` (``safe_serialization=True``), ``optimizer.bin`` and
``random_states_0.pkl``, tensor-only torch files that accelerate reads back with
``weights_only=True``. Files of ours complete it: ``ema.safetensors``, the moving
average's weights, ``target.safetensors``, the weights of a target network (consistency
distillation), and ``training_state.json``: the step, the run's settings and the
moving average's counters.

The moving average is not registered with ``Accelerator.register_for_checkpointing``:
accelerate pickles registered objects and loads them back with ``weights_only=False``,
so a crafted checkpoint could run code when a run resumes. Safetensors and JSON cannot.

``training_state.json`` is written last; a folder without it was cut off mid-write (or
made by an older layout) and is never resumed from.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file

__all__ = ["EMA_FILE", "STATE_FILE", "TARGET_FILE", "Checkpoints"]

logger = logging.getLogger(__name__)

STATE_FILE = "training_state.json"
EMA_FILE = "ema.safetensors"
TARGET_FILE = "target.safetensors"
_PREFIX = "step-"


class Checkpoints:
    """The checkpoint folders ``folder/step-{N}`` of one training run (or stage).

    Args:
        folder: Where the ``step-{N}`` folders go.
        settings: JSON-serialisable settings the run's results depend on; resuming from
            checkpoints made with other settings is refused.
        every: Steps between checkpoints (the last step is always saved).
        keep: How many of the newest complete checkpoints are kept; two, so one survives
            a run cut off while writing the newest.

    Example:
        >>> ckpts = Checkpoints("runs/gen/checkpoints", {"lr": 1e-3}, every=500)
        >>> ckpts.due(500, steps=2000), ckpts.due(501, steps=2000)
        (True, False)
        >>> ckpts.latest()  # doctest: +SKIP
        PosixPath('runs/gen/checkpoints/step-1500')
    """

    def __init__(
        self, folder: str | Path, settings: Mapping[str, Any], every: int, keep: int = 2
    ) -> None:
        if int(every) < 1 or int(keep) < 1:
            raise ValueError(f"every and keep must be >= 1, got {every} and {keep}")
        self.folder = Path(folder)
        # As it reads back from JSON (tuples become lists), so the comparison is exact.
        self.settings = json.loads(json.dumps(dict(settings)))
        self.every, self.keep = int(every), int(keep)

    def due(self, step: int, steps: int) -> bool:
        """Whether a checkpoint is saved after ``step`` of ``steps`` optimiser steps."""
        return step % self.every == 0 or step == steps

    def complete(self) -> list[tuple[int, Path]]:
        """``(step, folder)`` of the complete checkpoints, oldest first."""
        found = []
        for path in self.folder.glob(f"{_PREFIX}*"):
            number = path.name[len(_PREFIX) :]
            if number.isdigit() and (path / STATE_FILE).is_file():
                found.append((int(number), path))
        return sorted(found)

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None.

        Raises:
            ValueError: If it was made with other settings.
        """
        found = self.complete()
        if not found:
            return None
        path = found[-1][1]
        saved = json.loads((path / STATE_FILE).read_text())["settings"]
        if saved != self.settings:
            changed = sorted(
                k for k in {*saved, *self.settings} if saved.get(k) != self.settings.get(k)
            )
            raise ValueError(
                f"the checkpoints in {self.folder} were made with other settings ({changed}); "
                "pass resume=False (--no-resume) to start over, or another output folder"
            )
        return path

    def save(
        self,
        accelerator: Accelerator,
        step: int,
        ema: EMAModel | None = None,
        parameter_names: Sequence[str] = (),
        network: torch.nn.Module | None = None,
    ) -> Path:
        """Save the accelerator's prepared objects, ``ema`` and ``network`` (a target
        network kept beside the model) as ``step-{step}``.

        Every process calls this (``save_state`` synchronises them); only the main
        process writes. ``parameter_names`` name the moving average's tensors, in the
        order of the model's parameters.
        """
        target = self.folder / f"{_PREFIX}{step}"
        if accelerator.is_main_process and target.exists():
            shutil.rmtree(target)  # a leftover of a cut-off run: start it clean
        accelerator.wait_for_everyone()
        accelerator.save_state(str(target), safe_serialization=True)
        if accelerator.is_main_process:
            state: dict[str, Any] = {"step": step, "settings": self.settings}
            if ema is not None:
                tensors, state["ema"] = _ema_files(ema, parameter_names)
                save_file(tensors, target / EMA_FILE)
            if network is not None:
                weights = network.state_dict()
                save_file(
                    {k: v.detach().cpu().contiguous() for k, v in weights.items()},
                    target / TARGET_FILE,
                )
            partial = target / f"{STATE_FILE}.partial"
            partial.write_text(json.dumps(state, indent=2))
            partial.replace(target / STATE_FILE)
            self._prune()
        accelerator.wait_for_everyone()
        return target

    def load(
        self,
        accelerator: Accelerator,
        path: Path,
        ema: EMAModel | None = None,
        parameter_names: Sequence[str] = (),
        network: torch.nn.Module | None = None,
    ) -> int:
        """Restore the prepared objects, ``ema`` and ``network`` from ``path``; returns its step.

        The caller's global random states are left as they were: ``load_state`` would
        restore the saving process's, and training draws from seeded generators only.
        """
        state = json.loads((path / STATE_FILE).read_text())
        with _global_rng_kept():
            accelerator.load_state(str(path))
        if ema is not None:
            if "ema" not in state:
                raise ValueError(f"the checkpoint {path} has no moving average")
            tensors = load_file(path / EMA_FILE)
            missing = [name for name in parameter_names if name not in tensors]
            if missing or len(tensors) != len(parameter_names):
                raise ValueError(f"the moving average in {path} does not fit the model")
            shadow = [tensors[name] for name in parameter_names]
            ema.load_state_dict({**state["ema"], "shadow_params": shadow})
            ema.to(accelerator.device)
        if network is not None:
            if not (path / TARGET_FILE).is_file():
                raise ValueError(f"the checkpoint {path} has no target network")
            network.load_state_dict(load_file(path / TARGET_FILE, device=str(accelerator.device)))
        logger.info("resumed from %s at step %d", path, state["step"])
        return int(state["step"])

    def _prune(self) -> None:
        kept = {path for _, path in self.complete()[-self.keep :]}
        for path in self.folder.glob(f"{_PREFIX}*"):
            if path not in kept and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)


def _ema_files(
    ema: EMAModel, names: Sequence[str]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The moving average as named tensors and JSON-serialisable counters."""
    state = ema.state_dict()
    shadow = state.pop("shadow_params")
    if len(shadow) != len(names):
        raise ValueError(f"{len(names)} parameter names for {len(shadow)} averaged tensors")
    return {
        name: t.detach().cpu().contiguous() for name, t in zip(names, shadow, strict=True)
    }, state


@contextmanager
def _global_rng_kept() -> Iterator[None]:
    """Put Python's, NumPy's and torch's (CPU and CUDA) global random states back."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
