"""One persistence scheme: diffusers pipeline folders plus gdaload.json, for every generator;
multi-view folders of the layout before it still load."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import tiny_class_pipeline, tiny_multiview, tiny_text_pipeline

from gdaload import DiffusionGenerator, MultiViewDiffusion
from gdaload.generators.metadata import GDALOAD_META, read_metadata, write_metadata
from gdaload.generators.multiview.pipeline import LEGACY_META

ASSETS = resources.files("gdaload") / "assets"


def test_shipped_multiview_generator_is_a_diffusers_pipeline_folder() -> None:
    folder = Path(str(ASSETS / "multiview-generator"))
    assert (folder / "model_index.json").is_file() and not (folder / LEGACY_META).exists()
    gen = MultiViewDiffusion.from_pretrained(folder, steps=1, device="cpu")
    assert gen.view_names == ["front", "back", "left", "right"] and gen.observed_view == 0
    assert gen.num_classes == 16 and gen.image_shape == (3, 32, 32)
    assert read_metadata(folder)["training"]["steps"] == 30000
    for name, module in [("unet", gen.unet), ("autoencoder", gen.autoencoder)]:
        saved = load_file(folder / name / "diffusion_pytorch_model.safetensors")
        assert all(torch.equal(saved[k], v) for k, v in module.state_dict().items())
    source = torch.rand(1, 3, 32, 32)
    assert torch.equal(gen.novel_views(source, [0]), gen.novel_views(source, [0]))


def test_multiview_folders_of_the_old_layout_still_load(tmp_path: Path) -> None:
    gen = tiny_multiview(steps=2)
    old = tmp_path / "old"
    gen.unet.save_pretrained(old / "unet")
    gen.autoencoder.save_pretrained(old / "autoencoder")
    gen.train_scheduler.save_pretrained(old / "scheduler")  # type: ignore[attr-defined]
    (old / LEGACY_META).write_text(json.dumps({"view_names": gen.view_names, "class_names": None}))
    loaded = MultiViewDiffusion.from_pretrained(old, sampler="ddim", steps=2, device="cpu")
    assert loaded.view_names == gen.view_names and loaded.class_names is None
    assert loaded.weights_fingerprint() == gen.weights_fingerprint()
    source = torch.rand(2, 3, 8, 8)
    assert torch.equal(loaded.novel_views(source, [1, 2]), gen.novel_views(source, [1, 2]))
    # Saving again writes the diffusers layout.
    loaded.save_pretrained(tmp_path / "new")
    assert json.loads((tmp_path / "new" / "model_index.json").read_text())["autoencoder"][1] == (
        "ViewAutoencoder"
    )
    again = MultiViewDiffusion.from_pretrained(tmp_path / "new", sampler="ddim", steps=2)
    assert again.config == {**loaded.config, "model": str(tmp_path / "new")}


def test_saved_multiview_generator_keeps_its_observed_view(tmp_path: Path) -> None:
    tiny_multiview(observed_view="left").save_pretrained(tmp_path)
    assert read_metadata(tmp_path)["observed_view"] == "left"
    assert MultiViewDiffusion.from_pretrained(tmp_path).observed_view == 2
    assert MultiViewDiffusion.from_pretrained(tmp_path, observed_view=0).observed_view == 0


def test_class_generator_saves_its_training_scheduler_and_class_names(tmp_path: Path) -> None:
    # DDIM: diffusers builds other samplers from an in-memory scheduler's config without
    # the values it holds by default (e.g. timestep_spacing), from a saved one with them.
    gen = DiffusionGenerator(
        tiny_class_pipeline(3), sampler="ddim", steps=2, class_names=["a", "b", "c"], device="cpu"
    )
    gen.save_pretrained(tmp_path, note="test")
    scheduler = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "DDPMScheduler"
    assert type(gen.scheduler).__name__ == "DDIMScheduler"  # restored after saving
    assert read_metadata(tmp_path) == {"class_names": ["a", "b", "c"], "note": "test"}
    loaded = DiffusionGenerator.from_pretrained(tmp_path, sampler="ddim", steps=2, device="cpu")
    assert loaded.class_names == ["a", "b", "c"] and loaded.weights_fingerprint() == (
        gen.weights_fingerprint()
    )
    assert torch.equal(loaded.generate([0, 2], [5, 6]), gen.generate([0, 2], [5, 6]))


def test_text_generator_saves_its_prompts(tmp_path: Path) -> None:
    gen = DiffusionGenerator(
        tiny_text_pipeline(tmp_path / "build"),
        prompts="a photo of a {name}",
        class_names=["cat", "dog"],
        negative_prompt="blurry",
        sampler="ddim",
        steps=2,
        device="cpu",
    )
    gen.save_pretrained(tmp_path / "saved")
    loaded = DiffusionGenerator.from_pretrained(
        tmp_path / "saved", sampler="ddim", steps=2, device="cpu"
    )
    assert loaded.prompts == gen.prompts and loaded.class_names == ["cat", "dog"]
    assert loaded.negative_prompt == "blurry"
    assert torch.equal(loaded.generate([0, 1], [1, 2]), gen.generate([0, 1], [1, 2]))


@pytest.mark.reliability
def test_wrong_folders_are_explained(tmp_path: Path) -> None:
    tiny_class_pipeline(3).save_pretrained(tmp_path / "class")
    with pytest.raises(ValueError, match="DiffusionGenerator.from_pretrained"):
        MultiViewDiffusion.from_pretrained(tmp_path / "class")
    with pytest.raises(FileNotFoundError, match="train-multiview"):
        MultiViewDiffusion.from_pretrained(tmp_path / "nothing")
    (tmp_path / GDALOAD_META).write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_metadata(tmp_path)
    write_metadata(tmp_path / "meta", {"class_names": ["x"]})
    assert read_metadata(tmp_path / "meta") == {"class_names": ["x"]}
    assert read_metadata(tmp_path / "nothing") == {}


def test_loading_shows_no_diffusers_bar_and_keeps_its_setting(class_pipeline_dir, capsys) -> None:
    from diffusers.utils import logging as diffusers_logging

    from gdaload import DiffusionGenerator

    assert diffusers_logging.is_progress_bar_enabled()
    DiffusionGenerator.from_pretrained(class_pipeline_dir, steps=1, device="cpu")
    assert "Loading pipeline components" not in capsys.readouterr().err
    assert diffusers_logging.is_progress_bar_enabled()  # the user's setting is restored
