"""Configs of diffusers generators are built once: weights are hashed once per generator,
settings changed through their properties rebuild the config, in-place weight updates are
still seen."""

from __future__ import annotations

import pickle

import pytest
import torch
from tiny_models import tiny_class_pipeline, tiny_multiview

import gdaload.fingerprint
from gdaload import DiffusionGenerator, GenerativeTTA
from gdaload.generators.base import config_digest


@pytest.fixture
def hashings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts full weight hashes (one entry per modules_fingerprint call)."""
    calls: list[int] = []
    real = gdaload.fingerprint.modules_fingerprint

    def counting(modules):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(modules)

    monkeypatch.setattr(gdaload.fingerprint, "modules_fingerprint", counting)
    return calls


def class_gen(**kwargs) -> DiffusionGenerator:  # type: ignore[no-untyped-def]
    settings = dict(sampler="ddim", steps=2, device="cpu") | kwargs
    return DiffusionGenerator(tiny_class_pipeline(3), **settings)


def test_weights_are_hashed_once_per_generator(hashings: list[int]) -> None:
    gen = class_gen()
    key = gen.config_hash()
    for _ in range(5):
        assert gen.config_hash() == key
        assert gen.config["weights"] == gen.weights_fingerprint()
    assert len(hashings) == 1


def test_tta_reads_the_config_per_batch_without_rehashing(hashings: list[int]) -> None:
    gen = tiny_multiview(steps=1)
    tta = GenerativeTTA(torch.nn.Flatten(), gen, views=1, seed=0)
    for _ in range(3):
        tta.generated_views(torch.rand(1, 3, 8, 8))
    assert len(hashings) == 1


@pytest.mark.parametrize(
    ("setting", "value"),
    [("sampler", "euler"), ("steps", 3), ("guidance_scale", 2.0), ("model_id", "other")],
)
def test_a_changed_setting_gives_the_config_of_a_generator_built_with_it(
    hashings: list[int], setting: str, value: object
) -> None:
    gen = class_gen()
    before = gen.config_hash()
    setattr(gen, setting, value)
    assert gen.config_hash() != before
    fresh = class_gen(**({"model_id": value} if setting == "model_id" else {setting: value}))
    fresh.model_id = gen.model_id
    assert gen.config == fresh.config and gen.config_hash() == fresh.config_hash()
    assert len(hashings) == 2  # the weights of gen and of fresh, once each


def test_a_swapped_sampler_samples_like_a_generator_built_with_it() -> None:
    gen = class_gen()
    gen.sampler = "dpm-solver++"
    assert type(gen.scheduler).__name__ == "DPMSolverMultistepScheduler"
    built = class_gen(sampler="dpm-solver++")
    assert torch.equal(gen.generate([0, 2], [3, 4]), built.generate([0, 2], [3, 4]))
    with pytest.raises(ValueError, match="valid samplers"):
        gen.sampler = "heun-fast"
    with pytest.raises(ValueError, match="steps must be >= 1"):
        gen.steps = 0
    with pytest.raises(ValueError, match="guidance_scale"):
        gen.guidance_scale = -1.0
    assert gen.sampler == "dpm-solver++" and gen.config["sampler"] == "dpm-solver++"


def test_observed_view_changes_rebuild_the_multiview_config() -> None:
    gen = tiny_multiview(steps=1)
    front = gen.config_hash()
    gen.observed_view = "back"  # type: ignore[assignment]
    assert gen.observed_view == 1 and gen.config["observed_view"] == 1
    assert gen.config_hash() == tiny_multiview(steps=1, observed_view=1).config_hash() != front
    gen.observed_view = 0
    assert gen.config_hash() == front
    with pytest.raises(ValueError, match="unknown view"):
        gen.observed_view = "top"  # type: ignore[assignment]


def test_in_place_weight_updates_are_seen(hashings: list[int]) -> None:
    gen = class_gen()
    before = gen.config_hash()
    with torch.no_grad():
        next(gen.pipeline.unet.parameters()).add_(1.0)
    after = gen.config_hash()
    assert after != before and len(hashings) == 2
    assert gen.config_hash() == after and len(hashings) == 2
    gen.refresh_config()  # e.g. after replacing a submodule: hash everything again
    assert gen.config_hash() == after and len(hashings) == 3


def test_config_is_a_copy_and_pickles_keep_the_hash(hashings: list[int]) -> None:
    gen = class_gen()
    config = gen.config
    config["steps"] = 99
    assert gen.config["steps"] == 2
    assert gen.config_hash() == config_digest(gen.config)
    copy = pickle.loads(pickle.dumps(gen))
    assert copy.config_hash() == gen.config_hash() and len(hashings) == 1
    with torch.no_grad():
        next(copy.pipeline.unet.parameters()).mul_(2.0)
    assert copy.config_hash() != gen.config_hash()
