import torch
from torch import nn
from torch.utils.data import TensorDataset

from gdaload.bench.classifier import accuracy, digits_cnn, fit_classifier, predict, view_cnn


class EpochBatches:
    """Two fixed batches that record the epochs they are told."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.batches = [(torch.rand(4, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 3]))] * 2
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __iter__(self):
        return iter(self.batches)


def test_cnns_map_their_images_to_logits() -> None:
    assert digits_cnn(10)(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    assert view_cnn(16)(torch.rand(2, 3, 32, 32)).shape == (2, 16)


def test_fit_classifier_is_repeatable_tells_the_epoch_and_keeps_the_global_rng() -> None:
    batches = EpochBatches()
    state = torch.get_rng_state()
    first = fit_classifier(digits_cnn, batches, epochs=2, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert batches.epochs == [0, 1]
    second = fit_classifier(digits_cnn, EpochBatches(), epochs=2, seed=3)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_predict_and_accuracy_agree() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 0, 1, 1])
    preds = predict(model, x)
    assert preds.shape == (5,) and not model.training
    assert accuracy(model, TensorDataset(x, y)) == float((preds == y).float().mean())
