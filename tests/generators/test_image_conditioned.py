"""Image-conditioned generation: SDEdit strengths and DDIM inversion."""

import pytest
import torch
from checkers import assert_image_batch, assert_same_per_sample
from tiny_models import tiny_class_pipeline, tiny_text_pipeline

from gdaload import SAMPLERS, DiffusionGenerator
from gdaload.generators.base import sample_strengths


@pytest.fixture(scope="module")
def text_generator(tmp_path_factory: pytest.TempPathFactory) -> DiffusionGenerator:
    pipe = tiny_text_pipeline(tmp_path_factory.mktemp("img2img"))
    return DiffusionGenerator(
        pipe,
        prompts="a photo of a {name}",
        class_names=["cat", "dog"],
        steps=4,
        guidance_scale=2.0,
        device="cpu",
    )


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_strength_bounds_for_every_sampler(sampler: str) -> None:
    gen = DiffusionGenerator(
        tiny_class_pipeline(3), sampler=sampler, steps=4, guidance_scale=2.0, device="cpu"
    )
    source = torch.rand(3, 1, 8, 8)
    plain = gen.generate([0, 1, 2], [1, 2, 3])
    torch.testing.assert_close(
        gen.generate([0, 1, 2], [1, 2, 3], source=source, strength=0.0), source
    )
    torch.testing.assert_close(
        gen.generate([0, 1, 2], [1, 2, 3], source=source, strength=1.0), plain
    )
    half = gen.generate([0, 1, 2], [1, 2, 3], source=source, strength=0.5)
    assert_image_batch(half, 3, gen.image_shape)
    assert (half - source).abs().max() > 1e-3 and (half - plain).abs().max() > 1e-3
    # The scheduler is left clean for the next unconditional call.
    torch.testing.assert_close(gen.generate([0, 1, 2], [1, 2, 3]), plain)


def test_strength_range_is_per_sample_and_batch_independent() -> None:
    gen = DiffusionGenerator(tiny_class_pipeline(3), sampler="dpm-solver++", steps=5, device="cpu")
    source = torch.rand(4, 1, 8, 8)

    def make(labels: list[int], seeds: list[int]) -> torch.Tensor:
        rows = [[1, 2, 3, 4].index(s) for s in seeds]
        return gen.generate(labels, seeds, source=source[rows], strength=(0.1, 0.9))

    assert_same_per_sample(make, [0, 1, 2, 0], [1, 2, 3, 4])
    assert len(set(sample_strengths((0.1, 0.9), [1, 2, 3, 4]))) == 4


def test_uint8_sources_are_scaled(class_generator: DiffusionGenerator) -> None:
    source = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    out = class_generator.generate([0, 1], [0, 1], source=source, strength=0.0)
    torch.testing.assert_close(out, source.float() / 255)


def test_text_to_image_variations(text_generator: DiffusionGenerator) -> None:
    source = torch.rand(2, 3, 16, 16)
    plain = text_generator.generate([0, 1], [1, 2])
    torch.testing.assert_close(
        text_generator.generate([0, 1], [1, 2], source=source, strength=1.0), plain
    )
    half = text_generator.generate([0, 1], [1, 2], source=source, strength=0.5)
    assert_image_batch(half, 2, (3, 16, 16))
    torch.testing.assert_close(
        text_generator.generate([1], [2], source=source[1:], strength=0.5),
        half[1:],
        atol=1e-4,
        rtol=0,
    )
    # Strength 0 is the VAE round trip of the source: deterministic, not a new sample.
    zero = text_generator.generate([0, 1], [5, 6], source=source, strength=0.0)
    torch.testing.assert_close(
        zero, text_generator.generate([0, 1], [7, 8], source=source, strength=0.0)
    )


def test_ddim_inversion_round_trip_shapes_and_determinism(
    text_generator: DiffusionGenerator, class_generator: DiffusionGenerator
) -> None:
    for gen, shape in [(class_generator, (1, 8, 8)), (text_generator, (3, 16, 16))]:
        source = torch.rand(2, *shape)
        noise = gen.invert(source, [0, 1])
        torch.testing.assert_close(noise, gen.invert(source, [0, 1]))
        regenerated = gen.generate([1, 0], [0, 0], latents=noise)
        assert_image_batch(regenerated, 2, shape)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"source": torch.rand(2, 1, 8, 8), "strength": 1.5}, "strength must be in \\[0, 1\\]"),
        ({"source": torch.rand(2, 1, 8, 8), "strength": (0.8, 0.2)}, "min <= max"),
        ({"source": torch.rand(2, 1, 16, 16)}, "v2.Resize\\(\\(8, 8\\)\\)"),
        ({"source": torch.rand(2, 3, 8, 8)}, "3 channels .*grayscale.*v2.Grayscale"),
        ({"source": torch.rand(1, 1, 8, 8)}, "one image per label"),
        ({"source": torch.rand(2, 1, 8, 8), "latents": torch.rand(2, 1, 8, 8)}, "not both"),
    ],
)
def test_bad_sources_are_explained(class_generator: DiffusionGenerator, kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        class_generator.generate([0, 1], [0, 1], **kwargs)


@pytest.mark.reliability
def test_rgb_generator_rejects_grayscale(text_generator: DiffusionGenerator) -> None:
    with pytest.raises(ValueError, match="v2.RGB"):
        text_generator.generate([0], [0], source=torch.rand(1, 1, 16, 16))


def test_vae_encodes_each_source_once(text_generator: DiffusionGenerator) -> None:
    source = torch.rand(2, 3, 16, 16)
    text_generator.generate([0, 1], [1, 2], source=source, strength=0.5)
    before = text_generator.latent_cache.stats()
    text_generator.generate([1, 0], [3, 4], source=source.flip(0), strength=0.5)
    after = text_generator.latent_cache.stats()
    assert after["misses"] == before["misses"] and after["hits"] == before["hits"] + 2
