"""pretrain_text2image: a Stable Diffusion folder that diffusers, the generator and
``adapt`` load; exact resume in either stage; bad data and settings explained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file
from stage_checkers import cut_in_each_stage_then_finish
from torch.utils.data import TensorDataset

import gdaload.train.text2image as text2image
from gdaload import DiffusionGenerator
from gdaload.cli import main
from gdaload.generators.adapter import check_text_pipeline_folder
from gdaload.seeding import Stream
from gdaload.train import adapt
from gdaload.train.config import Text2ImageConfig
from gdaload.train.text2image import character_tokenizer, pretrain_text2image

TINY = Text2ImageConfig(
    class_names=("zero", "one"),
    max_length=16,
    text_width=16,
    text_layers=1,
    ae_widths=(8,),
    ae_steps=2,
    ae_batch_size=4,
    widths=(8, 16),
    steps=2,
    batch_size=4,
    checkpoint_every=2,
    progress=False,
    cpu=True,
)


@pytest.fixture(scope="module")
def data() -> TensorDataset:
    """Six 8x8 grayscale images of two classes."""
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(6, 1, 8, 8, generator=g), torch.tensor([0, 1] * 3))


def saved_weights(folder: Path) -> dict[str, torch.Tensor]:
    files = {
        "vae": "diffusion_pytorch_model.safetensors",
        "unet": "diffusion_pytorch_model.safetensors",
        "text_encoder": "model.safetensors",
    }
    return {
        f"{part}.{key}": value
        for part, name in files.items()
        for key, value in load_file(folder / part / name).items()
    }


def test_trained_model_is_a_stable_diffusion_folder(tmp_path: Path, data: TensorDataset) -> None:
    out = pretrain_text2image(data, tmp_path / "t2i", TINY)
    assert check_text_pipeline_folder(out) == out
    pipe = StableDiffusionPipeline.from_pretrained(out, safety_checker=None)
    assert pipe.vae_scale_factor == 1 and pipe.tokenizer.model_max_length == 16
    # The VAE's scaling factor gives its latents unit variance, as SD's 0.18215 does.
    assert pipe.vae.config.scaling_factor != 1.0
    meta = json.loads((out / "gdaload.json").read_text())
    assert meta["class_names"] == ["zero", "one"]
    assert meta["training"]["steps"] == 2 and meta["training"]["vae_reconstruction_mse"] >= 0
    gen = DiffusionGenerator.from_pretrained(out, steps=2, device="cpu")
    assert gen.prompts == [["a photo of a zero"], ["a photo of a one"]]
    images = gen.generate([0, 1], [0, 1])
    assert images.shape == (2, 3, 8, 8) and torch.equal(images, gen.generate([0, 1], [0, 1]))
    assert "_name_or_path" not in json.loads((out / "vae" / "config.json").read_text())


def test_adapting_the_trained_model_changes_what_it_makes(
    tmp_path: Path, data: TensorDataset
) -> None:
    base = pretrain_text2image(data, tmp_path / "t2i", TINY)
    rgb = TensorDataset(data.tensors[0].repeat(1, 3, 1, 1), data.tensors[1])
    result = adapt(
        base, rgb, tmp_path / "ti", class_names=["two", "three"], steps=2, lr=0.1, progress=False
    )
    assert result.adapter.tokens == ["<two>", "<three>"]
    unadapted = DiffusionGenerator.from_pretrained(
        base, prompts=[["a photo of a <two>"], ["a photo of a <three>"]], steps=2, device="cpu"
    )
    adapted = DiffusionGenerator.from_pretrained(base, adapter=result.folder, steps=2, device="cpu")
    assert adapted.prompts == unadapted.prompts
    assert not torch.equal(adapted.generate([0, 1], [0, 1]), unadapted.generate([0, 1], [0, 1]))


@pytest.mark.reliability
def test_runs_cut_off_in_either_stage_resume_exactly(
    tmp_path: Path,
    data: TensorDataset,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = Text2ImageConfig.resolve(TINY, {"ae_steps": 3, "steps": 3})
    straight = pretrain_text2image(data, tmp_path / "straight", config)
    cut = tmp_path / "cut"

    def run() -> Path:
        return pretrain_text2image(data, cut, config)

    stages = [(Stream.TEXT2IMAGE_AUTOENCODER, "vae"), (Stream.TEXT2IMAGE_DIFFUSION, "denoiser")]
    resumed = cut_in_each_stage_then_finish(monkeypatch, caplog, text2image, stages, run)
    a, b = saved_weights(straight), saved_weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    with pytest.raises(ValueError, match="other settings"):
        pretrain_text2image(data, tmp_path / "cut", config, steps=4, lr=0.5)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"steps": 0}, "steps must be >= 1"),
        ({"caption_dropout": 1.0}, "caption_dropout"),
        ({"templates": ("a photo",)}, "needs '{name}'"),
        ({"widths": (8,) * 5}, "divisible by 16"),
        ({"text_width": 18}, "multiple of 4"),
        ({"ae_widths": (12,)}, "multiple of 8"),
        ({"class_names": None}, "need names"),
        ({"class_names": ("zero",)}, "labels must lie in 0..0"),
    ],
)
def test_bad_settings_are_explained(
    tmp_path: Path, data: TensorDataset, options: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        pretrain_text2image(data, tmp_path, TINY, **options)


@pytest.mark.reliability
def test_bad_data_is_explained(tmp_path: Path) -> None:
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="one size"):
        mixed = [(torch.rand(1, 8, 8), 0), (torch.rand(1, 16, 16), 1)]
        pretrain_text2image(mixed, tmp_path, TINY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="square"):
        pretrain_text2image(TensorDataset(torch.rand(2, 1, 8, 6), labels), tmp_path, TINY)
    with pytest.raises(ValueError, match=r"\(1 or 3, S, S\)"):
        pretrain_text2image(TensorDataset(torch.rand(2, 2, 8, 8), labels), tmp_path, TINY)
    with pytest.raises(ValueError, match=r"in \[0, 1\], got values in \[255, 255\]"):
        pretrain_text2image(TensorDataset(torch.full((2, 1, 8, 8), 255.0), labels), tmp_path, TINY)
    with pytest.raises(ValueError, match="empty"):
        pretrain_text2image(TensorDataset(torch.rand(0, 1, 8, 8), labels[:0]), tmp_path, TINY)


def test_command_trains_on_the_chosen_digits(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tiny = ["--text-width", "16", "--text-layers", "1", "--ae-widths", "8", "--widths", "8", "16"]
    steps = ["--ae-steps", "1", "--steps", "1", "--cpu"]
    main(["pretrain-text2image", "--output", str(tmp_path / "t"), "--digits", "7,3", *tiny, *steps])
    assert "delete" in capsys.readouterr().out
    meta = json.loads((tmp_path / "t" / "gdaload.json").read_text())
    assert meta["class_names"] == ["seven", "three"]
    with pytest.raises(SystemExit):
        main(["pretrain-text2image", "--output", str(tmp_path / "u"), "--digits", "3-12"])


def test_character_tokenizer_keeps_added_tokens_whole(tmp_path: Path) -> None:
    tokenizer = character_tokenizer(tmp_path, max_length=16)
    tokenizer.add_tokens(["<seven>"])
    assert tokenizer.tokenize("a <seven> seven")[:2] == ["a</w>", "<seven>"]
    assert tokenizer.model_max_length == 16
