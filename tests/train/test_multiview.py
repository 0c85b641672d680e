"""train_multiview: both stages train, save, resume exactly and refuse other settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from stage_checkers import cut_in_each_stage_then_finish

import gdaload.train.multiview as multiview_training
from gdaload.datasets.multiview import MultiViewShapes
from gdaload.generators.multiview import MultiViewDiffusion
from gdaload.seeding import Stream
from gdaload.train.config import MultiViewTrainingConfig
from gdaload.train.multiview import train_multiview

TINY = MultiViewTrainingConfig(
    detail_channels=2,
    ae_widths=(8,),
    ae_steps=2,
    ae_batch_size=8,
    widths=(8, 16),
    steps=2,
    batch_size=4,
    checkpoint_every=2,
    progress=False,
    cpu=True,
)


@pytest.fixture(scope="module")
def data() -> MultiViewShapes:
    return MultiViewShapes(1, size=16)


def saved_weights(folder: Path) -> dict[str, torch.Tensor]:
    return {
        f"{part}.{key}": value
        for part in ("autoencoder", "unet")
        for key, value in load_file(folder / part / "diffusion_pytorch_model.safetensors").items()
    }


def test_tiny_model_trains_resumes_and_generates(tmp_path: Path, data: MultiViewShapes) -> None:
    out = train_multiview(data, tmp_path / "mv", TINY)
    first = MultiViewDiffusion.from_pretrained(out, steps=2)
    assert first.view_names == list(data.view_names) and first.num_classes == 16
    # Starting again with more steps resumes from the checkpoint at step 2.
    train_multiview(data, out, TINY, steps=4)
    kept = sorted(p.name for p in (out / "checkpoints" / "unet").iterdir())
    assert kept == ["step-2", "step-4"]
    gen = MultiViewDiffusion.from_pretrained(out, observed_view="left", steps=2)
    assert gen.weights_fingerprint() != first.weights_fingerprint()
    # The resumed autoencoder is the same, and no local folder is written into its config.
    torch.testing.assert_close(gen.autoencoder.state_dict(), first.autoencoder.state_dict())
    assert "_name_or_path" not in json.loads((out / "autoencoder" / "config.json").read_text())
    training = json.loads((out / "gdaload.json").read_text())["training"]
    assert training["steps"] == 4 and training["ae_steps"] == 2 and training["widths"] == [8, 16]
    objects = torch.stack([data[i][0] for i in range(3)])
    views = gen.generate_views(objects, ["left"], [0, 1, 2])
    assert views.shape == (3, 4, 3, 16, 16) and torch.equal(views[:, 2], objects[:, 2])
    assert gen.generate([0, 5, 9], [0, 1, 2], source=objects[:, 2]).shape == (3, 3, 16, 16)
    with pytest.raises(ValueError, match="other settings"):
        train_multiview(data, out, TINY, steps=6, batch_size=2)


@pytest.mark.reliability
def test_runs_cut_off_in_either_stage_resume_exactly(
    tmp_path: Path,
    data: MultiViewShapes,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = MultiViewTrainingConfig.resolve(TINY, {"ae_steps": 3, "steps": 3})
    straight = train_multiview(data, tmp_path / "straight", config)
    cut = tmp_path / "cut"

    def run() -> Path:
        return train_multiview(data, cut, config)

    stages = [(Stream.MULTIVIEW_AUTOENCODER, "autoencoder"), (Stream.MULTIVIEW_DIFFUSION, "unet")]
    resumed = cut_in_each_stage_then_finish(monkeypatch, caplog, multiview_training, stages, run)
    a, b = saved_weights(straight), saved_weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"steps": 0}, "steps must be >= 1"),
        ({"p_uncond": 1.0}, "p_uncond"),
        ({"ae_widths": (8,) * 5}, "divisible by 32"),
        ({"view_names": ("a", "b")}, "2 view_names for 4 views"),
    ],
)
def test_bad_settings(tmp_path: Path, data: MultiViewShapes, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        train_multiview(data, tmp_path, TINY, **options)


@pytest.mark.reliability
def test_bad_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="V >= 2 views"):
        train_multiview(torch.rand(4, 1, 3, 8, 8), tmp_path, TINY)
    with pytest.raises(ValueError, match="float in"):
        train_multiview(torch.zeros(4, 2, 3, 8, 8, dtype=torch.int32), tmp_path, TINY)
