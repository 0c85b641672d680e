import pytest
import torch
from torch import nn

from gdaload.bench.arms import ArmResults, selection_stage
from gdaload.bench.stats import mean_ci


def test_arm_results_summarise_and_pair_by_seed() -> None:
    results = ArmResults()
    results.accuracy = {"real only": [0.5, 0.6, 0.7], "GDA": [0.6, 0.6, 0.9]}
    results.macro_f1 = {"real only": [0.4, 0.5, 0.6]}
    assert results.summary() == {name: mean_ci(v) for name, v in results.accuracy.items()}
    assert results.summary(results.macro_f1) == {"real only": mean_ci([0.4, 0.5, 0.6])}
    gains = results.gains()
    assert gains["real only"] == (0.0, 0.0)
    assert gains["GDA"][0] == pytest.approx(0.1)


@pytest.mark.reliability
def test_unknown_selection_lists_the_valid_ones() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"valid ones are \['cluster', 'realism', 'topk'\]"):
        selection_stage("best", model, torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 0, 1]))
