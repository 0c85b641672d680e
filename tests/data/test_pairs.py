"""The wrappers over segmentation data: synthetic (image, mask) pairs at the exact ratio,
deterministic, stored losslessly, and bad input refused."""

from collections import Counter

import pytest
import torch
from tiny_models import seeded_masks, tiny_joint_diffusion, tiny_mask_diffusion
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision import tv_tensors

from gdaload import GenerativeDataset, GenerativeLoader
from gdaload.cache import SampleStore


def real_pairs(n: int = 12) -> TensorDataset:
    """``(image (1, 8, 8), mask (8, 8) int64, label)``; class ``c`` holds labels 0, c + 1."""
    labels = [i % 3 for i in range(n)]
    masks = seeded_masks(labels, list(range(n)))
    return TensorDataset(masks.unsqueeze(1).float() / 3, masks, torch.tensor(labels))


@pytest.fixture(scope="module")
def mask_gen():
    return tiny_mask_diffusion(num_classes=3, num_mask_classes=4)


@pytest.fixture(scope="module")
def joint_gen():
    return tiny_joint_diffusion(num_classes=3, num_mask_classes=4)


def test_dataset_serves_pairs_with_real_masks_of_their_class(mask_gen) -> None:
    real = real_pairs(12)
    ds = GenerativeDataset(real, mask_gen, ratio=0.5, seed=3)
    assert len(ds) == 18
    x, masks, y = next(iter(DataLoader(ds, batch_size=18)))
    assert x.shape == (18, 1, 8, 8) and masks.shape == (18, 8, 8) and masks.dtype == torch.int64
    assert Counter(y[12:].tolist()) == Counter({0: 2, 1: 2, 2: 2})  # class policy "match"
    real_masks = real.tensors[1]
    for mask, label in zip(masks[12:], y[12:].tolist(), strict=True):
        same_class = real_masks[real.tensors[2] == label]
        assert any(torch.equal(mask, m) for m in same_class)


def test_dataset_pairs_do_not_depend_on_batching(joint_gen) -> None:
    ds = GenerativeDataset(real_pairs(8), joint_gen, ratio=1.0, seed=1)
    one = [ds[i] for i in range(8, 16)]
    _, masks, _ = next(iter(DataLoader(ds, batch_size=16, shuffle=False)))
    assert all(torch.equal(m, item[1]) for m, item in zip(masks[8:], one, strict=True))
    in_workers = torch.cat([m for _, m, _ in DataLoader(ds, batch_size=4, num_workers=2)])
    assert torch.equal(in_workers, masks)
    again = GenerativeDataset(real_pairs(8), joint_gen, ratio=1.0, seed=1)
    assert all(torch.equal(again[i][0], one[i - 8][0]) for i in range(8, 16))


def test_dataset_keeps_the_sample_structure() -> None:
    # (image, tv_tensors.Mask uint8) samples without labels: labels= gives the classes.
    real = [(torch.zeros(1, 8, 8), tv_tensors.Mask(torch.zeros(8, 8, dtype=torch.uint8)))] * 4
    gen = tiny_mask_diffusion(num_classes=3, num_mask_classes=4)
    ds = GenerativeDataset(real, gen, ratio=0.5, labels=[0, 1, 0, 1])
    image, mask = ds[4]
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.uint8
    assert image.shape == (1, 8, 8)


def test_store_keeps_masks_exactly_and_per_generator(tmp_path, mask_gen, joint_gen) -> None:
    ds = GenerativeDataset(real_pairs(6), mask_gen, ratio=1.0, store=tmp_path)
    assert ds.fill_store(progress=False) == 6
    made = [ds[i] for i in range(6, 12)]
    again = GenerativeDataset(real_pairs(6), mask_gen, ratio=1.0, store=tmp_path)
    read = [again[i] for i in range(6, 12)]
    assert again._engine_stats.generated == 0 and again._engine_stats.cache_hits == 6
    for a, b in zip(made, read, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    masks = SampleStore(tmp_path, f"{again.generator.config_hash()}masks", content="masks")
    assert len(masks) == 6
    # Another generator, or the same one drawing other real masks, is not served them.
    other = GenerativeDataset(real_pairs(6), joint_gen, ratio=1.0, store=tmp_path)
    other[6]
    assert other._engine_stats.generated == 1
    shifted = GenerativeDataset(real_pairs(9), mask_gen, ratio=1.0, store=tmp_path)
    assert shifted.generator.config_hash() != again.generator.config_hash()


def test_loader_appends_pairs_at_the_ratio(mask_gen) -> None:
    loader = GenerativeLoader(
        DataLoader(real_pairs(12), batch_size=4), mask_gen, ratio=0.5, return_mask=True
    )
    batches = list(loader)
    assert sum(int(s.sum()) for *_, s in batches) == 6
    for x, masks, y, synthetic in batches:
        assert len(x) == len(masks) == len(y) == len(synthetic)
        assert masks.dtype == torch.int64 and masks.shape[1:] == (8, 8)
        for mask, label in zip(masks[synthetic], y[synthetic].tolist(), strict=True):
            assert set(mask.unique().tolist()) <= {0, label + 1}
    replaced = list(
        GenerativeLoader(
            DataLoader(real_pairs(12), batch_size=4), mask_gen, ratio=0.5, mode="replace"
        )
    )
    assert all(len(x) == len(m) == len(y) == 4 for x, m, y in replaced)


# ---------------------------------------------------------------------- bad input
class Indexed(Dataset):
    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


@pytest.mark.reliability
def test_mask_of_another_size_is_refused(mask_gen) -> None:
    real = Indexed([(torch.zeros(1, 8, 8), torch.zeros(4, 4, dtype=torch.long), 0)])
    with pytest.raises(ValueError, match="nearest-neighbour"):
        GenerativeDataset(real, mask_gen)
    batch = (torch.zeros(2, 1, 8, 8), torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2).long())
    loader = GenerativeLoader([batch], tiny_joint_diffusion(), labels=[0, 0])
    with pytest.raises(ValueError, match="nearest-neighbour"):
        next(iter(loader))


@pytest.mark.reliability
def test_mask_labels_outside_the_generator_are_refused(mask_gen) -> None:
    real = real_pairs(3)
    real.tensors[1][0, 0, 0] = 9
    with pytest.raises(ValueError, match=r"labels \[9\] outside the generator's mask classes"):
        GenerativeDataset(real, mask_gen)


@pytest.mark.reliability
def test_float_masks_are_refused(mask_gen) -> None:
    real = Indexed([(torch.zeros(1, 8, 8), torch.zeros(8, 8), 0)])
    with pytest.raises(ValueError, match="integer labels"):
        GenerativeDataset(real, mask_gen)


@pytest.mark.reliability
def test_mask_conditioned_generator_without_masks_is_refused(mask_gen) -> None:
    batch = (torch.zeros(2, 1, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), torch.zeros(2).long())
    with pytest.raises(ValueError, match="no real masks"):
        GenerativeLoader([batch], mask_gen, labels=[0, 0])
    with pytest.raises(ValueError, match="has no mask"):
        GenerativeDataset(TensorDataset(torch.zeros(3, 1, 8, 8), torch.zeros(3).long()), mask_gen)


@pytest.mark.reliability
def test_samples_with_and_without_masks_are_refused(mask_gen, seed_generator) -> None:
    with_mask = (torch.zeros(1, 8, 8), torch.zeros(8, 8, dtype=torch.long), torch.tensor(0))
    without = (torch.zeros(1, 8, 8), None, torch.tensor(0))
    ds = GenerativeDataset(
        Indexed([with_mask, with_mask, without]), tiny_joint_diffusion(), labels=[0, 0, 0]
    )
    with pytest.raises(ValueError, match="real sample 2 has no mask"):
        ds.__getitems__([0, 2])
    ragged = (torch.zeros(2, 1, 8, 8), [torch.zeros(8, 8), None], torch.zeros(2).long())
    with pytest.raises(ValueError, match="mixes samples with and without masks"):
        next(iter(GenerativeLoader([ragged], tiny_joint_diffusion(), labels=[0, 0])))
    masked = (
        torch.zeros(2, 1, 4, 4),
        torch.zeros(2, 4, 4, dtype=torch.long),
        torch.zeros(2).long(),
    )
    with pytest.raises(TypeError, match="synthetic rows would have no masks"):
        next(iter(GenerativeLoader([masked], seed_generator, labels=[0, 0])))


@pytest.mark.reliability
def test_pairs_need_the_sync_engine(joint_gen) -> None:
    with pytest.raises(ValueError, match="engine='sync'"):
        GenerativeLoader(DataLoader(real_pairs(3)), joint_gen, engine="thread")


def test_loader_reads_stored_pairs_back(tmp_path, joint_gen) -> None:
    def run() -> tuple[list, GenerativeLoader]:
        loader = GenerativeLoader(
            DataLoader(real_pairs(8), batch_size=4), joint_gen, ratio=0.5, store=tmp_path
        )
        return list(loader), loader

    first, _ = run()
    second, loader = run()
    assert loader.stats()["generated"] == 0 and loader.stats()["cache_hits"] == 4
    for (x1, m1, y1), (x2, m2, y2) in zip(first, second, strict=True):
        assert torch.equal(x1, x2) and torch.equal(m1, m2) and torch.equal(y1, y2)
