"""Generating from an adapted model: DiffusionGenerator.from_pretrained(base, adapter=...)
loads tokens and LoRA layers through diffusers, in every mode, keyed by the adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file
from tiny_models import tiny_class_images
from torch.utils.data import DataLoader, TensorDataset

from gdaload import DiffusionGenerator, GenerativeAugment, GenerativeLoader
from gdaload.generators.adapter import (
    EMBEDS_FILE,
    Adapter,
    AdapterMismatchError,
    base_fingerprint,
)
from gdaload.generators.hub import load_pipeline
from gdaload.select import SelectedGenerator, TopK
from gdaload.train.adapt import adapt


@pytest.fixture(scope="module")
def adapters(text_pipeline_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("adapters")
    images = tiny_class_images(tmp / "images")
    common = {"batch_size": 2, "cpu": True, "progress": False, "lr": 5e-2}
    return {
        name: adapt(text_pipeline_dir, images, tmp / name, steps=n, method=method, **common).folder
        for name, method, n in [
            ("ti", "textual-inversion", 3),
            ("ti-1", "textual-inversion", 1),
            ("lora", "lora", 3),
        ]
    }


def generator(base: Path, adapter: Path | None = None, **kwargs) -> DiffusionGenerator:
    if adapter is None:
        kwargs.setdefault("prompts", "a photo of a {name}")
        kwargs.setdefault("class_names", ["cat", "dog"])
    return DiffusionGenerator.from_pretrained(
        base, adapter=adapter, sampler="ddim", steps=2, device="cpu", **kwargs
    )


def test_tokens_load_through_diffusers_into_the_prompts(
    text_pipeline_dir: Path, adapters: dict[str, Path]
) -> None:
    gen = generator(text_pipeline_dir, adapters["ti"])
    assert gen.prompts == [["a photo of a <cat>"], ["a photo of a <dog>"]]
    assert gen.class_names == ["cat", "dog"]
    tokenizer, encoder = gen.pipeline.tokenizer, gen.pipeline.text_encoder
    rows = encoder.get_input_embeddings().weight
    learned = load_file(adapters["ti"] / EMBEDS_FILE)
    for token in ("<cat>", "<dog>"):
        assert torch.equal(rows[tokenizer.convert_tokens_to_ids(token)], learned[token])
    # Only the new rows were trained: every other row is the base model's.
    base_rows = generator(text_pipeline_dir).pipeline.text_encoder.get_input_embeddings().weight
    assert torch.equal(rows[: len(base_rows)], base_rows)
    custom = generator(text_pipeline_dir, adapters["ti"], prompts="{token}, a {name}")
    assert custom.prompts == [["<cat>, a cat"], ["<dog>, a dog"]]


def test_adaptation_steps_change_the_images(
    text_pipeline_dir: Path, adapters: dict[str, Path]
) -> None:
    after_three = generator(text_pipeline_dir, adapters["ti"]).generate([0, 1], [5, 6])
    again = generator(text_pipeline_dir, adapters["ti"]).generate([0, 1], [5, 6])
    after_one = generator(text_pipeline_dir, adapters["ti-1"]).generate([0, 1], [5, 6])
    assert torch.equal(after_three, again)
    assert (after_three - after_one).abs().max() > 1e-4


def test_lora_layers_load_through_diffusers_and_change_the_images(
    text_pipeline_dir: Path, adapters: dict[str, Path]
) -> None:
    gen = generator(text_pipeline_dir, adapters["lora"])
    assert gen.prompts == [["a photo of a <cat> cat"], ["a photo of a <dog> dog"]]
    loaded = get_peft_model_state_dict(gen.pipeline.unet, adapter_name="default_0")
    assert loaded and any(v.abs().max() > 0 for k, v in loaded.items() if "lora_B" in k)
    # The same tokens without the LoRA layers give other images.
    adapter = Adapter.read(adapters["lora"])
    pipe = load_pipeline(text_pipeline_dir)
    embeds = load_file(adapters["lora"] / EMBEDS_FILE)
    pipe.load_textual_inversion([{t: embeds[t]} for t in adapter.tokens], token=adapter.tokens)
    tokens_only = DiffusionGenerator(
        pipe, sampler="ddim", steps=2, device="cpu", prompts=adapter.prompts()
    )
    assert (gen.generate([0, 1], [1, 2]) - tokens_only.generate([0, 1], [1, 2])).abs().max() > 1e-4


def test_the_config_hash_changes_with_the_adapter(
    text_pipeline_dir: Path, adapters: dict[str, Path]
) -> None:
    plain = generator(text_pipeline_dir)
    assert "adapter" not in plain.config
    hashes = {plain.config_hash()}
    for name in ("ti", "ti-1", "lora"):
        gen = generator(text_pipeline_dir, adapters[name])
        assert gen.config["adapter"] == Adapter.read(adapters[name]).fingerprint()
        hashes.add(gen.config_hash())
    assert len(hashes) == 4
    assert generator(text_pipeline_dir, adapters["ti"]).config_hash() in hashes


def test_every_mode_runs_on_an_adapted_model(
    text_pipeline_dir: Path, adapters: dict[str, Path], tmp_path: Path
) -> None:
    gen = generator(text_pipeline_dir, adapters["lora"])
    source = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    varied = gen.generate([0, 1], [3, 4], source=source, strength=0.5)
    assert varied.shape == (2, 3, 16, 16) and torch.isfinite(varied).all()
    noise = gen.invert(source, [0, 1])
    assert gen.generate([0, 1], [0, 0], latents=noise).shape == (2, 3, 16, 16)
    image, label = GenerativeAugment(gen, p=1.0, strength=0.5)(source[0], 1)
    assert image.shape == (3, 16, 16) and label == 1
    selected = SelectedGenerator(gen, TopK(lambda x: x.mean((1, 2, 3)), k=1), candidates=2)
    assert selected.generate([0, 1], [7, 8]).shape == (2, 3, 16, 16)
    real = DataLoader(TensorDataset(torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 0, 1])), 2)
    for adapted in (gen, generator(text_pipeline_dir, adapters["ti"])):
        batches = list(GenerativeLoader(real, adapted, ratio=0.5, seed=0, store=tmp_path))
        assert batches[0][0].shape == (3, 3, 16, 16)
    # One store folder per adapter: neither serves the other's samples.
    folders = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(folders) == 2


@pytest.mark.reliability
def test_an_adapter_on_another_base_model_is_refused(
    text_pipeline_dir: Path, adapters: dict[str, Path], tmp_path: Path
) -> None:
    pipe = load_pipeline(text_pipeline_dir)
    with torch.no_grad():
        next(pipe.unet.parameters()).add_(1e-3)
    pipe.save_pretrained(tmp_path / "other")
    assert base_fingerprint(tmp_path / "other") != base_fingerprint(text_pipeline_dir)
    with pytest.raises(AdapterMismatchError, match="trained on another base model"):
        generator(tmp_path / "other", adapters["ti"])


def test_bad_adapter_folders_and_saving(
    text_pipeline_dir: Path, adapters: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="not an adapter folder"):
        generator(text_pipeline_dir, tmp_path)
    with pytest.raises(ValueError, match=r"must contain '\{token\}'"):
        Adapter.read(adapters["ti"]).prompts("a photo of a {name}")
    gen = generator(text_pipeline_dir, adapters["ti"])
    with pytest.raises(ValueError, match="base model plus its adapter folder"):
        gen.save_pretrained(tmp_path / "saved")
