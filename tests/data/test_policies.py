import re

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from gdaload.data.policies import (
    CLASS_POLICIES,
    check_ratio,
    dataset_labels,
    plan_labels,
    real_class_counts,
    synthetic_counts,
)


@pytest.mark.parametrize("policy", CLASS_POLICIES)
@pytest.mark.parametrize(
    ("real", "total"), [([8, 2, 0], 6), ([5, 5, 5], 7), ([10, 1, 3, 0], 20), ([100, 1], 3)]
)
def test_counts_are_exact_and_skip_absent_classes(policy: str, real: list[int], total: int) -> None:
    counts = synthetic_counts(policy, real, total)
    assert counts.sum() == total
    assert (counts[np.asarray(real) == 0] == 0).all()


def test_match_follows_real_frequencies() -> None:
    assert synthetic_counts("match", [60, 30, 10], 50).tolist() == [30, 15, 5]


def test_uniform_is_even_over_present_classes() -> None:
    assert synthetic_counts("uniform", [60, 30, 10, 0], 30).tolist() == [10, 10, 10, 0]


def test_balance_fills_minority_classes_first() -> None:
    assert synthetic_counts("balance", [10, 1, 3], 6).tolist() == [0, 4, 2]
    counts = synthetic_counts("balance", [10, 1, 3], 20)
    totals = np.array([10, 1, 3]) + counts
    assert totals.max() - totals.min() <= 1


def test_plan_is_a_shuffle_of_exact_counts() -> None:
    labels = plan_labels("match", [6, 3, 1], 10, np.random.default_rng(0))
    assert np.bincount(labels, minlength=3).tolist() == [6, 3, 1]
    again = plan_labels("match", [6, 3, 1], 10, np.random.default_rng(0))
    assert (labels == again).all()


@pytest.mark.reliability
@pytest.mark.parametrize("ratio", [-0.5, float("nan"), float("inf"), "two"])
def test_bad_ratio_is_explained(ratio) -> None:
    with pytest.raises(ValueError, match="ratio must be"):
        check_ratio(ratio)


@pytest.mark.reliability
@pytest.mark.parametrize("ratio", [1e30, 2e6])
def test_a_huge_finite_ratio_names_the_ratio(ratio) -> None:
    with pytest.raises(ValueError, match=re.escape(f"ratio {ratio!r} is too large")):
        check_ratio(ratio)
    assert check_ratio(1e6) == 1e6


@pytest.mark.reliability
def test_unknown_policy_lists_valid_ones() -> None:
    with pytest.raises(
        ValueError, match="valid ones are \\['match', 'uniform', 'balance', 'feedback'\\]"
    ):
        synthetic_counts("rare-first", [1, 1], 2)


def test_dataset_labels_read_without_decoding() -> None:
    ds = TensorDataset(torch.zeros(5, 1), torch.tensor([0, 1, 2, 1, 0]))
    assert dataset_labels(ds).tolist() == [0, 1, 2, 1, 0]
    assert dataset_labels(Subset(ds, [1, 2])).tolist() == [1, 2]
    empty = dataset_labels(Subset(ds, []))  # no indices: still integer ones
    assert empty.dtype == np.int64 and empty.shape == (0,)

    class Plain(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int):
            return torch.zeros(1), i

    assert dataset_labels(Plain()).tolist() == [0, 1]


@pytest.mark.reliability
def test_labels_the_generator_cannot_make_are_rejected() -> None:
    with pytest.raises(ValueError, match="labels \\[5\\] that the generator cannot produce"):
        real_class_counts(np.array([0, 5]), 3)
