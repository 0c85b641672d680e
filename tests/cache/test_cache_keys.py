"""Cache keys of real DiffusionGenerators: any generation setting gives another key, so a
store never serves one config's samples for another; prompts are encoded once."""

from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler
from tiny_models import tiny_text_pipeline, tiny_unet
from torch.utils.data import DataLoader, TensorDataset

from gdaload import ClassConditionalPipeline, DiffusionGenerator, GenerativeLoader
from gdaload.cache import SampleStore


def class_gen(weights_seed: int = 0, **kwargs) -> DiffusionGenerator:
    settings = dict(sampler="ddim", steps=2, guidance_scale=1.0, device="cpu") | kwargs
    # A fresh pipeline each time: a dtype cast would otherwise change a shared one.
    pipe = ClassConditionalPipeline(tiny_unet(3, seed=weights_seed), DDPMScheduler())
    return DiffusionGenerator(pipe, **settings)


@pytest.fixture(scope="module")
def text_pipe(tmp_path_factory):
    return tiny_text_pipeline(tmp_path_factory.mktemp("text"))


def test_every_generation_setting_changes_the_key(text_pipe) -> None:
    base = class_gen()
    assert class_gen().config_hash() == base.config_hash()  # stable for equal settings
    variants = {
        "weights": class_gen(weights_seed=1),
        "sampler": class_gen(sampler="euler"),
        "steps": class_gen(steps=3),
        "guidance": class_gen(guidance_scale=2.0),
        "dtype": class_gen(dtype=torch.bfloat16),
    }
    keys = {name: gen.config_hash() for name, gen in variants.items()}
    assert base.config_hash() not in keys.values()
    assert len(set(keys.values())) == len(keys)
    prompts = [
        DiffusionGenerator(
            text_pipe, prompts=p, class_names=["cat", "dog"], steps=2, device="cpu"
        ).config_hash()
        for p in ("a photo of a {name}", "a drawing of a {name}")
    ]
    negative = DiffusionGenerator(
        text_pipe,
        prompts="a photo of a {name}",
        class_names=["cat", "dog"],
        steps=2,
        device="cpu",
        negative_prompt="blurry",
    ).config_hash()
    assert len({*prompts, negative}) == 3


def test_store_of_one_setting_serves_nothing_to_another(tmp_path: Path) -> None:
    base, other = class_gen(), class_gen(steps=3)
    SampleStore.for_generator(tmp_path, base).put([0, 1], [5, 6], base.generate([0, 1], [5, 6]))
    assert SampleStore.for_generator(tmp_path, other).get([0, 1], [5, 6]) == [None, None]
    hit = SampleStore.for_generator(tmp_path, class_gen()).get([0, 1], [5, 6])
    torch.testing.assert_close(torch.stack(hit), base.generate([0, 1], [5, 6]), atol=1e-5, rtol=0)


def test_prompts_are_encoded_once_per_prompt(text_pipe) -> None:
    gen = DiffusionGenerator(
        text_pipe, prompts="a photo of a {name}", class_names=["cat", "dog"], steps=2, device="cpu"
    )
    calls = []
    encode = gen.pipeline.encode_prompt

    def counting(prompt, *args, **kwargs):
        if prompt is not None:  # the pipeline itself calls it again with prompt_embeds only
            calls.append(prompt)
        return encode(prompt, *args, **kwargs)

    gen.pipeline.encode_prompt = counting
    size = gen.image_shape[-1]
    real = TensorDataset(torch.zeros(8, 3, size, size), torch.tensor([0, 1] * 4))
    with GenerativeLoader(
        DataLoader(real, batch_size=4),
        gen,
        ratio=1.0,
        engine="thread",
        pool_size=8,
        generation_batch_size=4,
    ) as loader:
        for _ in range(2):
            batches = list(loader)
    assert sum(len(y) for _, y in batches) == 16
    assert sorted(calls) == ["a photo of a cat", "a photo of a dog"]
