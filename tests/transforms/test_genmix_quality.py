import numpy as np
import pytest
import torch

from gdaload import GenMix

MASK = torch.tensor([False, False, False, True, True, True])


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.arange(6) % 3


def test_quality_sets_each_synthetic_rows_own_weight() -> None:
    x, y = batch()
    quality = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.5, 0.0])
    plain, aware = GenMix(3, alpha=0.3, seed=0), GenMix(3, alpha=0.3, seed=0)
    plain(x, y, MASK)
    mixed, _ = aware(x, y, MASK, quality=quality)
    lam, got = plain.last_mix.lam.numpy(), aware.last_mix.lam.numpy()
    assert np.allclose(got[:3], lam[:3])  # real rows keep the paper's lam
    q = quality.numpy()[3:].astype(np.float64)
    assert np.allclose(got[3:], q + (1 - q) * lam[3:], atol=1e-6)
    assert torch.allclose(mixed[3], x[3])  # quality 1: the sample stays pure


def test_without_quality_the_paper_rule_is_unchanged() -> None:
    x, y = batch()
    a, b = GenMix(3, alpha=0.3, seed=1), GenMix(3, alpha=0.3, seed=1)
    assert torch.equal(a(x, y, MASK)[0], b(x, y, MASK, quality=torch.zeros(6))[0])


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("quality", "match"),
    [
        (torch.ones(5), r"shape \(6,\)"),
        (torch.ones(6, 1), r"shape \(6,\)"),
        ([0.5, 0.5, 0.5, 1.5, 0.5, 0.5], "row 3 is 1.5"),
        ([0.5, -0.5, 0.5, 0.5, 0.5, 0.5], "row 1 is -0.5"),
        ([0.5, 0.5, 0.5, 0.5, float("nan"), 0.5], "row 4 is nan"),
    ],
)
def test_bad_quality_is_explained(quality, match) -> None:
    x, y = batch()
    with pytest.raises(ValueError, match=match):
        GenMix(3, seed=0)(x, y, MASK, quality=quality)
