"""Batches by step: a resumed run draws what a run straight through draws."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from gdaload.train.batches import EpochBatches, permuted_batch


def data(n: int = 10) -> TensorDataset:
    return TensorDataset(torch.arange(n))


def test_epochs_are_orders_cut_into_full_batches() -> None:
    batches = EpochBatches(data(), batch_size=4, seed=0)
    assert batches.per_epoch == 2
    epochs = [torch.cat([batches(s)[0] for s in range(e * 2, e * 2 + 2)]) for e in range(3)]
    for items in epochs:
        assert len(items) == 8 and len(set(items.tolist())) == 8  # two left out
    assert not torch.equal(epochs[0], epochs[1])


def test_any_step_can_be_looked_up_first() -> None:
    straight = EpochBatches(data(), batch_size=3, seed=5)
    expected = [straight(step)[0] for step in range(9)]
    for start in range(9):
        resumed = EpochBatches(data(), batch_size=3, seed=5)
        assert all(torch.equal(resumed(s)[0], expected[s]) for s in range(start, 9))
    assert not torch.equal(EpochBatches(data(), 3, seed=6)(0)[0], expected[0])


@pytest.mark.reliability
def test_a_batch_larger_than_the_data_is_refused() -> None:
    with pytest.raises(ValueError, match=r"batch_size \(11\) is larger than the dataset"):
        EpochBatches(data(), batch_size=11, seed=0)


def test_permuted_batches_cover_an_epoch_and_split_across_processes() -> None:
    epoch = torch.cat([permuted_batch(12, 4, seed=0, tag=1, step=s) for s in range(3)])
    assert sorted(epoch.tolist()) == list(range(12))
    assert torch.equal(permuted_batch(12, 4, 0, 1, 4), permuted_batch(12, 4, 0, 1, 4))
    assert not torch.equal(permuted_batch(12, 4, 0, 0, 0), permuted_batch(12, 4, 0, 1, 0))
    shares = [permuted_batch(12, 4, 0, 1, 0, rank, 2) for rank in range(2)]
    assert torch.equal(torch.stack(shares, 1).flatten(), permuted_batch(12, 4, 0, 1, 0))
    # Fewer items than a batch: every step is the whole (reordered) data.
    assert sorted(permuted_batch(3, 8, seed=0, tag=1, step=5).tolist()) == [0, 1, 2]
