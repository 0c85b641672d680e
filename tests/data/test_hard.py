import json

import numpy as np
import pytest
import torch
from checkers import SeedImageGenerator, SourceBlendGenerator, served
from torch.utils.data import DataLoader, TensorDataset

from gdaload import DiffusionGenerator, GenerativeDataset, GenerativeLoader
from gdaload.data.hard import HardExamples, hardest, variation_sources

# Class 2 is the minority: 2 real samples against 10.
LABELS = [0] * 10 + [1] * 10 + [2] * 2
#: Real image i is the constant (i + 1) / 32, so a variation shows its source.
IMAGES = (torch.arange(len(LABELS)).float() + 1).div(32).view(-1, 1, 1, 1).expand(-1, 1, 4, 4)


def make_loader(generator=None, **kwargs) -> GenerativeLoader:
    ds = TensorDataset(IMAGES.clone(), torch.tensor(LABELS))
    return GenerativeLoader(
        DataLoader(ds, batch_size=4),
        generator or SourceBlendGenerator(3),
        ratio=1.0,
        class_policy="balance",
        return_mask=True,
        **kwargs,
    )


def test_variations_take_a_share_of_each_class_positions_and_keep_their_labels() -> None:
    plan = np.array([0, 1, 0, 2, 0, 1, 0, 2])
    entry = HardExamples(0, (5, 3, 9), (0, 0, 2), share=0.5)
    sources = variation_sources(plan, entry)
    # Class 0: 4 positions, 2 varied, cycling through its hard examples in order; class 2:
    # 2 positions, 1 varied; class 1 has no hard example.
    assert sources.tolist() == [5, -1, 3, 9, -1, -1, -1, -1]
    assert variation_sources(plan, HardExamples(0, (5,), (0,), share=1.0)).tolist() == [
        5,
        -1,
        5,
        -1,
        5,
        -1,
        5,
        -1,
    ]


def test_hardest_takes_the_top_scores_ties_to_the_lower_index() -> None:
    assert hardest(torch.tensor([0.2, 0.9, 0.2, 0.9]), 3, 4) == (1, 3, 0)


def test_hard_examples_vary_their_sources_for_the_next_epoch_only_changing_how() -> None:
    gen = SourceBlendGenerator(3)
    plain, loader = make_loader(), make_loader(gen)
    first = served(loader)
    loader.hard_examples([21, 20, 0], strength=0.5)
    # The hand-over is for epoch 1: epoch 0's plan holds no variation.
    assert torch.equal(first[0], served(plain)[0])
    assert (loader._source().variations(0, range(len(first[1])))[0] == -1).all()
    x_plain, y_plain = served(plain)
    x, y = served(loader)
    assert torch.equal(y, y_plain)  # same labels in the same order: counts and ratio exact
    sources, strength = loader._source().variations(1, range(len(y)))
    varied = sources >= 0
    assert strength == 0.5 and set(sources[varied].tolist()) == {0, 20, 21}
    assert torch.equal(x[~torch.from_numpy(varied)], x_plain[~torch.from_numpy(varied)])
    # A variation is the generator's image-conditioned sample of its source.
    seeds = loader._source().seeds(1, np.flatnonzero(varied).tolist())
    expected = gen.generate(y[varied], seeds, source=IMAGES[sources[varied]], strength=strength)
    torch.testing.assert_close(x[torch.from_numpy(varied)], expected)
    # Labels follow their source.
    assert (y[torch.from_numpy(varied)] == torch.tensor(LABELS)[sources[varied]]).all()
    counts = np.bincount(np.asarray(LABELS)[sources[varied]], minlength=3)
    minority = int((y == 2).sum())
    assert counts[2] == int(np.floor(0.5 * minority + 0.5))


def test_scores_pick_the_hardest_and_an_empty_hand_over_stops_variations() -> None:
    loader = make_loader()
    served(loader)
    scores = torch.zeros(len(LABELS))
    scores[[3, 21]] = torch.tensor([0.9, 0.8])
    loader.hard_examples(scores=scores, top=2)
    assert loader.spec.hard[-1].indices == (3, 21)
    served(loader)
    loader.hard_examples([])
    served(loader)
    assert (loader._source().variations(2, range(22))[0] == -1).all()
    assert (loader._source().variations(1, range(22))[0] >= 0).any()


def test_thread_engine_drops_samples_made_ahead_of_the_hand_over() -> None:
    sync, thread = make_loader(), make_loader(engine="thread", pool_size=64)
    hands = [[20, 21], [0, 10], []]
    with thread:
        for epoch in range(3):
            a, b = served(sync), served(thread)
            assert torch.equal(a[1], b[1])
            torch.testing.assert_close(a[0], b[0])
            sync.hard_examples(hands[epoch])
            thread.hard_examples(hands[epoch])
    assert thread.stats()["dropped"] > 0


def test_resume_restores_the_hard_examples() -> None:
    loader = make_loader()
    served(loader)
    loader.hard_examples([21, 1], share=1.0, strength=0.25)
    state = json.loads(json.dumps(loader.state_dict()))
    assert state["hard_examples"] == [[1, [21, 1], 1.0, 0.25]]
    again = make_loader()
    again.load_state_dict(state)
    assert again.spec.hard == loader.spec.hard
    a, b = served(loader), served(again)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_a_version_3_state_loads_without_hard_examples() -> None:
    loader = make_loader()
    state = loader.state_dict()
    del state["hard_examples"]
    state["version"] = 3
    loader.load_state_dict(state)
    assert loader.spec.hard == ()


def test_dataset_takes_hard_examples_for_the_next_epoch() -> None:
    ds = GenerativeDataset(
        TensorDataset(IMAGES.clone(), torch.tensor(LABELS)),
        SourceBlendGenerator(3),
        ratio=1.0,
        class_policy="balance",
    )
    ds.hard_examples([20])
    assert ds.spec.hard[0].epoch == 1
    ds.set_epoch(1)
    sources, strength = ds.spec.synthetic_plan().variations(1, range(ds.num_synthetic))
    row = int(np.flatnonzero(sources == 20)[0])
    image, label = ds[ds.num_real + row]
    assert int(label) == 2
    seed = ds.spec.synthetic_plan().seeds(1, [row])
    expected = SourceBlendGenerator(3).generate([2], seed, source=IMAGES[[20]], strength=strength)
    torch.testing.assert_close(image, expected[0])


def test_tiny_diffusion_model_makes_the_variations(class_pipeline_dir) -> None:
    def gen() -> DiffusionGenerator:
        return DiffusionGenerator.from_pretrained(
            class_pipeline_dir, sampler="ddim", steps=2, device="cpu"
        )

    images = torch.rand(6, 1, 8, 8)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    runs = []
    for _ in range(2):
        loader = GenerativeLoader(
            DataLoader(TensorDataset(images, labels), batch_size=3),
            gen(),
            ratio=1.0,
            return_mask=True,
        )
        served(loader)
        loader.hard_examples([1, 4], share=1.0)
        runs.append(served(loader))
    x, y = runs[0]
    assert x.shape == (6, 1, 8, 8) and torch.equal(runs[1][0], x)
    assert torch.equal(y.sort().values, labels)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"indices": [0.0, 1.0]}, "integer indices"),
        ({"indices": [[0, 1]]}, "1-D"),
        ({"indices": [True, False]}, "integer indices"),
        ({"indices": [22]}, "out of range"),
        ({"indices": [-1]}, "out of range"),
        ({"indices": [3, 3]}, "more than once"),
        ({"scores": [0.5] * 21, "top": 2}, "one value per real sample"),
        ({"scores": [float("nan")] * 22, "top": 2}, "finite"),
        ({"scores": [0.5] * 22}, "top must be an integer"),
        ({"scores": [0.5] * 22, "top": 23}, "top must be an integer"),
        ({}, "either indices"),
        ({"indices": [0], "scores": [0.5] * 22, "top": 1}, "either indices"),
        ({"indices": [0], "top": 1}, "top= picks among scores"),
        ({"indices": [0], "share": 0.0}, "share must be"),
        ({"indices": [0], "strength": float("nan")}, "strength must be"),
    ],
)
def test_bad_hard_examples_are_explained(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        make_loader().hard_examples(**kwargs)


@pytest.mark.reliability
def test_hard_examples_for_an_epoch_already_planned_are_refused() -> None:
    loader = make_loader()
    loader.hard_examples([0])
    with pytest.raises(ValueError, match="already planned"):
        loader.hard_examples([1])
    it = iter(loader)
    next(it)
    with pytest.raises(ValueError, match="has started"):
        loader.hard_examples([1])


@pytest.mark.reliability
def test_hard_examples_need_an_image_conditioned_generator() -> None:
    with pytest.raises(ValueError, match="image-conditioned"):
        make_loader(SeedImageGenerator(3)).hard_examples([0])
