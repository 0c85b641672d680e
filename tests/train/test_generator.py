"""train_generator: a class-conditional DDPM, saved as a pipeline; exact resume."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

from gdaload import DiffusionGenerator
from gdaload.train.batches import EpochBatches
from gdaload.train.config import GeneratorTrainingConfig
from gdaload.train.generator import train_generator


def tiny_data(n: int = 24) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % 3)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def train(data, out: Path, steps: int, **kwargs) -> Path:
    return train_generator(
        data,
        out,
        widths=(16, 16),
        steps=steps,
        batch_size=8,
        seed=0,
        progress=False,
        cpu=True,
        **kwargs,
    )


def test_trains_saves_and_loads_with_class_names(tmp_path: Path) -> None:
    out = train(tiny_data(), tmp_path / "gen", steps=3, class_names=["a", "b", "c"])
    gen = DiffusionGenerator.from_pretrained(out, steps=2, device="cpu")
    assert gen.num_classes == 3 and gen.class_names == ["a", "b", "c"]
    images = gen.generate([0, 2], [0, 1])
    assert images.shape == (2, 1, 8, 8) and torch.isfinite(images).all()


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    straight = train(tiny_data(), tmp_path / "straight", steps=4, checkpoint_every=2)
    train(tiny_data(), tmp_path / "resumed", steps=2, checkpoint_every=2)
    step = tmp_path / "resumed" / "checkpoints" / "step-2"
    assert {p.name for p in step.iterdir()} == {
        "model.safetensors",
        "optimizer.bin",
        "random_states_0.pkl",
        "ema.safetensors",
        "training_state.json",
    }
    resumed = train(tiny_data(), tmp_path / "resumed", steps=4, checkpoint_every=2)
    assert_same_weights(straight, resumed)


class Interrupted(Exception):
    pass


@pytest.mark.reliability
def test_a_run_cut_off_mid_epoch_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # 3 batches an epoch: the cut at step 4 resumes from the checkpoint at 3, in epoch 1.
    straight = train(tiny_data(), tmp_path / "straight", steps=6, checkpoint_every=3)
    real = EpochBatches.__call__

    def cut_at_4(self: EpochBatches, step: int):
        if step == 4:
            raise Interrupted
        return real(self, step)

    monkeypatch.setattr(EpochBatches, "__call__", cut_at_4)
    with pytest.raises(Interrupted):
        train(tiny_data(), tmp_path / "cut", steps=6, checkpoint_every=3)
    monkeypatch.undo()
    assert not (tmp_path / "cut" / "unet").exists()
    caplog.set_level(logging.INFO, logger="gdaload.train.checkpoints")
    resumed = train(tiny_data(), tmp_path / "cut", steps=6, checkpoint_every=3)
    assert [m for m in caplog.messages if m.startswith("resumed")] == [
        f"resumed from {tmp_path / 'cut' / 'checkpoints' / 'step-3'} at step 3"
    ]
    assert_same_weights(straight, resumed)


def test_config_and_keyword_options(tmp_path: Path) -> None:
    config = GeneratorTrainingConfig(widths=(16, 16), steps=2, batch_size=8, cpu=True)
    out = train_generator(tiny_data(), tmp_path / "gen", config, progress=False, lr=2e-3)
    meta = json.loads((out / "gdaload.json").read_text())
    assert meta["class_names"] == ["0", "1", "2"]
    assert meta["training"] == {
        "steps": 2,
        "batch_size": 8,
        "lr": 2e-3,
        "seed": 0,
        "label_dropout": 0.1,
        "ema_decay": 0.999,
        "widths": [16, 16],
    }
    with pytest.raises(TypeError, match="unexpected keyword argument 'step'"):
        train_generator(tiny_data(), tmp_path / "x", step=3)


@pytest.mark.reliability
def test_checkpoints_of_other_settings_are_refused(tmp_path: Path) -> None:
    train(tiny_data(), tmp_path / "gen", steps=1)
    with pytest.raises(ValueError, match=r"other settings \(\['lr'\]\)"):
        train(tiny_data(), tmp_path / "gen", steps=2, lr=5e-3)
    train(tiny_data(), tmp_path / "gen", steps=2, lr=5e-3, resume=False)


def test_image_folder_input(tmp_path: Path) -> None:
    for name in ("cat", "dog"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            pixels = np.random.default_rng(i).integers(0, 255, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{i}.png")
    out = train_generator(
        tmp_path / "data",
        tmp_path / "gen",
        image_size=8,
        channels=3,
        widths=(16, 16),
        steps=2,
        batch_size=4,
        progress=False,
        cpu=True,
    )
    gen = DiffusionGenerator.from_pretrained(out, steps=1, device="cpu")
    assert gen.class_names == ["cat", "dog"] and gen.image_shape == (3, 8, 8)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps must be >= 1"),
        ({"label_dropout": 1.0}, "label_dropout"),
        ({"batch_size": 30}, "larger than the dataset"),
    ],
)
def test_bad_settings(tmp_path: Path, kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        train_generator(tiny_data(), tmp_path, **kwargs)


@pytest.mark.reliability
def test_non_image_data_is_explained(tmp_path: Path) -> None:
    data = TensorDataset(torch.zeros(4, 64), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="float tensors \\(C, H, W\\)"):
        train_generator(data, tmp_path, steps=1)


def test_training_leaves_the_global_rng_alone(tmp_path: Path) -> None:
    before = torch.random.get_rng_state()
    train(tiny_data(), tmp_path / "gen", steps=1)
    assert torch.equal(torch.random.get_rng_state(), before)
