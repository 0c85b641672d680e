"""SelectedGenerator: seeds, purity, ratio, fallback, report."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdaload.generators.base import check_generated
from gdaload.seeding import derive_seed
from gdaload.select import EmptySelectionError, SelectedGenerator, SelectionStage


def candidate_values(gen, seed: int, n: int, rnd: int = 0) -> list[float]:
    return [gen.value(derive_seed(seed, n * rnd + c)) for c in range(n)]


def test_returns_best_candidate_of_derived_seeds(gen, brightness):
    selected = SelectedGenerator(gen, brightness(), candidates=5)
    out = selected.generate([0, 2, 2], [11, 12, 13])
    check_generated(out, 3, gen.image_shape)
    for image, seed in zip(out, [11, 12, 13], strict=True):
        assert float(image.mean()) == pytest.approx(max(candidate_values(gen, seed, 5)))
    # All candidates of the call go to the generator in one batch.
    assert gen.calls == [15]


def test_one_image_per_request_and_chunking_does_not_change_result(gen, brightness):
    labels, seeds = [0, 1, 2, 0, 1, 2, 0], [3, 1, 4, 1, 5, 9, 2]
    whole = SelectedGenerator(gen, [brightness(keep=0.5), brightness(-1.0)], candidates=4)
    chunked = SelectedGenerator(
        gen, [brightness(keep=0.5), brightness(-1.0)], candidates=4, chunk_size=3
    )
    a = whole.generate(labels, seeds)
    gen.calls.clear()
    b = chunked.generate(labels, seeds)
    check_generated(b, len(labels), gen.image_shape)
    assert torch.equal(a, b)
    assert max(gen.calls) == 3 and sum(gen.calls) == 4 * len(labels)
    assert selected_empty(whole).shape == (0, *gen.image_shape)


def selected_empty(selected: SelectedGenerator) -> torch.Tensor:
    return selected.generate(torch.empty(0, dtype=torch.long), [])


def test_sample_depends_only_on_its_label_and_seed(gen, brightness):
    selected = SelectedGenerator(
        gen, [brightness(threshold=0.3), brightness(keep=0.5), brightness(-1.0)], candidates=6
    )
    a, b = (1, 77), (1, 78)
    pair = selected.generate([a[0], b[0]], [a[1], b[1]])
    alone = selected.generate([a[0]], [a[1]])
    swapped = selected.generate([b[0], a[0], 2], [b[1], a[1], 5])
    assert torch.equal(pair[0], alone[0])
    assert torch.equal(pair[0], swapped[1]) and torch.equal(pair[1], swapped[0])


def test_cascade_keeps_fraction_then_ranks_by_last_stage(gen, brightness):
    # Keep the brightest half, then return the darkest of those.
    selected = SelectedGenerator(gen, [brightness(keep=0.5), brightness(-1.0)], candidates=6)
    seed = 21
    values = sorted(candidate_values(gen, seed, 6), reverse=True)
    out = selected.generate([0], [seed])
    assert float(out[0].mean()) == pytest.approx(values[2])


def test_config_covers_generator_stages_and_settings(gen, brightness):
    base = SelectedGenerator(gen, brightness(keep=0.5), candidates=4)
    assert base.config["generator"] == gen.config
    assert base.config["stages"] == [brightness(keep=0.5).config]
    same = SelectedGenerator(gen, brightness(keep=0.5), candidates=4, chunk_size=2)
    assert same.config_hash() == base.config_hash()
    others = [
        SelectedGenerator(gen, brightness(keep=0.25), candidates=4),
        SelectedGenerator(gen, brightness(top_k=2), candidates=4),
        SelectedGenerator(gen, brightness(-1.0, keep=0.5), candidates=4),
        SelectedGenerator(gen, [brightness(keep=0.5), brightness()], candidates=4),
        SelectedGenerator(gen, brightness(keep=0.5), candidates=8),
        SelectedGenerator(gen, brightness(keep=0.5), candidates=4, max_rounds=5),
        SelectedGenerator(gen, brightness(keep=0.5), candidates=4, on_empty="best"),
    ]
    hashes = {base.config_hash()} | {o.config_hash() for o in others}
    assert len(hashes) == len(others) + 1


def test_report_gives_kept_fraction_per_class(gen, brightness):
    selected = SelectedGenerator(
        gen, brightness(threshold=0.5), candidates=4, max_rounds=1, on_empty="best"
    )
    labels, seeds = [0, 0, 0, 1, 1, 2], [10, 11, 12, 13, 14, 15]
    selected.generate(labels, seeds)
    report = selected.selection_report()
    for label in (0, 1, 2):
        mine = [s for y, s in zip(labels, seeds, strict=True) if y == label]
        kept = [sum(v >= 0.5 for v in candidate_values(gen, s, 4)) for s in mine]
        counts = report["classes"][label]
        assert counts["requests"] == len(mine)
        assert counts["candidates"] == 4 * len(mine)
        assert counts["kept"] == sum(kept) == counts["passed"][0]
        assert counts["kept_fraction"] == pytest.approx(sum(kept) / (4 * len(mine)))
        assert counts["fallbacks"] == sum(k == 0 for k in kept)
    assert report["total"]["candidates"] == 24
    assert report["total"]["kept"] == sum(c["kept"] for c in report["classes"].values())
    selected.reset_stats()
    assert selected.selection_report()["classes"] == {}


def seed_needing_second_round(gen, n: int, threshold: float) -> int:
    for seed in range(1000):
        first, second = candidate_values(gen, seed, n, 0), candidate_values(gen, seed, n, 1)
        if max(first) < threshold <= max(second):
            return seed
    raise AssertionError("no such seed in range")


def test_rejected_request_gets_another_round_of_derived_seeds(gen, brightness):
    seed = seed_needing_second_round(gen, 3, 0.8)
    selected = SelectedGenerator(gen, brightness(threshold=0.8), candidates=3, max_rounds=2)
    out = selected.generate([2], [seed])
    assert float(out[0].mean()) == pytest.approx(max(candidate_values(gen, seed, 3, 1)))
    counts = selected.selection_report()["classes"][2]
    assert counts["rounds"] == 2 and counts["candidates"] == 6 and counts["fallbacks"] == 0


@pytest.mark.reliability
def test_nothing_kept_raises_after_max_rounds(gen, brightness):
    selected = SelectedGenerator(gen, brightness(threshold=2.0), candidates=3, max_rounds=4)
    with pytest.raises(EmptySelectionError, match="on_empty='best'") as info:
        selected.generate([0, 1], [5, 6])
    assert isinstance(info.value, ValueError)
    assert gen.calls == [6, 6, 6, 6]


def test_on_empty_best_returns_deepest_best_rejected_candidate(gen, brightness):
    # Stage 1 passes bright candidates, stage 2 rejects everything and prefers dark ones:
    # the fallback is the darkest candidate that passed stage 1, over both rounds.
    stages = [brightness(threshold=0.3), brightness(-1.0, threshold=5.0)]
    selected = SelectedGenerator(gen, stages, candidates=4, max_rounds=2, on_empty="best")
    seed = 8
    values = candidate_values(gen, seed, 4, 0) + candidate_values(gen, seed, 4, 1)
    out = selected.generate([1], [seed])
    assert float(out[0].mean()) == pytest.approx(min(v for v in values if v >= 0.3))
    counts = selected.selection_report()["classes"][1]
    assert counts["fallbacks"] == 1 and counts["kept"] == 0
    assert counts["passed"] == [sum(v >= 0.3 for v in values), 0]


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"candidates": 0}, "candidates must be an integer >= 1"),
        ({"max_rounds": 0}, "max_rounds must be an integer >= 1"),
        ({"on_empty": "skip"}, "on_empty must be one of"),
        ({"chunk_size": 0}, "chunk_size must be None or an integer >= 1"),
    ],
)
def test_bad_selected_generator_arguments(gen, brightness, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SelectedGenerator(gen, brightness(), **kwargs)


@pytest.mark.reliability
def test_bad_stage_lists(gen):
    with pytest.raises(ValueError, match="at least one selection stage"):
        SelectedGenerator(gen, [])
    with pytest.raises(ValueError, match="must be SelectionStage instances"):
        SelectedGenerator(gen, [nn.Identity()])


@pytest.mark.reliability
def test_stage_returning_nan_or_wrong_shape_is_reported(gen):
    class Broken(SelectionStage):
        def __init__(self, shape_ok: bool) -> None:
            super().__init__()
            self.shape_ok = shape_ok

        def score(self, images, labels):
            s = images.mean(dim=(1, 2, 3))
            if not self.shape_ok:
                return s[:1]
            s[1] = float("nan")
            return s

    with pytest.raises(ValueError, match=r"NaN or Inf for candidates \[1\]"):
        SelectedGenerator(gen, Broken(True), candidates=2).generate([0], [1])
    with pytest.raises(ValueError, match=r"one score per candidate, shape \(2,\)"):
        SelectedGenerator(gen, Broken(False), candidates=2).generate([0], [1])
