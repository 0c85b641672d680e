"""adapt: textual inversion and LoRA on a tiny Stable Diffusion pipeline; exact resume,
the files diffusers reads, and the errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import tiny_class_images
from torch.utils.data import TensorDataset

from gdaload.cli import main
from gdaload.generators.adapter import ADAPTER_META, EMBEDS_FILE, LORA_FILE, Adapter
from gdaload.train.adapt import LOSS_CURVE, SUMMARY_FILE, adapt


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_class_images(tmp_path_factory.mktemp("images"))


def run(base: Path, images, out: Path, steps: int, **options):
    options = {"batch_size": 2, "cpu": True, "progress": False, **options}
    return adapt(base, images, out, steps=steps, **options)


def adapter_files(folder: Path) -> dict[str, torch.Tensor]:
    files = [folder / EMBEDS_FILE] + (
        [folder / LORA_FILE] if (folder / LORA_FILE).is_file() else []
    )
    return {f"{f.name}:{k}": v for f in files for k, v in load_file(f).items()}


def test_textual_inversion_writes_the_adapter_summary_and_curve(
    text_pipeline_dir: Path, images: Path, tmp_path: Path
) -> None:
    result = run(text_pipeline_dir, images, tmp_path / "ti", steps=3)
    adapter = Adapter.read(tmp_path / "ti")
    assert adapter == result.adapter
    assert adapter.tokens == ["<cat>", "<dog>"] and adapter.class_names == ["cat", "dog"]
    assert adapter.prompts() == [["a photo of a <cat>"], ["a photo of a <dog>"]]
    embeds = load_file(tmp_path / "ti" / EMBEDS_FILE)
    assert sorted(embeds) == ["<cat>", "<dog>"] and embeds["<cat>"].shape == (32,)
    assert not (tmp_path / "ti" / LORA_FILE).exists()
    summary = json.loads((tmp_path / "ti" / SUMMARY_FILE).read_text())
    assert summary["steps"] == 3 and len(summary["losses"]) == 3 and summary["seconds"] > 0
    assert (tmp_path / "ti" / LOSS_CURVE).read_bytes()[:4] == b"\x89PNG"
    assert len(result.losses) == 3 and result.resumed_from == 0


def test_tokens_start_from_the_init_word_and_learn(
    text_pipeline_dir: Path, images: Path, tmp_path: Path
) -> None:
    one = run(text_pipeline_dir, images, tmp_path / "one", steps=1, init_word="a")
    more = run(text_pipeline_dir, images, tmp_path / "more", steps=4, init_word="a")
    first = load_file(one.folder / EMBEDS_FILE)
    later = load_file(more.folder / EMBEDS_FILE)
    assert not torch.equal(first["<cat>"], later["<cat>"])
    # Both tokens start from the embedding of "a": after one step they are still close.
    assert torch.allclose(first["<cat>"], first["<dog>"], atol=5e-3)


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("textual-inversion", {}),
        ("lora", {}),
        ("lora", {"prior_images": 1, "prior_sampling_steps": 2}),
    ],
)
def test_resume_is_exact(
    text_pipeline_dir: Path, images: Path, tmp_path: Path, method: str, extra: dict
) -> None:
    straight = run(text_pipeline_dir, images, tmp_path / "straight", 4, method=method, **extra)
    run(
        text_pipeline_dir,
        images,
        tmp_path / "resumed",
        2,
        method=method,
        checkpoint_every=2,
        **extra,
    )
    resumed = run(text_pipeline_dir, images, tmp_path / "resumed", 4, method=method, **extra)
    assert resumed.resumed_from == 2 and resumed.losses == straight.losses
    first, second = adapter_files(straight.folder), adapter_files(resumed.folder)
    assert first.keys() == second.keys() and len(first) > (2 if method == "lora" else 1)
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.reliability
def test_resuming_with_other_settings_is_refused(
    text_pipeline_dir: Path, images: Path, tmp_path: Path
) -> None:
    run(text_pipeline_dir, images, tmp_path / "a", 1)
    with pytest.raises(ValueError, match=r"other settings \(\['lr'\]\).*--no-resume"):
        run(text_pipeline_dir, images, tmp_path / "a", 2, lr=1e-3)
    run(text_pipeline_dir, images, tmp_path / "a", 1, lr=1e-3, resume=False)


def test_lora_saves_unet_layers_through_diffusers(
    text_pipeline_dir: Path, images: Path, tmp_path: Path
) -> None:
    result = run(text_pipeline_dir, images, tmp_path / "lora", 2, method="lora", rank=2)
    layers = load_file(result.folder / LORA_FILE)
    assert layers and all(k.startswith("unet.") for k in layers)
    assert any(".lora.up." in k or "lora_B" in k for k in layers)
    assert result.adapter.prompts() == [["a photo of a <cat> cat"], ["a photo of a <dog> dog"]]
    assert result.adapter.settings["rank"] == 2


def test_a_dataset_and_mixed_image_sizes(text_pipeline_dir: Path, tmp_path: Path) -> None:
    data = TensorDataset(torch.rand(3, 3, 16, 16), torch.tensor([0, 1, 1]))
    result = run(text_pipeline_dir, data, tmp_path / "ds", 1, class_names=["a cat", "b dog"])
    assert result.adapter.tokens == ["<a-cat>", "<b-dog>"]
    with pytest.raises(ValueError, match="need names"):
        run(text_pipeline_dir, data, tmp_path / "nameless", 1)
    with pytest.raises(ValueError, match=r"classes \['c'\] have no image"):
        run(text_pipeline_dir, data, tmp_path / "empty", 1, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="item 0 is 16x16, not 8x8"):
        run(text_pipeline_dir, data, tmp_path / "small", 1, class_names=["a", "b"], resolution=8)
    # An image folder is resized: images of mixed sizes are fine.
    folder = tiny_class_images(tmp_path / "mixed", classes=("cat",), per_class=1, size=16)
    tiny_class_images(folder, classes=("dog",), per_class=1, size=24)
    assert run(text_pipeline_dir, folder, tmp_path / "mixed-out", 1).adapter.steps == 1


@pytest.mark.reliability
def test_not_a_text_to_image_pipeline_is_named(
    images: Path, class_pipeline_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"no model_index.json \(found: cat/, dog/\)"):
        run(images, images, tmp_path / "x", 1)
    with pytest.raises(ValueError, match=r"holds a ClassConditionalPipeline.*lacks tokenizer"):
        run(class_pipeline_dir, images, tmp_path / "x", 1)
    with pytest.raises(ValueError, match="does not exist"):
        run(tmp_path / "missing", images, tmp_path / "x", 1)


@pytest.mark.reliability
def test_empty_class_folder_is_named(text_pipeline_dir: Path, tmp_path: Path) -> None:
    folder = tiny_class_images(tmp_path / "images", classes=("cat",), per_class=1)
    (folder / "dog").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*dog holds no image"):
        run(text_pipeline_dir, folder, tmp_path / "x", 1)


@pytest.mark.reliability
def test_a_token_already_in_the_tokenizer_is_refused(
    text_pipeline_dir: Path, images: Path, tmp_path: Path
) -> None:
    # The tiny tokenizer knows every single character.
    with pytest.raises(ValueError, match=r"tokens \['c'\] already exist in the tokenizer"):
        run(
            text_pipeline_dir,
            images,
            tmp_path / "x",
            1,
            token_format="{name}",
            class_names=["c", "<dog>"],
        )


@pytest.mark.reliability
@pytest.mark.parametrize("rank", [0, -1, 2.5, "4", True])
def test_lora_rank_must_be_a_positive_integer(
    text_pipeline_dir: Path, images: Path, tmp_path: Path, rank
) -> None:
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        run(text_pipeline_dir, images, tmp_path / "x", 1, method="lora", rank=rank)


def test_cli_adapts_an_image_folder(
    text_pipeline_dir: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(
        [
            "adapt",
            "--pipeline",
            str(text_pipeline_dir),
            "--images",
            str(images),
            "--out",
            str(tmp_path / "cli"),
            "--method",
            "lora",
            "--rank",
            "2",
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--cpu",
            "--no-progress",
        ]
    )
    assert (tmp_path / "cli" / ADAPTER_META).is_file() and (tmp_path / "cli" / LORA_FILE).is_file()
    assert "adapter=" in capsys.readouterr().out


def test_lora_on_the_text_encoder_saves_its_layers_or_says_why_not(
    text_pipeline_dir: Path, images: Path, tmp_path: Path
) -> None:
    # transformers adds text-encoder LoRA layers itself and refuses peft versions it
    # does not support; that refusal must reach the user as a clear error.
    try:
        result = run(
            text_pipeline_dir, images, tmp_path / "te", 1, method="lora", train_text_encoder=True
        )
    except ValueError as err:
        assert "LoRA on the text encoder goes through transformers" in str(err)
        assert "adapt without train_text_encoder" in str(err)
        return
    layers = load_file(result.folder / LORA_FILE)
    assert any(k.startswith("text_encoder.") for k in layers)
    assert any(k.startswith("unet.") for k in layers)


def test_train_text_encoder_needs_lora() -> None:
    from gdaload.train.config import AdaptConfig

    with pytest.raises(ValueError, match="needs method='lora'"):
        AdaptConfig(train_text_encoder=True)


@pytest.mark.parametrize("method", ["textual-inversion", "lora"])
def test_mixed_precision_keeps_trained_weights_in_float32(
    text_pipeline_dir: Path,
    images: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
) -> None:
    # What `accelerate config` sets; bf16 autocast also runs on the CPU.
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    result = run(text_pipeline_dir, images, tmp_path / "bf16", 2, method=method)
    assert all(v.dtype == torch.float32 for v in adapter_files(result.folder).values())
    assert all(torch.isfinite(torch.tensor(result.losses)))


def test_prior_preservation_trains_on_images_of_the_base_model(
    text_pipeline_dir: Path, images: Path, tmp_path: Path
) -> None:
    options = {"method": "lora", "prior_sampling_steps": 2}
    plain = run(text_pipeline_dir, images, tmp_path / "plain", 2, **options)
    prior = run(text_pipeline_dir, images, tmp_path / "prior", 2, prior_images=2, **options)
    kept = load_file(tmp_path / "prior" / "checkpoints" / "prior.safetensors")
    assert kept["means"].shape == (4, 4, 8, 8) and kept["labels"].tolist() == [0, 0, 1, 1]
    assert plain.losses != prior.losses
    assert prior.adapter.settings["prior_images"] == 2
    with pytest.raises(ValueError, match="prior preservation .* needs method='lora'"):
        run(text_pipeline_dir, images, tmp_path / "x", 1, prior_images=2)
    with pytest.raises(ValueError, match="prior_prompt must contain"):
        run(
            text_pipeline_dir,
            images,
            tmp_path / "x",
            1,
            prior_images=2,
            prior_prompt="a dog",
            method="lora",
        )
