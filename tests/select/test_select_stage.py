"""SelectionStage keep rules and checks; the describe and eval_mode helpers of stages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdaload.select import RealismScore, SelectedGenerator, describe
from gdaload.select.stage import eval_mode


def test_keep_fraction_is_ceil_of_alive_candidates_per_request(brightness):
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.3, 0.2, 0.8, 0.4, 0.6, 0.0]])
    alive = torch.ones_like(scores, dtype=torch.bool)
    # 0.3 * 10 must give 3, not 4 through float error.
    kept = brightness(keep=0.3).keep_mask(scores, alive)
    assert kept[0].nonzero().flatten().tolist() == [1, 3, 6]
    # Over the 3 survivors of an earlier stage, 0.5 keeps ceil(1.5) = 2.
    alive = torch.zeros_like(alive)
    alive[0, [0, 2, 4]] = True
    kept = brightness(keep=0.5).keep_mask(scores, alive)
    assert kept[0].nonzero().flatten().tolist() == [2, 4]
    # A tiny fraction still keeps one candidate per request.
    assert int(brightness(keep=0.01).keep_mask(scores, alive).sum()) == 1


def test_top_k_threshold_and_rank_only_rules(brightness):
    scores = torch.tensor([[0.5, 0.5, 0.9, 0.1], [0.2, 0.3, 0.4, 0.6]])
    alive = torch.ones_like(scores, dtype=torch.bool)
    alive[1, 3] = False
    top2 = brightness(top_k=2).keep_mask(scores, alive)
    # Ties go to the earlier candidate; dead candidates are never kept.
    assert top2.tolist() == [[True, False, True, False], [False, True, True, False]]
    assert brightness(threshold=0.45).keep_mask(scores, alive).tolist() == [
        [True, True, True, False],
        [False, False, False, False],
    ]
    assert torch.equal(brightness().keep_mask(scores, alive), alive)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("rule", "match"),
    [
        ({"keep": 0.0}, r"keep must be a fraction in \(0, 1\]"),
        ({"keep": 1.5}, r"keep must be a fraction in \(0, 1\]"),
        ({"keep": True}, r"keep must be a fraction"),
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"keep": 0.5, "threshold": 0.1}, "at most one keep rule"),
    ],
)
def test_bad_keep_rules(brightness, rule, match):
    with pytest.raises(ValueError, match=match):
        brightness(**rule)


@pytest.mark.reliability
def test_stage_needing_real_data_fails_before_fit(gen):
    selected = SelectedGenerator(gen, RealismScore(nn.Flatten()), candidates=2)
    with pytest.raises(ValueError, match=r"call RealismScore.fit\(real_images, real_labels\)"):
        selected.generate([0], [1])


def test_describe_names_weights_by_digest_and_callables_without_addresses():
    linear = nn.Linear(2, 2)
    before = describe(linear)
    assert before["type"] == "Linear"
    with torch.no_grad():
        linear.weight.add_(1.0)
    assert describe(linear)["weights"] != before["weights"]
    assert describe(nn.Flatten()) == repr(nn.Flatten())
    assert " at 0x" not in describe(lambda x: x)


def test_eval_mode_restores_every_training_flag():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    net[1].eval()
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert net.training and net[0].training and not net[1].training
