import json
import time
from pathlib import Path

import pytest
import torch
from checkers import assert_image_batch, assert_pickle_round_trip, assert_same_per_sample
from diffusers import DDPMScheduler
from tiny_models import tiny_class_pipeline, tiny_unet

from gdaload import SAMPLERS, DiffusionGenerator, ModelNotAvailableError


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_generates_contract_output_per_sample(
    class_pipeline_dir: Path, sampler: str
) -> None:
    gen = DiffusionGenerator.from_pretrained(
        class_pipeline_dir, sampler=sampler, steps=3, guidance_scale=2.0, device="cpu"
    )
    assert type(gen.pipeline.scheduler).__name__ == type(SAMPLERS[sampler][0]()).__name__
    images = gen.generate(torch.tensor([0, 1, 2]), [5, 6, 7])
    assert_image_batch(images, 3, gen.image_shape)
    assert_same_per_sample(gen.generate, [0, 1, 2, 2], [5, 6, 7, 8])
    torch.testing.assert_close(gen.generate([1], [6]), images[1:2], atol=1e-4, rtol=0)


def test_same_seed_same_sample_different_seed_different(
    class_generator: DiffusionGenerator,
) -> None:
    a = class_generator.generate([0, 0], [1, 1])
    b = class_generator.generate([0], [2])
    torch.testing.assert_close(a[0], a[1])
    assert (a[0] - b[0]).abs().max() > 1e-3


@pytest.mark.reliability
def test_unknown_sampler_lists_valid_ones(class_pipeline_dir: Path) -> None:
    with pytest.raises(
        ValueError, match="valid samplers are \\['ddim', 'ddpm', 'dpm-solver\\+\\+'"
    ):
        DiffusionGenerator.from_pretrained(class_pipeline_dir, sampler="heun-fast")


@pytest.mark.reliability
def test_labels_outside_classes_raise(class_generator: DiffusionGenerator) -> None:
    with pytest.raises(ValueError, match="outside the generator's classes 0..2"):
        class_generator.generate([3], [0])


def test_from_pretrained_round_trip_class_conditional(tmp_path: Path) -> None:
    pipe = tiny_class_pipeline(num_classes=4, channels=3)
    built = DiffusionGenerator(pipe, sampler="ddim", steps=2, device="cpu")
    pipe.save_pretrained(tmp_path)
    loaded = DiffusionGenerator.from_pretrained(tmp_path, sampler="ddim", steps=2, device="cpu")
    assert loaded.mode == "class" and loaded.num_classes == 4 and loaded.image_shape == (3, 8, 8)
    torch.testing.assert_close(built.generate([0, 3], [1, 2]), loaded.generate([0, 3], [1, 2]))
    assert built.weights_fingerprint() == loaded.weights_fingerprint()


def test_from_components_and_config_hash_tracks_settings() -> None:
    gen = DiffusionGenerator.from_components(
        tiny_unet(3),
        DDPMScheduler(),
        sampler="ddim",
        steps=2,
        device="cpu",
        class_names=["a", "b", "c"],
    )
    assert gen.class_names == ["a", "b", "c"]
    base = gen.config_hash()
    other = DiffusionGenerator.from_components(
        tiny_unet(3), DDPMScheduler(), sampler="unipc", steps=2, device="cpu"
    )
    assert other.config_hash() != base
    retrained = DiffusionGenerator.from_components(
        tiny_unet(3, seed=1), DDPMScheduler(), sampler="ddim", steps=2, device="cpu"
    )
    assert retrained.config_hash() != base


def test_text_to_image_round_trip_with_prompt_forms(
    text_pipeline_dir: Path, tmp_path: Path
) -> None:
    template = DiffusionGenerator.from_pretrained(
        text_pipeline_dir,
        prompts="a photo of a {name}",
        class_names=["cat", "dog"],
        sampler="dpm-solver++",
        steps=2,
        guidance_scale=3.0,
        device="cpu",
    )
    assert template.mode == "text" and template.prompts == [
        ["a photo of a cat"],
        ["a photo of a dog"],
    ]
    images = template.generate([0, 1, 1], [1, 2, 3])
    assert_image_batch(images, 3, template.image_shape)
    assert_same_per_sample(template.generate, [0, 1, 1], [1, 2, 3])
    assert len(template._prompt_encoder.cache) == 2  # each prompt encoded once

    prompt_file = tmp_path / "prompts.json"
    prompt_file.write_text(json.dumps({"cat": ["a cat", "a small cat"], "dog": ["a dog"]}))
    from_file = DiffusionGenerator.from_pretrained(
        text_pipeline_dir, prompts=prompt_file, steps=2, device="cpu"
    )
    as_lists = DiffusionGenerator.from_pretrained(
        text_pipeline_dir, prompts=[["a cat", "a small cat"], ["a dog"]], steps=2, device="cpu"
    )
    assert from_file.num_classes == 2 and from_file.prompts == as_lists.prompts
    torch.testing.assert_close(
        from_file.generate([0, 1], [4, 5]), as_lists.generate([0, 1], [4, 5])
    )
    assert from_file.config_hash() != template.config_hash()


@pytest.mark.reliability
def test_text_to_image_needs_prompts(text_pipeline_dir: Path) -> None:
    with pytest.raises(ValueError, match="needs prompts="):
        DiffusionGenerator.from_pretrained(text_pipeline_dir, device="cpu")
    with pytest.raises(ValueError, match="no entry for classes \\['bird'\\]"):
        DiffusionGenerator.from_pretrained(
            text_pipeline_dir, prompts={"cat": ["a cat"]}, class_names=["cat", "bird"], device="cpu"
        )


@pytest.mark.reliability
def test_missing_weights_offline_fail_fast_with_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(
        ModelNotAvailableError, match="pass the folder: DiffusionGenerator.from_pretrained"
    ):
        DiffusionGenerator.from_pretrained("gdaload-tests/no-such-model")
    assert time.perf_counter() - start < 10


@pytest.mark.reliability
def test_folder_without_model_index_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="no model_index.json"):
        DiffusionGenerator.from_pretrained(tmp_path)
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        DiffusionGenerator.from_pretrained(tmp_path / "missing")


def test_generator_pickles_for_worker_processes(class_generator: DiffusionGenerator) -> None:
    copy = assert_pickle_round_trip(class_generator)
    torch.testing.assert_close(copy.generate([1], [3]), class_generator.generate([1], [3]))


@pytest.mark.reliability
def test_bad_settings_raise(class_pipeline_dir: Path) -> None:
    for kwargs, match in [
        ({"steps": 0}, "steps"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"max_batch_size": 0}, "max_batch_size"),
    ]:
        with pytest.raises(ValueError, match=match):
            DiffusionGenerator.from_pretrained(class_pipeline_dir, device="cpu", **kwargs)


def test_large_requests_are_chunked(class_pipeline_dir: Path) -> None:
    gen = DiffusionGenerator.from_pretrained(
        class_pipeline_dir, steps=1, max_batch_size=2, device="cpu"
    )
    full = gen.generate([0, 1, 2, 0, 1], [1, 2, 3, 4, 5])
    assert full.shape[0] == 5
    torch.testing.assert_close(full[4:], gen.generate([1], [5]), atol=1e-4, rtol=0)


def test_dit_with_vae_latent_class_conditional(tmp_path: Path) -> None:
    from tiny_models import tiny_dit, tiny_vae

    gen = DiffusionGenerator.from_components(
        tiny_dit(3),
        DDPMScheduler(),
        vae=tiny_vae(3),
        sampler="dpm-solver++",
        steps=2,
        guidance_scale=2.0,
        device="cpu",
    )
    assert gen.num_classes == 3 and gen.image_shape == (3, 8, 8)
    images = gen.generate([0, 1, 2], [1, 2, 3])
    assert_image_batch(images, 3, (3, 8, 8))
    assert_same_per_sample(gen.generate, [0, 1, 2], [1, 2, 3])
    gen.pipeline.save_pretrained(tmp_path)
    loaded = DiffusionGenerator.from_pretrained(
        tmp_path, sampler="dpm-solver++", steps=2, guidance_scale=2.0, device="cpu"
    )
    torch.testing.assert_close(loaded.generate([0, 1, 2], [1, 2, 3]), images)


def test_unet_with_vae_and_image_conditioning() -> None:
    from tiny_models import tiny_vae

    unet = tiny_unet(3, channels=4, size=4)
    gen = DiffusionGenerator.from_components(
        unet, DDPMScheduler(), vae=tiny_vae(1), steps=2, device="cpu"
    )
    assert gen.image_shape == (1, 8, 8)
    source = torch.rand(2, 1, 8, 8)
    out = gen.generate([0, 1], [0, 1], source=source, strength=0.5)
    assert_image_batch(out, 2, (1, 8, 8))
    assert gen.latent_cache is not None and gen.latent_cache.stats()["latents"] == 2


def test_dtype_is_applied_and_outputs_stay_float32(class_pipeline_dir: Path) -> None:
    gen = DiffusionGenerator.from_pretrained(
        class_pipeline_dir, steps=2, device="cpu", dtype=torch.bfloat16
    )
    assert gen.pipeline.unet.dtype == torch.bfloat16 and gen.config["dtype"] == "torch.bfloat16"
    out = gen.generate([0, 1], [0, 1])
    assert out.dtype == torch.float32
    assert_image_batch(out, 2, (1, 8, 8))
