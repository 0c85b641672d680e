"""TopK: keep the candidates a classifier is most confident about, or a discriminator likes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdaload.seeding import derive_seed
from gdaload.select import SelectedGenerator, TopK


class BrightnessClassifier(nn.Module):
    """Logits (10 v, 10 (1 - v), 0): bright images look like class 0, dark ones like class 1."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.mean(dim=(1, 2, 3))
        return self.scale * torch.stack([v, 1 - v, torch.zeros_like(v)], dim=1)


def values(gen, seed: int, n: int) -> list[float]:
    return [gen.value(derive_seed(seed, c)) for c in range(n)]


def test_confidence_in_the_intended_class():
    stage = TopK(BrightnessClassifier())
    images = torch.tensor([0.2, 0.9, 0.5]).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)
    labels = torch.tensor([0, 1, 2])
    logits = BrightnessClassifier()(images)
    expected = torch.softmax(logits, dim=1)[torch.arange(3), labels]
    assert torch.allclose(stage.score(images, labels), expected)


def test_selected_generator_keeps_the_most_confident_candidate(gen):
    selected = SelectedGenerator(gen, TopK(BrightnessClassifier()), candidates=6)
    out = selected.generate([0, 1], [40, 41])
    assert float(out[0].mean()) == pytest.approx(max(values(gen, 40, 6)))
    assert float(out[1].mean()) == pytest.approx(min(values(gen, 41, 6)))


def test_k_keeps_that_many_and_a_later_stage_picks_among_them(gen):
    # Keep the 3 most confident class-0 candidates, then the least bright of those.
    stages = [TopK(BrightnessClassifier(), k=3), TopK(lambda x: -x.mean(dim=(1, 2, 3)))]
    out = SelectedGenerator(gen, stages, candidates=6).generate([0], [9])
    assert float(out[0].mean()) == pytest.approx(sorted(values(gen, 9, 6))[-3])


def test_discriminator_scores_and_preprocess(gen):
    stage = TopK(nn.Sequential(nn.Flatten(), nn.Linear(48, 1)), preprocess=lambda x: 1 - x)
    with torch.no_grad():
        stage.scorer[1].weight.fill_(1.0)
        stage.scorer[1].bias.zero_()
    images = torch.tensor([0.2, 0.9]).view(-1, 1, 1, 1).expand(-1, 3, 4, 4)
    assert torch.allclose(
        stage.score(images, torch.tensor([0, 0])), torch.tensor([0.8 * 48, 0.1 * 48])
    )
    out = SelectedGenerator(gen, stage, candidates=5).generate([2], [17])
    assert float(out[0].mean()) == pytest.approx(min(values(gen, 17, 5)))


def test_scorer_mode_is_restored_and_batch_norm_cannot_mix_candidates():
    scorer = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(48), nn.Linear(48, 3))
    scorer.train()
    stage = TopK(scorer)
    images = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0])
    batch = stage.score(images, labels)
    single = torch.cat([stage.score(images[i : i + 1], labels[i : i + 1]) for i in range(4)])
    assert torch.allclose(batch, single)
    assert scorer.training and scorer[1].training


def test_config_follows_the_scorer_weights_and_rule():
    clf = BrightnessClassifier()
    before = TopK(clf).config
    assert TopK(BrightnessClassifier()).config == before
    with torch.no_grad():
        clf.scale.add_(1.0)
    assert TopK(clf).config != before
    assert TopK(BrightnessClassifier(), k=2).config != before
    assert TopK(BrightnessClassifier(), keep=0.5).config["top_k"] is None


@pytest.mark.reliability
def test_topk_bad_inputs():
    images, labels = torch.rand(2, 3, 4, 4), torch.tensor([0, 3])
    with pytest.raises(ValueError, match="classifier has 3 outputs but candidates have label 3"):
        TopK(BrightnessClassifier()).score(images, labels)
    with pytest.raises(ValueError, match=r"returned shape \(2, 3, 4, 4\)"):
        TopK(nn.Identity()).score(images, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="must return"):
        TopK(lambda x: x[:1, 0, 0, 0]).score(images, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="scorer must be a module or callable"):
        TopK("resnet")
    with pytest.raises(ValueError, match=r"keep must be a fraction in \(0, 1\]"):
        TopK(BrightnessClassifier(), keep=2)
