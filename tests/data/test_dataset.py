from collections import Counter

import pytest
import torch
from checkers import SeedImageGenerator, assert_pickle_round_trip
from torch.utils.data import DataLoader, Subset, TensorDataset

from gdaload import GeneratedOutputError, GenerativeDataset


def real_dataset(n: int = 12, labels: list[int] | None = None) -> TensorDataset:
    y = torch.tensor(labels if labels is not None else [i % 3 for i in range(n)])
    return TensorDataset(torch.zeros(len(y), 1, 4, 4), y)


def synthetic_items(ds: GenerativeDataset) -> list[tuple[torch.Tensor, int]]:
    return [ds[i] for i in range(ds.num_real, len(ds))]


@pytest.mark.parametrize(("ratio", "expected"), [(0.0, 0), (0.5, 6), (1.25, 15), (3.0, 36)])
def test_length_is_real_plus_rounded_ratio(seed_generator, ratio: float, expected: int) -> None:
    ds = GenerativeDataset(real_dataset(12), seed_generator, ratio=ratio)
    assert ds.num_synthetic == expected and len(ds) == 12 + expected


def test_real_indices_return_real_samples(seed_generator) -> None:
    real = real_dataset(6)
    ds = GenerativeDataset(real, seed_generator, ratio=1.0)
    for i in range(6):
        assert torch.equal(ds[i][0], real[i][0]) and ds[i][1] == real[i][1]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("match", {0: 6, 1: 2, 2: 2}),
        ("uniform", {0: 4, 1: 3, 2: 3}),
        ("balance", {0: 0, 1: 5, 2: 5}),
    ],
)
def test_class_policy_counts(seed_generator, policy: str, expected: dict[int, int]) -> None:
    real = real_dataset(labels=[0] * 6 + [1] * 2 + [2] * 2)
    ds = GenerativeDataset(real, seed_generator, ratio=1.0, class_policy=policy)
    labels = [int(y) for _, y in synthetic_items(ds)]
    assert Counter(labels) == Counter({k: v for k, v in expected.items() if v})
    # The image was generated for the label it is served with.
    assert all(seed_generator.label_of(x) == y for x, y in synthetic_items(ds))


def test_same_samples_whatever_batch_size_shuffle_or_workers(seed_generator) -> None:
    ds = GenerativeDataset(real_dataset(12), seed_generator, ratio=1.0, seed=7)
    reference = {i: ds[i][0] for i in range(12, 24)}
    for kwargs in [
        dict(batch_size=1),
        dict(batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0)),
        dict(batch_size=4, num_workers=2),
    ]:
        loader = DataLoader(torch.utils.data.Subset(ds, range(12, 24)), **kwargs)
        seen = torch.cat([x for x, _ in loader])
        expected = torch.stack(list(reference.values()))
        key = lambda t: t.flatten(1).sum(1)  # noqa: E731
        torch.testing.assert_close(seen[key(seen).argsort()], expected[key(expected).argsort()])


def test_set_epoch_gives_fresh_reproducible_samples(seed_generator) -> None:
    ds = GenerativeDataset(real_dataset(6), seed_generator, ratio=1.0, seed=1)
    epoch0 = torch.stack([x for x, _ in synthetic_items(ds)])
    ds.set_epoch(1)
    epoch1 = torch.stack([x for x, _ in synthetic_items(ds)])
    assert not torch.allclose(epoch0, epoch1)
    other = GenerativeDataset(real_dataset(6), seed_generator, ratio=1.0, seed=1)
    other.load_state_dict(ds.state_dict())
    torch.testing.assert_close(torch.stack([x for x, _ in synthetic_items(other)]), epoch1)
    assert not torch.allclose(
        epoch0,
        torch.stack(
            [
                x
                for x, _ in synthetic_items(
                    GenerativeDataset(real_dataset(6), seed_generator, ratio=1.0, seed=2)
                )
            ]
        ),
    )


def test_works_with_real_diffusion_generator_in_workers(class_generator) -> None:
    real = TensorDataset(torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2]))
    ds = GenerativeDataset(real, class_generator, ratio=0.5, seed=0, return_mask=True)
    batches = list(DataLoader(ds, batch_size=3, num_workers=2))
    x = torch.cat([b[0] for b in batches])
    mask = torch.cat([b[2] for b in batches])
    assert x.shape == (9, 1, 8, 8) and mask.tolist() == [False] * 6 + [True] * 3
    torch.testing.assert_close(
        x[6:], torch.stack([ds[i][0] for i in range(6, 9)]), atol=1e-4, rtol=0
    )


class CudaReportingGenerator(SeedImageGenerator):
    @property
    def device(self) -> torch.device:
        return torch.device("cuda")


@pytest.mark.reliability
def test_cuda_generator_in_worker_points_to_generative_loader() -> None:
    ds = GenerativeDataset(real_dataset(4), CudaReportingGenerator(), ratio=1.0)
    with pytest.raises(RuntimeError, match="GenerativeLoader"):
        list(DataLoader(ds, batch_size=4, num_workers=1))


class BrokenGenerator(SeedImageGenerator):
    def generate(self, labels, seeds):
        return super().generate(labels, seeds) * 255


@pytest.mark.reliability
def test_out_of_range_output_is_caught(seed_generator) -> None:
    ds = GenerativeDataset(real_dataset(4), BrokenGenerator(), ratio=1.0)
    with pytest.raises(GeneratedOutputError, match="expected \\[0, 1\\]"):
        ds[5]


@pytest.mark.reliability
def test_mismatched_synthetic_shape_is_explained() -> None:
    ds = GenerativeDataset(real_dataset(4), SeedImageGenerator(3, (3, 4, 4)), ratio=1.0)
    with pytest.raises(ValueError, match="synthetic_transform="):
        ds[4]
    fixed = GenerativeDataset(
        real_dataset(4),
        SeedImageGenerator(3, (3, 4, 4)),
        ratio=1.0,
        synthetic_transform=lambda x: x.mean(0, keepdim=True),
    )
    assert fixed[4][0].shape == (1, 4, 4)


@pytest.mark.reliability
def test_bad_input_raises(seed_generator) -> None:
    with pytest.raises(ValueError, match="ratio must be"):
        GenerativeDataset(real_dataset(), seed_generator, ratio=-1)
    with pytest.raises(ValueError, match="cannot produce"):
        GenerativeDataset(real_dataset(labels=[0, 7]), seed_generator)
    with pytest.raises(TypeError, match="gdaload.Generator"):
        GenerativeDataset(real_dataset(), object())
    with pytest.raises(ValueError, match="valid ones"):
        GenerativeDataset(real_dataset(), seed_generator, class_policy="x")
    with pytest.raises(IndexError):
        GenerativeDataset(real_dataset(3), seed_generator, ratio=1.0)[6]


EMPTY = {
    "TensorDataset": TensorDataset(torch.empty(0, 1, 4, 4), torch.empty(0, dtype=torch.long)),
    "Subset": Subset(TensorDataset(torch.rand(5, 1, 4, 4), torch.arange(5) % 3), []),
}


@pytest.mark.reliability
@pytest.mark.parametrize("class_policy", ["match", "uniform"])
@pytest.mark.parametrize("name", list(EMPTY))
def test_empty_real_dataset_is_refused(seed_generator, name, class_policy) -> None:
    message = rf"GenerativeDataset got an empty real dataset \({name} of length 0\).*split"
    with pytest.raises(ValueError, match=message):
        GenerativeDataset(EMPTY[name], seed_generator, ratio=1, class_policy=class_policy)
    with pytest.raises(ValueError, match=message):
        GenerativeDataset(EMPTY[name], seed_generator, ratio=1, labels=[])


def test_dataset_pickles(seed_generator) -> None:
    ds = GenerativeDataset(real_dataset(6), seed_generator, ratio=1.0)
    assert_pickle_round_trip(ds, lambda a, b: torch.testing.assert_close(a[8][0], b[8][0]))


def test_set_epoch_reaches_persistent_workers(seed_generator) -> None:
    real = real_dataset(6)
    ds = GenerativeDataset(real, seed_generator, ratio=1.0, seed=2)
    loader = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    served = {}
    for epoch in (0, 1, 2):
        ds.set_epoch(epoch)
        served[epoch] = torch.cat([x for x, _ in loader])[6:]
    for epoch, images in served.items():
        fresh = GenerativeDataset(real, seed_generator, ratio=1.0, seed=2)
        fresh.set_epoch(epoch)
        assert torch.equal(images, torch.stack([fresh[i][0] for i in range(6, 12)]))
    assert not torch.equal(served[0], served[1])  # the workers did not keep epoch 0


def test_synthetic_items_read_the_real_example_once(seed_generator) -> None:
    class CountingReads(TensorDataset):
        reads = 0

        def __getitem__(self, index):
            type(self).reads += 1
            return super().__getitem__(index)

    real = CountingReads(torch.zeros(4, 1, 4, 4), torch.tensor([0, 1, 2, 0]))
    ds = GenerativeDataset(real, seed_generator, ratio=1.5, labels=[0, 1, 2, 0])
    labels = [ds[i][1] for i in range(4, len(ds))]
    assert CountingReads.reads == 1  # one real sample, read once for its input and label type
    assert all(isinstance(y, torch.Tensor) and y.dtype == torch.int64 for y in labels)
