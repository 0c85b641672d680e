import torch
from torch.utils.data import Dataset, TensorDataset

from gdaload.bench.adapters import BatchAugment, dataset_tensors


def test_batch_augment_is_reproducible_and_keeps_the_global_rng() -> None:
    batches = [(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 2]))] * 2
    noisy = BatchAugment(batches, lambda x: x + torch.rand(x.shape), seed=0)
    state = torch.get_rng_state()
    first, second = list(noisy), list(noisy)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(first[0][0], first[1][0])  # batches differ
    assert not torch.equal(first[0][0], second[0][0])  # epochs differ
    noisy.set_epoch(0)
    assert torch.equal(list(noisy)[1][0], first[1][0])
    assert torch.equal(first[0][1], batches[0][1])


class Pairs(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


def test_dataset_tensors_reads_any_dataset_of_pairs() -> None:
    x, y = torch.rand(5, 1, 2, 2), torch.tensor([2, 0, 1, 1, 0], dtype=torch.int32)
    same_x, same_y = dataset_tensors(TensorDataset(x, y))
    assert same_x is x and same_y.dtype == torch.int64 and torch.equal(same_y, y.long())
    read_x, read_y = dataset_tensors(Pairs(x, y), batch_size=2)
    assert torch.equal(read_x, x) and torch.equal(read_y, y.long())
