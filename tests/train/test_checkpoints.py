"""Checkpoints: accelerate's save_state layout, no unpickling of objects, and which
folder a run resumes from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import load as accelerate_load
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file

from gdaload.train.checkpoints import EMA_FILE, STATE_FILE, Checkpoints


def prepared(seed: int = 0) -> tuple[Accelerator, torch.nn.Module, EMAModel, list[str]]:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    accelerator = Accelerator(cpu=True)
    net, _ = accelerator.prepare(net, torch.optim.Adam(net.parameters()))
    ema = EMAModel(net.parameters(), decay=0.5)
    return accelerator, net, ema, [name for name, _ in net.named_parameters()]


def test_a_checkpoint_is_accelerate_state_plus_safetensors_and_json(tmp_path: Path) -> None:
    accelerator, net, ema, names = prepared()
    ema.step(p.detach() + 1 for p in net.parameters())
    folder = Checkpoints(tmp_path, {"lr": 0.1, "widths": (4, 2)}, every=1).save(
        accelerator, 3, ema, names
    )
    assert folder == tmp_path / "step-3"
    assert {p.name for p in folder.iterdir()} == {
        "model.safetensors",  # save_state(safe_serialization=True)
        "optimizer.bin",
        "random_states_0.pkl",
        EMA_FILE,
        STATE_FILE,
    }
    # No registered custom objects: accelerate would load those with weights_only=False.
    # The torch files left hold tensors and numbers, and load with weights_only=True.
    torch.load(folder / "optimizer.bin", weights_only=True)
    accelerate_load(folder / "random_states_0.pkl", weights_only=True)
    averaged = load_file(folder / EMA_FILE)
    assert list(averaged) == sorted(names)
    for name, shadow in zip(names, ema.shadow_params, strict=True):
        assert torch.equal(averaged[name], shadow)
    state = json.loads((folder / STATE_FILE).read_text())
    assert state["step"] == 3 and state["settings"] == {"lr": 0.1, "widths": [4, 2]}
    assert state["ema"]["optimization_step"] == 1 and state["ema"]["decay"] == 0.5


def test_load_restores_model_and_average(tmp_path: Path) -> None:
    accelerator, net, ema, names = prepared()
    ema.step(p.detach() + 1 for p in net.parameters())
    checkpoints = Checkpoints(tmp_path, {}, every=1)
    checkpoints.save(accelerator, 5, ema, names)
    accelerator2, net2, ema2, _ = prepared(seed=1)
    assert not torch.equal(net2[0].weight, net[0].weight)
    latest = checkpoints.latest()
    assert latest is not None
    assert checkpoints.load(accelerator2, latest, ema2, names) == 5
    assert torch.equal(net2[0].weight, net[0].weight)
    assert ema2.optimization_step == 1
    for a, b in zip(ema.shadow_params, ema2.shadow_params, strict=True):
        assert torch.equal(a, b)


def test_newest_complete_checkpoints_are_kept_and_resumed_from(tmp_path: Path) -> None:
    accelerator, *_ = prepared()
    checkpoints = Checkpoints(tmp_path, {}, every=2)
    assert checkpoints.latest() is None
    assert [checkpoints.due(s, steps=5) for s in range(1, 6)] == [False, True, False, True, True]
    for step in (2, 4, 5):
        checkpoints.save(accelerator, step)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-4", "step-5"]
    # A folder cut off before its state file was written is never resumed from.
    (tmp_path / "step-5" / STATE_FILE).unlink()
    assert checkpoints.latest() == tmp_path / "step-4"
    # Saving again clears leftovers: a folder of an older layout, a stray file.
    (tmp_path / "step-6").mkdir()
    (tmp_path / "step-6" / "custom_checkpoint_0.pkl").write_bytes(b"not ours")
    checkpoints.save(accelerator, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-4", "step-6"]
    assert "custom_checkpoint_0.pkl" not in {p.name for p in (tmp_path / "step-6").iterdir()}
    checkpoints.load(accelerator, tmp_path / "step-6")


@pytest.mark.reliability
def test_other_settings_are_refused(tmp_path: Path) -> None:
    accelerator, *_ = prepared()
    Checkpoints(tmp_path, {"lr": 0.1, "seed": 0}, every=1).save(accelerator, 1)
    assert Checkpoints(tmp_path, {"seed": 0, "lr": 0.1}, every=9).latest() is not None
    with pytest.raises(ValueError, match=r"other settings \(\['lr', 'new'\]\).*--no-resume"):
        Checkpoints(tmp_path, {"lr": 0.2, "seed": 0, "new": 1}, every=1).latest()


@pytest.mark.reliability
def test_an_average_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    accelerator, net, ema, names = prepared()
    checkpoints = Checkpoints(tmp_path, {}, every=1)
    checkpoints.save(accelerator, 1)  # without an average
    with pytest.raises(ValueError, match="no moving average"):
        checkpoints.load(accelerator, tmp_path / "step-1", ema, names)
    checkpoints.save(accelerator, 2, ema, names)
    with pytest.raises(ValueError, match="does not fit"):
        checkpoints.load(accelerator, tmp_path / "step-2", ema, names[:-1])
