"""The generator contract, checked on every generator of the package.

Each case is a tiny model called the way its consumers call it: class-conditional
(``DiffusionGenerator`` over a class pipeline), text-to-image (prompts), image-conditioned
(``source=`` of a ``DiffusionGenerator``), a ``SelectedGenerator`` and the multi-view
``MultiViewDiffusion``, the mask-conditioned ``MaskDiffusion`` (with masks, and SDEdit
under a mask), and the pair generators ``JointDiffusion`` and ``BankedPairs`` (their images).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from checkers import (
    GeneratorCase,
    assert_config_contract,
    assert_contract_output,
    assert_deterministic,
    assert_pickle_round_trip,
    assert_same_per_sample,
    seeded_sources,
)
from tiny_models import (
    seeded_masks,
    tiny_class_pipeline,
    tiny_joint_diffusion,
    tiny_mask_diffusion,
    tiny_multiview,
    tiny_text_pipeline,
)
from torch.utils.data import TensorDataset

from gdaload import (
    DiffusionGenerator,
    GenerativeAugment,
    GenerativeDataset,
    GenerativeLoader,
    GenerativeTTA,
    Generator,
    GeneratorKindError,
    ImageConditionedGenerator,
    MaskBank,
    MaskConditionedGenerator,
    MultiViewGenerator,
    PairGenerator,
)
from gdaload.bench.assets import DIGITS_LCM
from gdaload.generators.masks import BankedPairs
from gdaload.select import SelectedGenerator, TopK

CASES = [
    "class",
    "text",
    "image-conditioned",
    "selected",
    "multiview",
    "distilled",
    "mask",
    "mask-sdedit",
    "joint",
    "banked",
]


def _plain(gen: Generator, labels: list[int], seeds: list[int]) -> torch.Tensor:
    return gen.generate(labels, seeds)


def _varied(gen: Generator, labels: list[int], seeds: list[int]) -> torch.Tensor:
    assert isinstance(gen, ImageConditionedGenerator)
    source = seeded_sources(seeds, gen.image_shape)
    return gen.generate(labels, seeds, source=source, strength=(0.3, 0.8))


def _novel(gen: Generator, labels: list[int], seeds: list[int]) -> torch.Tensor:
    assert isinstance(gen, MultiViewGenerator)
    return gen.generate(labels, seeds, source=seeded_sources(seeds, gen.image_shape))


def _masked(gen: Generator, labels: list[int], seeds: list[int]) -> torch.Tensor:
    assert isinstance(gen, MaskConditionedGenerator)
    return gen.generate(labels, seeds, mask=seeded_masks(labels, seeds))


def _masked_varied(gen: Generator, labels: list[int], seeds: list[int]) -> torch.Tensor:
    assert isinstance(gen, MaskConditionedGenerator)
    source = seeded_sources(seeds, gen.image_shape)
    mask = seeded_masks(labels, seeds)
    return gen.generate(labels, seeds, mask=mask, source=source, strength=(0.3, 0.8))


def _class_generator() -> DiffusionGenerator:
    return DiffusionGenerator(tiny_class_pipeline(3), sampler="ddim", steps=2, device="cpu")


def _build(name: str, tmp: Path) -> GeneratorCase:
    if name == "class":
        return GeneratorCase(name, _class_generator(), _plain, [0, 1, 2, 1])
    if name == "text":
        text = DiffusionGenerator(
            tiny_text_pipeline(tmp),
            prompts={"cat": ["a cat", "a small cat"], "dog": ["a dog"]},
            steps=2,
            guidance_scale=2.0,
            device="cpu",
        )
        return GeneratorCase(name, text, _plain, [0, 1, 0, 1])
    if name == "image-conditioned":
        return GeneratorCase(name, _class_generator(), _varied, [0, 1, 2, 1])
    if name == "selected":
        with torch.random.fork_rng():
            torch.manual_seed(0)
            scorer = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
        selected = SelectedGenerator(_class_generator(), TopK(scorer, k=1), candidates=2)
        return GeneratorCase(name, selected, _plain, [0, 1, 2, 1])
    if name == "distilled":
        # The shipped few-step model: the lcm sampler injects noise between its steps.
        lcm = DiffusionGenerator.from_pretrained(DIGITS_LCM, steps=2, device="cpu")
        return GeneratorCase(name, lcm, _plain, [0, 7, 3, 7])
    if name == "mask":
        return GeneratorCase(name, tiny_mask_diffusion(), _masked, [0, 1, 2, 1])
    if name == "mask-sdedit":
        return GeneratorCase(name, tiny_mask_diffusion(), _masked_varied, [0, 1, 2, 1])
    if name == "joint":
        return GeneratorCase(name, tiny_joint_diffusion(), _plain, [0, 1, 2, 1])
    if name == "banked":
        bank = MaskBank(seeded_masks([0, 1, 2], [0, 1, 2]), [0, 1, 2], num_mask_classes=4)
        return GeneratorCase(name, BankedPairs(tiny_mask_diffusion(), bank), _plain, [0, 1, 2, 1])
    assert name == "multiview"
    return GeneratorCase(name, tiny_multiview(steps=2), _novel, [0, 0, 0, 0])


@pytest.fixture(scope="module", params=CASES)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> GeneratorCase:
    return _build(request.param, tmp_path_factory.mktemp(request.param))


def test_output_has_the_contract_shape_range_dtype_and_device(case: GeneratorCase) -> None:
    images = case.bound()(case.labels, case.seeds)
    assert_contract_output(images, case.generator, len(case.seeds))
    assert images.dtype == torch.float32


def test_a_sample_does_not_depend_on_its_batch(case: GeneratorCase) -> None:
    assert_same_per_sample(case.bound(), case.labels, case.seeds, atol=case.atol)


def test_same_seeds_give_the_same_images(case: GeneratorCase) -> None:
    assert_deterministic(case.bound(), case.labels, case.seeds)


def test_config_is_json_stable_and_keys_the_hash(case: GeneratorCase) -> None:
    assert_config_contract(case.generator)


def test_pickle_round_trip_generates_the_same(case: GeneratorCase) -> None:
    # DataLoader workers receive generators pickled; every generator here supports it.
    def same(original: Generator, copy: Generator) -> None:
        assert copy.config_hash() == original.config_hash()
        labels, seeds = case.labels[:2], case.seeds[:2]
        assert torch.equal(case.make(copy, labels, seeds), case.make(original, labels, seeds))

    assert_pickle_round_trip(case.generator, same)


@pytest.mark.reliability
def test_bad_requests_fail_clearly(case: GeneratorCase) -> None:
    gen, make = case.generator, case.bound()
    with pytest.raises(ValueError, match="outside the generator's classes"):
        make([gen.num_classes], [0])
    with pytest.raises(ValueError, match="one seed per label"):
        gen.generate(case.labels, case.seeds[:1])
    with pytest.raises(ValueError, match=r"seeds must be integers in \[0, 2\*\*63\)"):
        make([0], [-1])


@pytest.mark.reliability
def test_wrong_kind_of_call_fails_clearly(case: GeneratorCase) -> None:
    gen = case.generator
    channels, height, width = gen.image_shape
    if isinstance(gen, MaskConditionedGenerator):
        with pytest.raises(ValueError, match="mask is missing"):
            gen.generate([0], [0])
        mask = seeded_masks([0], [0])
        with pytest.raises(ValueError, match=rf"v2.Resize\(\({height}, {width}\)\)"):
            gen.generate([0], [0], mask=mask, source=torch.rand(1, channels, 16, 16))
        return
    if isinstance(gen, MultiViewGenerator):
        with pytest.raises(ValueError, match="pass source="):
            gen.generate([0], [0])
        with pytest.raises(ValueError, match="strength must be 1"):
            gen.generate([0], [0], source=torch.rand(1, *gen.image_shape), strength=0.5)
    if isinstance(gen, ImageConditionedGenerator):
        with pytest.raises(ValueError, match=rf"v2.Resize\(\({height}, {width}\)\)"):
            gen.generate([0], [0], source=torch.rand(1, channels, height * 2, width * 2))
        with pytest.raises(ValueError, match="one image per label"):
            gen.generate([0, 0], [0, 1], source=torch.rand(1, *gen.image_shape))
        with pytest.raises(ValueError, match="must be a tensor"):
            gen.generate([0], [0], source=[[0.0]])  # type: ignore[arg-type]
    else:
        # A class-conditional generator takes no source, and consumers that vary real
        # images refuse it at construction.
        with pytest.raises(TypeError, match="source"):
            gen.generate([0], [0], source=torch.rand(1, *gen.image_shape))  # type: ignore[call-arg]
        with pytest.raises(GeneratorKindError, match="image-conditioned generator"):
            GenerativeAugment(gen)
        with pytest.raises(GeneratorKindError, match="GenerativeTTA"):
            GenerativeTTA(torch.nn.Identity(), gen)


@pytest.mark.reliability
def test_class_conditional_consumers_refuse_multiview_generators(case: GeneratorCase) -> None:
    gen = case.generator
    real = TensorDataset(torch.rand(4, *gen.image_shape), torch.zeros(4, dtype=torch.long))
    if isinstance(gen, (PairGenerator, MaskConditionedGenerator)):
        return  # the wrappers do not serve (image, mask) pairs yet
    if isinstance(gen, MultiViewGenerator):
        for consumer in (GenerativeLoader, GenerativeDataset):
            with pytest.raises(GeneratorKindError, match="multi-view generator"):
                consumer(real, gen)
        with pytest.raises(GeneratorKindError, match="needs a source"):
            SelectedGenerator(gen, TopK(lambda x: x.flatten(1)[:, :1], k=1))
    else:
        GenerativeDataset(real, gen)  # accepted: no error at construction


def test_an_empty_request_gives_an_empty_batch(case: GeneratorCase) -> None:
    images = case.bound()([], [])
    assert images.shape == (0, *case.generator.image_shape)
    assert images.dtype.is_floating_point
