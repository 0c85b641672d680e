import gc
from collections import Counter

import pytest
import torch
from accelerate import Accelerator
from checkers import SeedImageGenerator, assert_pickle_round_trip
from torch.utils.data import DataLoader, Subset, TensorDataset

import gdaload.provenance as provenance
from gdaload import GeneratedOutputError, GenerativeLoader
from gdaload.provenance import synthetic_rows


def real_loader(n: int = 23, batch_size: int = 5, **kwargs) -> DataLoader:
    ds = TensorDataset(torch.zeros(n, 1, 4, 4), torch.tensor([i % 3 for i in range(n)]))
    return DataLoader(ds, batch_size=batch_size, **kwargs)


def synthetic_of(loader: GenerativeLoader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for x, y, mask in loader:
        xs.append(x[mask])
        ys.append(y[mask])
    return torch.cat(xs), torch.cat(ys)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0, 2.5])
def test_ratio_exact_per_epoch_and_spread_evenly(seed_generator, ratio: float) -> None:
    loader = GenerativeLoader(real_loader(23, 5), seed_generator, ratio=ratio, return_mask=True)
    for _ in range(2):
        per_batch = [(int((~m).sum()), int(m.sum())) for _, _, m in loader]
        assert sum(r for r, _ in per_batch) == 23
        assert sum(s for _, s in per_batch) == round(ratio * 23)
        for real, synthetic in per_batch:
            assert abs(synthetic - ratio * real) <= 1


def test_mask_marks_appended_synthetic_samples(seed_generator) -> None:
    for x, y, mask in GenerativeLoader(
        real_loader(6, 3), seed_generator, ratio=1.0, return_mask=True
    ):
        assert mask.tolist() == [False] * 3 + [True] * 3
        assert (x[~mask] == 0).all()
        assert all(
            seed_generator.label_of(img) == int(lbl)
            for img, lbl in zip(x[mask], y[mask], strict=True)
        )


@pytest.mark.parametrize("ratio", [0.0, 0.5])
@pytest.mark.parametrize("return_mask", [False, True])
def test_batches_are_marked_with_their_mask(seed_generator, ratio, return_mask) -> None:
    masks = [
        m
        for _, _, m in GenerativeLoader(
            real_loader(7, 3), seed_generator, ratio=ratio, return_mask=True
        )
    ]
    assert any(m.any() for m in masks) == (ratio > 0)
    loader = GenerativeLoader(
        real_loader(7, 3), seed_generator, ratio=ratio, return_mask=return_mask
    )
    for batch, mask in zip(loader, masks, strict=True):
        x, y = batch[:2]
        # GenMix reads these marks when it is called without a mask.
        assert torch.equal(synthetic_rows(x), mask) and torch.equal(synthetic_rows(y), mask)
        if return_mask:
            assert synthetic_rows(x) is batch[2]


def test_marks_do_not_outlive_the_batches(seed_generator) -> None:
    before = len(provenance._marks)
    loader = GenerativeLoader(real_loader(60, 2), seed_generator, ratio=1.0)
    most = 0
    for _ in range(3):
        for batch in loader:
            assert synthetic_rows(batch[0]) is not None
            most = max(most, len(provenance._marks) - before)
    assert most == 2  # the batch in hand, inputs and labels: no growth over 90 batches
    del batch
    gc.collect()
    assert len(provenance._marks) == before


def test_same_synthetic_samples_whatever_batch_size(seed_generator) -> None:
    runs = [
        synthetic_of(
            GenerativeLoader(
                real_loader(24, bs), seed_generator, ratio=1.5, seed=3, return_mask=True
            )
        )
        for bs in (1, 4, 7, 24)
    ]
    for x, y in runs[1:]:
        torch.testing.assert_close(x, runs[0][0])
        assert torch.equal(y, runs[0][1])


def test_fresh_samples_each_epoch_and_set_epoch_replays(seed_generator) -> None:
    loader = GenerativeLoader(real_loader(12, 4), seed_generator, ratio=1.0, return_mask=True)
    first, second = synthetic_of(loader)[0], synthetic_of(loader)[0]
    assert loader.epoch == 2 and not torch.allclose(first, second)
    loader.set_epoch(0)
    torch.testing.assert_close(synthetic_of(loader)[0], first)
    resumed = GenerativeLoader(real_loader(12, 4), seed_generator, ratio=1.0, return_mask=True)
    resumed.load_state_dict({"epoch": 1, "seed": 0})
    torch.testing.assert_close(synthetic_of(resumed)[0], second)


def test_class_policy_uses_loader_dataset_labels(seed_generator) -> None:
    ds = TensorDataset(torch.zeros(12, 1, 4, 4), torch.tensor([0] * 8 + [1] * 2 + [2] * 2))
    loader = GenerativeLoader(
        DataLoader(ds, batch_size=4),
        seed_generator,
        ratio=1.0,
        class_policy="balance",
        return_mask=True,
    )
    _, y = synthetic_of(loader)
    assert Counter(y.tolist()) == Counter({1: 6, 2: 6})


@pytest.mark.reliability
def test_uniform_without_dataset_and_policy_error(seed_generator) -> None:
    batches = [(torch.zeros(3, 1, 4, 4), torch.tensor([0, 1, 2]))] * 4
    _, y = synthetic_of(
        GenerativeLoader(
            batches, seed_generator, ratio=1.0, class_policy="uniform", return_mask=True
        )
    )
    assert Counter(y.tolist()) == Counter({0: 4, 1: 4, 2: 4})
    with pytest.raises(ValueError, match="pass labels="):
        GenerativeLoader(batches, seed_generator, ratio=1.0)
    _, y = synthetic_of(
        GenerativeLoader(batches, seed_generator, ratio=1.0, labels=[0] * 12, return_mask=True)
    )
    assert set(y.tolist()) == {0}


def test_wraps_accelerate_prepared_loader(seed_generator) -> None:
    accelerator = Accelerator(cpu=True)
    prepared = accelerator.prepare(real_loader(10, 4))
    loader = GenerativeLoader(prepared, seed_generator, ratio=0.5, return_mask=True)
    batches = list(loader)
    assert sum(int(m.sum()) for _, _, m in batches) == 5
    assert all(x.device == accelerator.device for x, _, _ in batches)
    assert loader.dataset is prepared.dataset  # attributes pass through


def test_dtype_and_device_of_real_batches_are_kept(seed_generator) -> None:
    batches = [
        (torch.zeros(2, 1, 4, 4, dtype=torch.float64), torch.tensor([0, 1], dtype=torch.int32))
    ]
    x, y = next(iter(GenerativeLoader(batches, seed_generator, ratio=1.0, labels=[0, 1])))
    assert x.dtype == torch.float64 and y.dtype == torch.int32 and len(x) == 4


@pytest.mark.reliability
def test_synthetic_transform_and_shape_mismatch(seed_generator) -> None:
    gen = SeedImageGenerator(3, (3, 4, 4))
    with pytest.raises(ValueError, match="synthetic_transform="):
        next(iter(GenerativeLoader(real_loader(), gen, ratio=1.0)))
    x, _ = next(
        iter(
            GenerativeLoader(
                real_loader(), gen, ratio=1.0, synthetic_transform=lambda b: b.mean(1, keepdim=True)
            )
        )
    )
    assert x.shape[1:] == (1, 4, 4)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("batches", "error", "match"),
    [
        ([torch.zeros(2, 1, 4, 4)], TypeError, "batches of \\(inputs, labels\\)"),
        ([(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), 0)], TypeError, "of length 3"),
        ([(torch.zeros(2, 1, 4, 4), torch.eye(2))], ValueError, "apply soft-label transforms"),
        (
            [{"image": torch.zeros(2, 1, 4, 4), "label": torch.tensor([0, 1])}],
            TypeError,
            "got dict\\. Adapt the loader",
        ),
    ],
    ids=["tensor", "triple", "soft-labels", "dict"],
)
def test_bad_batches_are_explained(seed_generator, batches, error, match) -> None:
    with pytest.raises(error, match=match):
        next(iter(GenerativeLoader(batches, seed_generator, ratio=1.0, class_policy="uniform")))


@pytest.mark.reliability
def test_bad_arguments(seed_generator) -> None:
    for ratio in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ratio must be"):
            GenerativeLoader(real_loader(), seed_generator, ratio=ratio)
    with pytest.raises(ValueError, match="cannot produce"):
        GenerativeLoader(real_loader(), SeedImageGenerator(num_classes=2), ratio=1.0)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        GenerativeLoader(real_loader(), seed_generator).set_epoch(-1)


@pytest.mark.parametrize(
    "loader, what",
    [
        (
            DataLoader(TensorDataset(torch.empty(0, 1, 4, 4), torch.empty(0, dtype=torch.long))),
            "TensorDataset",
        ),
        (DataLoader(Subset(real_loader().dataset, []), batch_size=4), "Subset"),
        ([], "list"),
    ],
    ids=["TensorDataset", "Subset", "list"],
)
@pytest.mark.reliability
@pytest.mark.parametrize("class_policy", ["match", "uniform"])
def test_empty_real_dataset_is_refused(seed_generator, loader, what, class_policy) -> None:
    with pytest.raises(
        ValueError, match=rf"GenerativeLoader got an empty real dataset \({what} of length 0\)"
    ):
        GenerativeLoader(loader, seed_generator, class_policy=class_policy)


class NaNGenerator(SeedImageGenerator):
    def generate(self, labels, seeds):
        return super().generate(labels, seeds) * float("nan")


@pytest.mark.reliability
def test_nan_output_is_caught() -> None:
    with pytest.raises(GeneratedOutputError, match="NaN or Inf"):
        next(iter(GenerativeLoader(real_loader(), NaNGenerator(), ratio=1.0)))


def test_disjoint_indices_per_rank(seed_generator, monkeypatch: pytest.MonkeyPatch) -> None:
    import gdaload.data.loader as loader_module

    seen = []
    all_labels = [i % 3 for i in range(12)]  # ranks shard the batches, not the dataset's labels
    for rank in range(2):
        monkeypatch.setattr(loader_module, "_distributed_rank_world", lambda r=rank: (r, 2))
        seen.append(
            synthetic_of(
                GenerativeLoader(
                    real_loader(6, 3),
                    seed_generator,
                    ratio=1.0,
                    labels=all_labels,
                    return_mask=True,
                )
            )[0]
        )
    monkeypatch.undo()
    single = synthetic_of(
        GenerativeLoader(real_loader(12, 3), seed_generator, ratio=1.0, return_mask=True)
    )[0]
    both = torch.cat(seen)
    assert not any(torch.allclose(a, b) for a in seen[0] for b in seen[1])
    key = lambda t: t.flatten(1).sum(1)  # noqa: E731
    torch.testing.assert_close(both[key(both).argsort()], single[key(single).argsort()])


def test_loader_pickles_and_reports_stats(seed_generator) -> None:
    loader = GenerativeLoader(real_loader(10, 5), seed_generator, ratio=1.0)
    list(loader)
    stats = loader.stats()
    assert stats["real"] == 10 and stats["synthetic"] == 10 and stats["batches"] == 2
    assert_pickle_round_trip(loader)
