"""RealismScore: the realism score of Kynkäänniemi et al. against hand-made features."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdaload.seeding import derive_seed
from gdaload.select import RealismScore, SelectedGenerator


def as_images(feats: torch.Tensor) -> torch.Tensor:
    """(N, D) features as (N, 1, 1, D) images, so that nn.Flatten recovers them."""
    return feats.view(len(feats), 1, 1, -1)


def manual_realism(real: torch.Tensor, fake: torch.Tensor, k: int) -> torch.Tensor:
    out = []
    for g in fake:
        ratios = []
        for r in real:
            dists = sorted(float((r - o).norm()) for o in real)
            ratios.append(dists[k] / float((g - r).norm()))
        out.append(max(ratios))
    return torch.tensor(out)


REAL = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])


def test_outlier_gets_lowest_score_and_is_dropped():
    stage = RealismScore(nn.Flatten(), k=2, per_class=False, prune_fraction=0.0).fit(REAL)
    fake = torch.tensor([[0.5, 0.4], [0.9, 0.1], [6.0, 6.0], [0.2, 0.8]])
    scores = stage.score(as_images(fake), torch.zeros(4, dtype=torch.long))
    assert torch.allclose(scores, manual_realism(REAL, fake, 2), rtol=1e-5)
    assert int(scores.argmin()) == 2 and float(scores[2]) < 1.0
    # Default rule: threshold 1.0, i.e. inside some real k-NN ball.
    kept = stage.keep_mask(scores.view(1, -1).double(), torch.ones(1, 4, dtype=torch.bool))
    assert kept.tolist() == [[True, True, False, True]]


def test_per_class_manifolds_reject_realistic_images_of_the_wrong_class():
    real = torch.cat([REAL, REAL + 10.0])
    labels = torch.tensor([0] * 5 + [1] * 5)
    per_class = RealismScore(nn.Flatten(), k=2, prune_fraction=0.0).fit(real, labels)
    shared = RealismScore(nn.Flatten(), k=2, per_class=False, prune_fraction=0.0).fit(real, labels)
    # A class-1-looking sample generated for class 0.
    fake, fake_labels = torch.tensor([[10.5, 10.4], [0.5, 0.4]]), torch.tensor([0, 0])
    assert torch.allclose(
        per_class.score(as_images(fake), fake_labels), manual_realism(REAL, fake, 2), rtol=1e-5
    )
    assert (
        float(shared.score(as_images(fake), fake_labels)[0])
        > 1.0
        > float(per_class.score(as_images(fake), fake_labels)[0])
    )


def test_pruning_ignores_the_widest_real_balls():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [20.0]])
    stage = RealismScore(nn.Flatten(), k=1, per_class=False).fit(real)  # prune_fraction=0.5
    unpruned = RealismScore(nn.Flatten(), k=1, per_class=False, prune_fraction=0.0).fit(real)
    near_outlier = as_images(torch.tensor([[12.0]]))
    label = torch.zeros(1, dtype=torch.long)
    # The lone real point at 20 has radius 17 and would accept 12 without pruning.
    assert (
        float(unpruned.score(near_outlier, label)) > 1.0 > float(stage.score(near_outlier, label))
    )


def test_selected_generator_keeps_the_most_realistic_candidate(gen):
    # Real images of class 1 are constant images with values near 0.3.
    values = torch.tensor([0.26, 0.28, 0.30, 0.32, 0.34])
    real = values.view(-1, 1, 1, 1).expand(-1, *gen.image_shape)
    stage = RealismScore(nn.Flatten(), k=2, prune_fraction=0.0, top_k=1)
    stage.fit(real, torch.ones(5, dtype=torch.long))
    selected = SelectedGenerator(gen, stage, candidates=6)
    seed = 4
    out = selected.generate([1], [seed])
    cands = torch.tensor([[gen.value(derive_seed(seed, c))] for c in range(6)])
    expected = manual_realism(values.view(-1, 1) * 48**0.5, cands * 48**0.5, 2)
    assert float(out[0].mean()) == pytest.approx(float(cands[expected.argmax(), 0]))


def test_fit_from_batches_matches_fit_from_tensor():
    images, labels = as_images(torch.cat([REAL, REAL * 2])), torch.tensor([0] * 5 + [1] * 5)
    a = RealismScore(nn.Flatten(), k=2).fit(images, labels)
    b = RealismScore(nn.Flatten(), k=2).fit([(images[:3], labels[:3]), (images[3:], labels[3:])])
    assert a.config == b.config
    probe = as_images(torch.tensor([[0.4, 0.6], [1.2, 0.1]]))
    assert torch.equal(a.score(probe, torch.tensor([0, 1])), b.score(probe, torch.tensor([0, 1])))


def test_config_follows_real_data_and_parameters():
    a = RealismScore(nn.Flatten(), k=2, per_class=False).fit(REAL)
    b = RealismScore(nn.Flatten(), k=2, per_class=False).fit(REAL + 1)
    c = RealismScore(nn.Flatten(), k=3, per_class=False).fit(REAL)
    d = RealismScore(nn.Flatten(), k=2, per_class=False, keep=0.5).fit(REAL)
    configs = [a.config, b.config, c.config, d.config, RealismScore(nn.Flatten()).config]
    assert len({repr(sorted(cfg.items())) for cfg in configs}) == 5
    assert a.config["threshold"] == 1.0 and d.config["threshold"] is None


@pytest.mark.reliability
def test_realism_bad_inputs():
    labels = torch.tensor([0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match="needs the real labels"):
        RealismScore(nn.Flatten()).fit(REAL)
    with pytest.raises(ValueError, match="more than 2 real samples of class 1, got 2"):
        RealismScore(nn.Flatten(), k=2).fit(REAL, labels)
    stage = RealismScore(nn.Flatten(), k=1).fit(REAL, labels)
    with pytest.raises(ValueError, match=r"no real examples of classes \[2\]"):
        stage.score(as_images(REAL[:2]), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="fit on 2-D features but the extractor returned 3-D"):
        stage.score(torch.zeros(1, 1, 1, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="one label per sample"):
        RealismScore(nn.Flatten(), k=1).fit(REAL, labels[:4])
    with pytest.raises(ValueError, match=r"expects \(N, C, H, W\) images or \(N, D\) features"):
        RealismScore(nn.Flatten(), per_class=False).fit(torch.zeros(5, 2, 2))
    with pytest.raises(ValueError, match="non-finite|NaN or Inf"):
        RealismScore(nn.Flatten(), per_class=False, k=1).fit(
            torch.tensor([[0.0], [float("nan")], [1.0]])
        )
    with pytest.raises(ValueError, match="got no real samples"):
        RealismScore(nn.Flatten(), per_class=False).fit(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        RealismScore(nn.Flatten(), k=0)
    with pytest.raises(ValueError, match="prune_fraction"):
        RealismScore(nn.Flatten(), prune_fraction=1.0)
