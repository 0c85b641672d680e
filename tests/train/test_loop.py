"""train_loop: steps, moving average, and resuming a cut-off run exactly."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from gdaload.train.checkpoints import Checkpoints
from gdaload.train.loop import train_loop


class Interrupted(Exception):
    pass


def step_loss(model: torch.nn.Module, step: int) -> torch.Tensor:
    # Data drawn from a generator seeded by the step, as the trainers do.
    draws = torch.Generator().manual_seed(step)
    x, y = torch.randn(4, 3, generator=draws), torch.randn(4, 2, generator=draws)
    return F.mse_loss(model(x), y)


def run(
    folder: Path | None,
    steps: int = 6,
    *,
    cut_at: int | None = None,
    ema_decay: float | None = 0.9,
    resume: bool = True,
    every: int = 2,
    done: list[int] | None = None,
) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 2)

    def loss(model: torch.nn.Module, step: int) -> torch.Tensor:
        if step == cut_at:
            raise Interrupted
        if done is not None:
            done.append(step)
        return step_loss(model, step)

    return train_loop(
        net,
        torch.optim.Adam(net.parameters(), lr=0.1),  # its moments must resume too
        loss,
        accelerator=Accelerator(cpu=True),
        steps=steps,
        checkpoints=Checkpoints(folder, {"lr": 0.1}, every) if folder else None,
        resume=resume,
        ema_decay=ema_decay,
        progress=False,
    )


def assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


@pytest.mark.reliability
@pytest.mark.parametrize("cut_at", [1, 3, 4, 5])
@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_a_run_cut_off_at_any_step_resumes_exactly(
    tmp_path: Path, cut_at: int, ema_decay: float | None
) -> None:
    straight = run(None, ema_decay=ema_decay)
    with pytest.raises(Interrupted):
        run(tmp_path, cut_at=cut_at, ema_decay=ema_decay)
    done: list[int] = []
    resumed = run(tmp_path, ema_decay=ema_decay, done=done)
    assert done == list(range(cut_at // 2 * 2, 6))  # from the last checkpoint on
    assert_same(straight, resumed)


def test_the_moving_average_replaces_the_weights() -> None:
    averaged, plain = run(None, ema_decay=0.9), run(None, ema_decay=None)
    assert not torch.equal(averaged.weight, plain.weight)


def test_resume_false_starts_over(tmp_path: Path) -> None:
    run(tmp_path, steps=4)
    done: list[int] = []
    assert_same(run(None), run(tmp_path, resume=False, done=done))
    assert done == list(range(6))


def test_a_finished_run_takes_no_step(tmp_path: Path) -> None:
    first = run(tmp_path, steps=4)
    done: list[int] = []
    again = run(tmp_path, steps=3, done=done)  # the checkpoint at 4 is past the end
    assert done == [] and torch.equal(first.weight, again.weight)


def test_resuming_leaves_the_global_random_states_alone(tmp_path: Path) -> None:
    with pytest.raises(Interrupted):
        run(tmp_path, cut_at=3)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    run(tmp_path)
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])
