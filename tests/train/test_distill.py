"""distill: a class-conditional generator made into a few-step latent consistency model."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import tiny_class_images, tiny_text_pipeline
from torch.utils.data import TensorDataset

from gdaload import DiffusionGenerator
from gdaload.cli import main
from gdaload.generators.hub import ModelNotAvailableError
from gdaload.train.config import DistillConfig
from gdaload.train.distill import distill, distilled_scheduler
from gdaload.train.generator import train_generator


def tiny_data(n: int = 24) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % 3)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "gen"
    return train_generator(
        tiny_data(),
        out,
        widths=(16, 16),
        steps=2,
        batch_size=8,
        seed=0,
        progress=False,
        cpu=True,
        class_names=["a", "b", "c"],
    )


def run(teacher: Path, out: Path, steps: int, **options) -> Path:
    settings = {"batch_size": 8, "progress": False, "cpu": True, **options}
    return distill(teacher, tiny_data(), out, steps=steps, **settings)


def unet_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def test_distils_saves_and_samples_with_lcm_in_few_steps(teacher: Path, tmp_path: Path) -> None:
    out = run(teacher, tmp_path / "lcm", steps=3)
    before, after = unet_weights(teacher), unet_weights(out)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    gen = DiffusionGenerator.from_pretrained(out, device="cpu")
    assert (gen.sampler, gen.steps, gen.class_names) == ("lcm", 4, ["a", "b", "c"])
    assert type(gen.pipeline.scheduler).__name__ == "LCMScheduler"
    assert gen.distillation is not None and gen.distillation.max_steps == 4
    assert gen.config["distillation"]["steps"] == 3
    images = gen.generate([0, 2], [0, 1])
    assert images.shape == (2, 1, 8, 8) and torch.isfinite(images).all()
    again = DiffusionGenerator.from_pretrained(out, steps=1, device="cpu").generate([0, 2], [0, 1])
    assert again.shape == images.shape and not torch.equal(again, images)
    # A local path never ends up in the shipped files.
    for config in out.glob("*/config.json"):
        assert "_name_or_path" not in json.loads(config.read_text())
    assert json.loads((out / "gdaload.json").read_text())["distillation"]["teacher"] == "gen"


def test_the_scheduler_ends_on_the_distilled_schedule() -> None:
    from diffusers import DDPMScheduler

    config = DistillConfig(solver_steps=10, stride=50)
    lcm = distilled_scheduler(DDPMScheduler(beta_schedule="squaredcos_cap_v2").betas, config)
    lcm.set_timesteps(2)
    assert lcm.timesteps.tolist() == [499, 249] and config.top_timestep == 499
    lcm.set_timesteps(10)
    assert lcm.timesteps.tolist() == list(range(499, 0, -50))


def test_resume_continues_exactly_with_the_target_network(teacher: Path, tmp_path: Path) -> None:
    straight = run(teacher, tmp_path / "straight", steps=4, checkpoint_every=2)
    run(teacher, tmp_path / "resumed", steps=2, checkpoint_every=2)
    assert (tmp_path / "resumed" / "checkpoints" / "step-2" / "target.safetensors").is_file()
    resumed = run(teacher, tmp_path / "resumed", steps=4, checkpoint_every=2)
    first, second = unet_weights(straight), unet_weights(resumed)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_the_cli_distils_the_given_teacher(teacher: Path, tmp_path: Path) -> None:
    images = tiny_class_images(tmp_path / "images", classes=("a", "b", "c"), per_class=2)
    out = tmp_path / "cli"
    argv = ["distill", "--teacher", str(teacher), "--data", str(images), "--output", str(out)]
    main([*argv, "--steps", "1", "--batch-size", "4", "--max-steps", "2", "--cpu"])
    gen = DiffusionGenerator.from_pretrained(out, device="cpu")
    assert (gen.sampler, gen.steps) == ("lcm", 2)


@pytest.mark.reliability
def test_a_distilled_model_explains_what_it_cannot_do(teacher: Path, tmp_path: Path) -> None:
    out = run(teacher, tmp_path / "lcm", steps=1, solver_steps=8, stride=100)
    with pytest.raises(ValueError, match="samples with sampler='lcm' only, got 'dpm-solver"):
        DiffusionGenerator.from_pretrained(out, sampler="dpm-solver++", device="cpu")
    gen = DiffusionGenerator.from_pretrained(out, device="cpu")
    with pytest.raises(ValueError, match="samples with sampler='lcm' only"):
        gen.sampler = "ddim"
    with pytest.raises(ValueError, match="guidance_scale must be 1"):
        gen.guidance_scale = 3.0
    with pytest.raises(ValueError, match="8-step schedule: steps must be at most 8, got 9"):
        gen.steps = 9
    with pytest.warns(UserWarning, match="distilled for at most 4 steps"):
        gen.steps = 6
    assert gen.steps == 6 and gen.sampler == "lcm"
    with pytest.raises(ValueError, match="already a distilled model"):
        run(out, tmp_path / "again", steps=1)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"steps": 0}, "steps must be >= 1, got 0"),
        ({"max_steps": 0}, "max_steps must be >= 1, got 0"),
        ({"max_steps": 30}, r"max_steps \(30\) cannot exceed solver_steps \(24\)"),
        ({"stride": 50}, "top timestep 1199"),
    ],
)
def test_bad_settings_are_explained(
    teacher: Path, tmp_path: Path, options: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        run(teacher, tmp_path / "lcm", **{"steps": 1, **options})


@pytest.mark.reliability
def test_only_class_conditional_generators_are_distilled(tmp_path: Path) -> None:
    text = tmp_path / "text"
    tiny_text_pipeline(tmp_path).save_pretrained(text)
    with pytest.raises(ValueError, match="class-conditional generators.*lcm_lora"):
        distill(text, tiny_data(), tmp_path / "out", steps=1, progress=False, cpu=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match="has no model_index.json"):
        distill(tmp_path / "empty", tiny_data(), tmp_path / "out", steps=1, progress=False)


@pytest.mark.reliability
def test_labels_beyond_the_teachers_classes_are_refused(teacher: Path, tmp_path: Path) -> None:
    images = torch.rand(4, 1, 8, 8)
    data = TensorDataset(images, torch.tensor([0, 1, 2, 5]))
    with pytest.raises(ValueError, match=r"teacher has 3 classes.*lie in 0..5"):
        distill(teacher, data, tmp_path / "out", steps=1, progress=False, cpu=True)
