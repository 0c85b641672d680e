"""GenerativeTTA: merge modes, views, determinism, caching, labels and errors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from checkers import SeedImageGenerator
from torch import nn

from gdaload.generators.base import (
    ImageConditionedGenerator,
    MultiViewGenerator,
    as_labels,
    as_seeds,
    check_source,
    sample_strengths,
)
from gdaload.tta import GenerativeTTA, merge_outputs

SHAPE = (1, 4, 4)


class BlendGenerator(ImageConditionedGenerator):
    """Variations ``(1 - s) * source + s * noise(seed)``; records every call."""

    num_classes, image_shape = 3, SHAPE

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def generate(
        self,
        labels: Any,
        seeds: Sequence[int],
        *,
        source: torch.Tensor | None = None,
        strength: Any = 0.5,
    ) -> torch.Tensor:
        labels = as_labels(labels, self.num_classes)
        seeds = as_seeds(seeds, len(labels))
        self.calls.append({"labels": labels.tolist(), "seeds": seeds})
        source = check_source(source, self.image_shape, len(labels))
        noise = torch.stack(
            [torch.rand(SHAPE, generator=torch.Generator().manual_seed(s)) for s in seeds]
        )
        s = torch.tensor(sample_strengths(strength, seeds)).view(-1, 1, 1, 1)
        return (1 - s) * source + s * noise

    @property
    def config(self) -> dict[str, Any]:
        return {"kind": "blend"}


class NovelViewGenerator(BlendGenerator, MultiViewGenerator):
    """A label-free multi-view double: the V - 1 = 3 novel views are noise from the seed."""

    num_views = 4

    def novel_views(self, source: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        self.calls.append({"seeds": list(seeds)})
        return torch.stack(
            [torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(s)) for s in seeds]
        )


def linear_model(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def log_probs(rows: list[list[float]]) -> torch.Tensor:
    """Logits whose softmax is exactly the given probability rows."""
    return torch.tensor(rows).log()


# ---------------------------------------------------------------- merge modes
def test_merge_modes_by_hand() -> None:
    # One input, two views with probabilities p1 and p2.
    p1, p2 = [0.8, 0.1, 0.1], [0.2, 0.4, 0.4]
    logits = log_probs([p1, p2])[None]
    torch.testing.assert_close(merge_outputs(logits, "mean"), torch.tensor([[0.5, 0.25, 0.25]]))
    # Geometric means sqrt(.16)=.4, sqrt(.04)=.2, sqrt(.04)=.2, renormalised by their sum .8.
    torch.testing.assert_close(merge_outputs(logits, "gmean"), torch.tensor([[0.5, 0.25, 0.25]]))
    torch.testing.assert_close(merge_outputs(logits, "max"), torch.tensor([[0.8, 0.4, 0.4]]))

    p3 = [0.1, 0.3, 0.6]
    logits = log_probs([p1, p3])[None]
    g = [math.sqrt(0.08), math.sqrt(0.03), math.sqrt(0.06)]
    torch.testing.assert_close(
        merge_outputs(logits, "gmean"), torch.tensor([[x / sum(g) for x in g]])
    )
    torch.testing.assert_close(merge_outputs(logits, "mean"), torch.tensor([[0.45, 0.2, 0.35]]))


def test_vote_counts_top_classes_and_breaks_ties_by_mean_probability() -> None:
    # Three views voting 0, 2, 2: class 2 wins although class 0 has the higher mean.
    rows = [[0.98, 0.01, 0.01], [0.3, 0.3, 0.4], [0.3, 0.2, 0.5]]
    out = merge_outputs(log_probs(rows)[None], "vote")
    mean = [(0.98 + 0.3 + 0.3) / 3, (0.01 + 0.3 + 0.2) / 3, (0.01 + 0.4 + 0.5) / 3]
    expected = [(1 + mean[0] / 2) / 3, (0 + mean[1] / 2) / 3, (2 + mean[2] / 2) / 3]
    torch.testing.assert_close(out, torch.tensor([expected]))
    assert out.argmax().item() == 2
    # Two views voting 0 and 1: a tie, won by class 1's higher mean probability.
    tie = merge_outputs(log_probs([[0.5, 0.4, 0.1], [0.05, 0.9, 0.05]])[None], "vote")
    expected = [(1 + 0.275 / 2) / 2, (1 + 0.65 / 2) / 2, (0 + 0.075 / 2) / 2]
    torch.testing.assert_close(tie, torch.tensor([expected]))
    assert tie.argmax().item() == 1


@pytest.mark.reliability
def test_merge_rejects_unknown_modes_and_shapes() -> None:
    with pytest.raises(ValueError, match="unknown merge mode 'median'"):
        merge_outputs(torch.zeros(1, 2, 3), "median")
    with pytest.raises(ValueError, match=r"\(B, N views, C classes\)"):
        merge_outputs(torch.zeros(2, 3), "mean")


# ---------------------------------------------------------------- the wrapper
def test_forward_merges_original_and_views() -> None:
    gen, model = BlendGenerator(), linear_model()
    x = torch.rand(5, *SHAPE)
    tta = GenerativeTTA(model, gen, views=3, strength=0.4, seed=1)
    views = tta.generated_views(x)
    assert views.shape == (5, 3, *SHAPE)
    with torch.no_grad():
        logits = torch.cat([model(x)[:, None], model(views.flatten(0, 1)).view(5, 3, 3)], 1)
        torch.testing.assert_close(tta(x), logits.softmax(-1).mean(1))
        # include_original=False merges the generated views only.
        only = GenerativeTTA(
            model, gen, views=3, strength=0.4, seed=1, include_original=False, merge="max"
        )
        torch.testing.assert_close(only(x), logits[:, 1:].softmax(-1).amax(1))


def test_class_conditional_generators_get_the_predicted_class() -> None:
    gen, model = BlendGenerator(), linear_model()
    x = torch.rand(4, *SHAPE)
    GenerativeTTA(model, gen, views=2)(x)
    predicted = model(x).argmax(-1).repeat_interleave(2).tolist()
    assert gen.calls[-1]["labels"] == predicted


def test_views_depend_only_on_input_and_seed() -> None:
    gen, model = BlendGenerator(), linear_model()
    x = torch.rand(4, *SHAPE)
    tta = GenerativeTTA(model, gen, views=2, strength=0.7, seed=3)
    views = tta.generated_views(x)
    # The same input gets the same views alone, in another batch, or in another position.
    torch.testing.assert_close(tta.generated_views(x[2:3]), views[2:3])
    torch.testing.assert_close(
        tta.generated_views(torch.cat([torch.rand(1, *SHAPE), x[:1]]))[1], views[0]
    )
    again = GenerativeTTA(linear_model(), BlendGenerator(), views=2, strength=0.7, seed=3)
    torch.testing.assert_close(again.generated_views(x), views)
    other = GenerativeTTA(model, gen, views=2, strength=0.7, seed=4).generated_views(x)
    assert (other - views).abs().amax() > 1e-3
    # The views of one input differ from each other.
    assert (views[:, 0] - views[:, 1]).abs().amax() > 1e-3


def test_cache_skips_generation_for_seen_inputs() -> None:
    gen, model = BlendGenerator(), linear_model()
    x = torch.rand(3, *SHAPE)
    tta = GenerativeTTA(model, gen, views=2, cache_size=2)
    first = tta(x)
    calls = len(gen.calls)
    torch.testing.assert_close(tta(x[1:]), first[1:])
    assert len(gen.calls) == calls  # both inputs still cached (the last two)
    tta(x[:1])
    assert len(gen.calls) == calls + 1 and gen.calls[-1]["seeds"]  # input 0 was evicted
    uncached = BlendGenerator()
    plain = GenerativeTTA(model, uncached, views=2)
    torch.testing.assert_close(plain(x), first)
    plain(x)
    assert len(uncached.calls) == 2


def test_cache_keeps_the_most_recently_used_inputs_and_can_be_resized() -> None:
    gen, model = BlendGenerator(), linear_model()
    x = torch.rand(3, *SHAPE)
    tta = GenerativeTTA(model, gen, views=2, cache_size=2)
    tta(x[:2])
    tta(x[:1])  # input 0 is now the most recently used
    tta(x[2:])  # evicts input 1, not input 0
    calls = len(gen.calls)
    tta(x[:1])
    assert len(gen.calls) == calls
    tta(x[1:2])
    assert len(gen.calls) == calls + 1
    assert tta.cache_size == 2
    tta.cache_size = 0  # disables the cache and empties it
    assert tta.cache_size == 0 and len(tta._cache) == 0
    tta(x[:1])
    assert len(gen.calls) == calls + 2


def test_multiview_generators_give_novel_views_without_labels() -> None:
    gen, model = NovelViewGenerator(), linear_model()
    x = torch.rand(2, *SHAPE)
    tta = GenerativeTTA(model, gen, views=5, seed=0)
    views = tta.generated_views(x)
    assert views.shape == (2, 5, *SHAPE)
    # Views 0-2 are the three novel views of a first joint sample, 3-4 of a second.
    assert len(gen.calls[-1]["seeds"]) == 4
    seeds = gen.calls[-1]["seeds"]
    torch.testing.assert_close(views[0, :3], gen.novel_views(x[:1], [seeds[0]])[0])
    torch.testing.assert_close(views[0, 3:], gen.novel_views(x[:1], [seeds[1]])[0, :2])
    assert tta(x).shape == (2, 3)


def test_evaluate_reports_single_and_averaged_accuracy() -> None:
    model = linear_model()
    x = torch.rand(6, *SHAPE)
    y = model(x).argmax(-1)
    y[0] = (y[0] + 1) % 3
    # With strength 0 every view is the input itself: both accuracies are 5/6.
    tta = GenerativeTTA(model, BlendGenerator(), views=2, strength=0.0)
    report = tta.evaluate([(x[:4], y[:4]), (x[4:], y[4:])])
    assert report == {"single": 5 / 6, "averaged": 5 / 6, "num_samples": 6}
    assert model.training  # the model's mode is restored


# ---------------------------------------------------------------- errors
@pytest.mark.reliability
def test_bad_settings_raise_value_errors() -> None:
    model, gen = linear_model(), BlendGenerator()
    with pytest.raises(ValueError, match="views must be an integer >= 1"):
        GenerativeTTA(model, gen, views=0)
    with pytest.raises(ValueError, match="unknown merge mode"):
        GenerativeTTA(model, gen, merge="median")
    with pytest.raises(ValueError, match="strength"):
        GenerativeTTA(model, gen, strength=1.5)

    with pytest.raises(ValueError, match="image-conditioned generator"):
        GenerativeTTA(model, SeedImageGenerator())


@pytest.mark.reliability
def test_bad_inputs_raise_value_errors() -> None:
    tta = GenerativeTTA(linear_model(), BlendGenerator(), views=2)
    with pytest.raises(ValueError, match="takes 4x4"):
        tta(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        tta(torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="empty batch"):
        tta(torch.rand(0, *SHAPE))

    class NaNAtRow2(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(len(x), 3)
            if len(x) > 2:
                out[2, 1] = float("nan")
            return out

    with pytest.raises(ValueError, match=r"non-finite logits .* input 2 \(the original\)"):
        GenerativeTTA(NaNAtRow2(), BlendGenerator(), views=1)(torch.rand(4, *SHAPE))

    class WideModel(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.arange(5.0).expand(len(x), 5)

    with pytest.raises(ValueError, match="predicts class 4 .* 3 classes"):
        GenerativeTTA(WideModel(), BlendGenerator())(torch.rand(2, *SHAPE))


@pytest.mark.reliability
def test_non_finite_logits_on_a_generated_view_name_the_input() -> None:
    class InfOnWhiteImages(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(len(x), 3)
            out[x.flatten(1).amin(1) == 1, 0] = float("inf")
            return out

    gen = NovelViewGenerator()
    x = torch.rand(3, *SHAPE)

    def white_for_input_1(source: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        views = torch.zeros(len(seeds), 3, *SHAPE)
        views[1, 2] = 1.0
        return views

    gen.novel_views = white_for_input_1  # type: ignore[method-assign]
    with pytest.raises(ValueError, match=r"input 1 \(generated view 2\)"):
        GenerativeTTA(InfOnWhiteImages(), gen, views=3)(x)
