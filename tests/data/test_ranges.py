"""Real and synthetic inputs on one scale: both wrappers refuse to mix two scales."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

from gdaload import GenerativeDataset, GenerativeLoader
from gdaload.data.ranges import check_same_scale

IMAGENET = v2.Normalize([0.485], [0.229])


def real_images(n: int, scale: str) -> torch.Tensor:
    x = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    if scale == "[-1, 1]":
        return x * 2 - 1
    if scale == "imagenet":
        return IMAGENET(x)
    if scale == "0-255":
        return x * 255
    return x


def real_set(scale: str, n: int = 6) -> TensorDataset:
    return TensorDataset(real_images(n, scale), torch.tensor([i % 3 for i in range(n)]))


@pytest.mark.reliability
@pytest.mark.parametrize("scale", ["[-1, 1]", "imagenet", "0-255"])
def test_the_loader_refuses_real_inputs_on_another_scale(seed_generator, scale: str) -> None:
    loader = GenerativeLoader(DataLoader(real_set(scale), batch_size=3), seed_generator)
    with pytest.raises(ValueError, match="two scales.*synthetic_transform=v2.Normalize"):
        next(iter(loader))


@pytest.mark.reliability
@pytest.mark.parametrize("scale", ["[-1, 1]", "imagenet", "0-255"])
def test_the_dataset_refuses_real_inputs_on_another_scale(seed_generator, scale: str) -> None:
    ds = GenerativeDataset(real_set(scale), seed_generator)
    with pytest.raises(ValueError, match="two scales"):
        ds[len(ds) - 1]


@pytest.mark.parametrize(
    ("scale", "transform"),
    [("[0, 1]", None), ("[-1, 1]", v2.Normalize([0.5], [0.5])), ("imagenet", IMAGENET)],
)
def test_the_same_normalisation_on_both_passes(seed_generator, scale, transform) -> None:
    loader = GenerativeLoader(
        DataLoader(real_set(scale), batch_size=3), seed_generator, synthetic_transform=transform
    )
    assert sum(len(y) for _, y in loader) == 12
    ds = GenerativeDataset(real_set(scale), seed_generator, synthetic_transform=transform)
    assert ds[len(ds) - 1][0].shape == (1, 4, 4)


@pytest.mark.reliability
def test_dark_or_empty_batches_are_not_another_scale() -> None:
    check_same_scale(torch.full((2, 1, 4, 4), 0.1), torch.rand(2, 1, 4, 4), "X")
    check_same_scale(torch.empty(0, 1, 4, 4), torch.rand(2, 1, 4, 4) * 255, "X")
    with pytest.raises(ValueError, match="real inputs have values in \\[0, 0\\.5\\]"):
        check_same_scale(
            torch.full((2, 1, 4, 4), 0.5).index_fill(0, torch.tensor([0]), 0),
            torch.rand(2, 1, 4, 4) * 2 - 1,
            "X",
        )


def test_synthetic_items_batch_with_tensor_dataset_items(seed_generator) -> None:
    real = TensorDataset(torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
    ds = GenerativeDataset(real, seed_generator, ratio=1.0)
    assert type(ds[len(ds) - 1][1]) is type(ds[0][1]) and ds[len(ds) - 1][1].dtype == torch.int64
    shuffled = DataLoader(
        ds, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    labels = torch.cat([y for _, y in shuffled])
    assert len(labels) == 12 and labels.dtype == torch.int64
