"""GenMix input checks: malformed batches, masks and targets raise clear ValueErrors."""

import pytest
import torch

from gdaload.transforms.genmix import GenMix
from gdaload.transforms.genmix.inputs import soft_targets

K = 3

# A batch of four rows, the last two synthetic.
_g = torch.Generator().manual_seed(0)
X = torch.rand(4, 2, 4, 4, generator=_g, dtype=torch.float64)
Y = torch.randint(0, K, (4,), generator=_g)
MASK = torch.tensor([False, False, True, True])


def soft_rows(row_2):
    """Four valid one-hot rows with row 2 replaced."""
    rows = torch.eye(K)[[0, 1, 2, 0]].clone()
    rows[2] = torch.tensor(row_2)
    return rows


@pytest.mark.reliability
@pytest.mark.parametrize(
    "x, target, mask, message",
    [
        (X[0], Y, MASK, r"x must have shape \(B, C, H, W\)"),
        (X.flatten(1), Y, MASK, r"x must have shape \(B, C, H, W\)"),
        ((X * 255).to(torch.uint8), Y, MASK, "x must be a floating-point tensor"),
        (X.numpy(), Y, MASK, "x must be a torch.Tensor"),
        (X, Y, MASK[:3], r"synthetic_mask must have shape \(4,\)"),
        (X, Y, MASK.long(), "synthetic_mask must be a bool tensor"),
        (X, Y[:3], MASK, "target has 3 rows but x has 4"),
        (X, torch.tensor([0, 1, 3, 0]), MASK, r"class indices must be in \[0, 2\]"),
        (X, torch.tensor([0, -1, 2, 0]), MASK, r"class indices must be in \[0, 2\]"),
        (X, Y.float(), MASK, "1-D target must hold integer class indices"),
        # A class index written into a one-hot batch: row 2 holds "2" instead of a row.
        (X, soft_rows([2, 0, 0]), MASK, r"rows \[2\] sum to \[2.0\].*hard and soft"),
        (X, soft_rows([0, 0, 0]), MASK, "hard and soft labels were mixed"),
        (X, soft_rows([1.5, -0.5, 0]), MASK, "non-negative"),
        (X, soft_rows([float("nan"), 0, 1]), MASK, "sum to 1"),
        (X, torch.nn.functional.one_hot(Y, K), MASK, "2-D target must be floating"),
        (X, torch.zeros(4, 5), MASK, r"soft target must have shape \(4, 3\)"),
        (
            X,
            [0, [0.5, 0.5, 0.0], 2, 1],
            MASK,
            r"mixes class indices \(positions \[0, 2, 3\]\) "
            r"with soft label rows \(positions \[1\]\)",
        ),
        (X, [[0.5, 0.5], [1, 0], [0, 1], [1, 0]], MASK, "num_classes=3 entries"),
        (X, Y.view(4, 1, 1), MASK, "target must be 1-D class indices"),
    ],
)
def test_bad_call_arguments(x, target, mask, message):
    with pytest.raises(ValueError, match=message):
        GenMix(K, seed=0)(x, target, mask)


def test_soft_targets_are_smoothed_one_hot_rows_or_checked_probability_rows():
    cpu = torch.device("cpu")
    hard = soft_targets(torch.tensor([0, 2]), 2, K, 0.3, cpu, torch.float64)
    assert torch.allclose(
        hard, torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]], dtype=torch.float64)
    )
    rows = [[0.25, 0.75, 0.0], [1.0, 0.0, 0.0]]
    soft = soft_targets(rows, 2, K, 0.0, cpu, torch.float32)
    assert soft.dtype == torch.float32 and soft.tolist() == rows
    assert soft_targets([], 0, K, 0.0, cpu, torch.float32).shape == (0, K)
