"""Loaders whose real order is visible, and checkers of served epochs: shared by the
resume and prefetch tests of GenerativeLoader."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from gdaload import GenerativeLoader

Batches = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def dataset(n: int = 23) -> TensorDataset:
    # Each real image holds its index (scaled into [0, 1]), so the real order is visible.
    images = (torch.arange(n, dtype=torch.float32) / n).view(n, 1, 1, 1).expand(n, 1, 4, 4)
    return TensorDataset(images.clone(), torch.tensor([i % 3 for i in range(n)]))


def plain(shuffle: bool = False) -> DataLoader:
    return DataLoader(dataset(), batch_size=5, shuffle=shuffle)


def stateful(seed: int, num_workers: int = 0) -> StatefulDataLoader:
    return StatefulDataLoader(
        dataset(),
        batch_size=5,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=num_workers,
    )


def take_epoch(loader: GenerativeLoader, stop: int | None = None) -> tuple[Batches, dict]:
    """Batches of one epoch, and the state saved after ``stop`` of them (loop left there)."""
    out: Batches = []
    state: dict = {}
    for batch in loader:
        out.append(batch)
        if stop is not None and len(out) == stop:
            state = loader.state_dict()
            break
    return out, state


def assert_same(got: Batches, expected: Batches) -> None:
    assert len(got) == len(expected)
    for (x, y, m), (ex, ey, em) in zip(got, expected, strict=True):
        torch.testing.assert_close(x, ex, rtol=0, atol=0)
        assert torch.equal(y, ey) and torch.equal(m, em)
