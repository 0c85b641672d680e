"""SyntheticSpec: the checks, store and epoch state GenerativeLoader and GenerativeDataset
share, and the wrappers reading their settings through it."""

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from checkers import SeedImageGenerator
from torch.utils.data import DataLoader, TensorDataset

from gdaload import GenerativeDataset, GenerativeLoader, GeneratorKindError, SeedPlan
from gdaload.cache import SampleStore
from gdaload.data import SyntheticSpec
from gdaload.data.spec import open_store
from gdaload.generators.base import MultiViewGenerator


class Flip(MultiViewGenerator):
    num_classes, image_shape, num_views = 3, (1, 4, 4), 2

    def generate(self, labels, seeds, *, source=None, strength=1.0):
        return self.novel_views(source, seeds)[:, 0]

    def novel_views(self, source: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        return source.flip(-1).unsqueeze(1)

    @property
    def config(self):
        return {"kind": "flip"}


class CountingLabels:
    """A label source that records whether it was read."""

    def __init__(self, labels: list[int]) -> None:
        self.labels, self.reads = labels, 0

    def __call__(self) -> list[int]:
        self.reads += 1
        return self.labels


def test_settings_are_checked_and_kept(seed_generator) -> None:
    spec = SyntheticSpec("GenerativeLoader", seed_generator, ratio=0.5, seed=4, labels=[0, 0, 1, 2])
    assert spec.ratio == 0.5 and spec.plan.seed == 4 and spec.class_policy == "match"
    assert spec.class_counts.tolist() == [2, 1, 1] and spec.store is None and spec.epoch == 0
    assert spec.synthetic_count(3) == 2 and spec.synthetic_count(1) == 1  # halves round up
    assert "ratio=0.5" in repr(spec)


@pytest.mark.reliability
def test_checks_run_in_order_and_labels_are_read_last(seed_generator) -> None:
    labels = CountingLabels([0, 1, 2])
    cases = [
        (dict(generator=Flip()), GeneratorKindError, "multi-view generator"),
        (dict(generator=object()), GeneratorKindError, "must be a gdaload.Generator"),
        (dict(class_policy="x", ratio=-1), ValueError, "unknown class_policy"),
        (dict(ratio=-1, seed=-1), ValueError, "ratio must be"),
        (dict(seed=-1), ValueError, "seed must be a non-negative integer"),
    ]
    for kwargs, error, match in cases:
        args = {"generator": seed_generator, **kwargs}
        with pytest.raises(error, match=match):
            SyntheticSpec("GenerativeDataset", labels=labels, **args)
    assert labels.reads == 0  # a slow label read never hides a cheap mistake
    assert SyntheticSpec("X", seed_generator, labels=labels).class_counts.tolist() == [1, 1, 1]
    assert labels.reads == 1


@pytest.mark.reliability
def test_labels_may_be_missing_for_uniform_only(seed_generator) -> None:
    assert SyntheticSpec("X", seed_generator, class_policy="uniform").class_counts is None
    with pytest.raises(ValueError, match="pass labels=\\[...\\] or use class_policy='uniform'"):
        SyntheticSpec("X", seed_generator, labels=lambda: None)
    with pytest.raises(ValueError, match="cannot produce"):
        SyntheticSpec("X", seed_generator, labels=torch.tensor([0, 5]))


@pytest.mark.reliability
@pytest.mark.parametrize(
    "labels",
    [[0.0, 1.7, 2.0], [True, False, True], torch.tensor([0.0, 1.0]), [[0, 1], [1, 0]]],
    ids=["floats", "booleans", "float-tensor", "one-hot"],
)
@pytest.mark.parametrize("wrapper", ["spec", "loader", "dataset"])
def test_labels_that_would_be_cast_are_refused(seed_generator, labels, wrapper: str) -> None:
    real = TensorDataset(torch.zeros(3, 1, 4, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer class labels.*labels= given.*Convert them"):
        if wrapper == "spec":
            SyntheticSpec("X", seed_generator, labels=labels)
        elif wrapper == "loader":
            GenerativeLoader(DataLoader(real, batch_size=3), seed_generator, labels=labels)
        else:
            GenerativeDataset(real, seed_generator, labels=labels)


@pytest.mark.reliability
def test_float_labels_of_a_dataset_are_refused_too(seed_generator) -> None:
    real = TensorDataset(torch.zeros(3, 1, 4, 4), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="the dataset's labels have shape"):
        GenerativeDataset(real, seed_generator)


@pytest.mark.reliability
def test_open_store_from_a_folder_or_a_matching_store(tmp_path: Path, seed_generator) -> None:
    assert open_store(None, seed_generator) is None
    store = open_store(tmp_path, seed_generator)
    assert isinstance(store, SampleStore) and store.config_hash == seed_generator.config_hash()
    assert open_store(store, seed_generator) is store
    spec = SyntheticSpec("X", seed_generator, class_policy="uniform", store=str(tmp_path))
    assert spec.store.folder == store.folder
    with pytest.raises(ValueError, match="holds samples of generator config"):
        open_store(store, SeedImageGenerator(4))
    with pytest.raises(TypeError, match="store must be a folder path or a SampleStore"):
        open_store(3, seed_generator)  # type: ignore[arg-type]


def test_state_dict_round_trip_and_the_saved_format(seed_generator) -> None:
    spec = SyntheticSpec("X", seed_generator, seed=2, class_policy="uniform")
    spec.set_epoch(3)
    assert spec.state_dict() == {"epoch": 3, "seed": 2, "feedback": [], "hard_examples": []}
    other = SyntheticSpec("X", seed_generator, class_policy="uniform")
    other.load_state_dict({"epoch": 5, "seed": 9})
    assert other.epoch == 5 and other.plan.seed == 9
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        other.set_epoch(-1)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        other.load_state_dict({"epoch": -1, "seed": 0})


def test_synthetic_plan_is_the_one_both_wrappers_serve(seed_generator) -> None:
    real = TensorDataset(torch.zeros(9, 1, 4, 4), torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2]))
    spec = SyntheticSpec("X", seed_generator, ratio=1.5, seed=7, labels=real.tensors[1])
    loader = GenerativeLoader(DataLoader(real, batch_size=4), seed_generator, ratio=1.5, seed=7)
    dataset = GenerativeDataset(real, seed_generator, ratio=1.5, seed=7)
    assert spec.synthetic_plan() == loader._source() == dataset._synthetic_plan()
    assert spec.synthetic_plan(1, 2).rank == 1 and spec.synthetic_plan(1, 2).world == 2
    assert dataset.num_synthetic == spec.synthetic_count(9) == 14


def test_wrappers_read_their_settings_through_the_spec(tmp_path: Path, seed_generator) -> None:
    real = TensorDataset(torch.zeros(6, 1, 4, 4), torch.tensor([0, 1, 2] * 2))
    loader = GenerativeLoader(
        DataLoader(real, batch_size=3), seed_generator, ratio=0.5, seed=1, store=tmp_path
    )
    dataset = GenerativeDataset(real, seed_generator, ratio=0.5, seed=1, store=tmp_path)
    for wrapper in (loader, dataset):
        spec = wrapper.spec
        assert wrapper.generator is seed_generator is spec.generator
        assert (wrapper.ratio, wrapper.class_policy) == (0.5, "match")
        assert wrapper.plan is spec.plan and isinstance(wrapper.plan, SeedPlan)
        assert wrapper.class_counts.tolist() == [2, 2, 2] and wrapper.store is spec.store
        wrapper.set_epoch(4)
        assert wrapper.epoch == spec.epoch == 4
        assert spec.state_dict().items() <= wrapper.state_dict().items()  # and its version
        wrapper.epoch = 2
        assert spec.epoch == 2
        with pytest.raises(ValueError, match="epoch must be >= 0"):
            wrapper.epoch = -1
        wrapper.load_state_dict({"epoch": 1, "seed": 8})
        assert wrapper.plan.seed == 8 and wrapper.epoch == 1
        with pytest.raises(AttributeError):
            wrapper.ratio = 2.0  # settings are fixed at construction


@pytest.mark.reliability
def test_the_dataset_checks_its_labels_before_opening_the_store(
    tmp_path: Path, seed_generator
) -> None:
    real = TensorDataset(torch.zeros(4, 1, 4, 4), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="got 3 labels for 4 real samples"):
        GenerativeDataset(real, seed_generator, labels=[0, 1, 2], store=tmp_path / "s")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("policy", ["match", "uniform", "balance"])
def test_synthetic_class_counts_are_known_without_iterating(seed_generator, policy: str) -> None:
    real = TensorDataset(torch.zeros(10, 1, 4, 4), torch.tensor([0] * 6 + [1] * 2 + [2] * 2))
    order = torch.Generator().manual_seed(1)
    shuffled = DataLoader(real, batch_size=3, shuffle=True, generator=order)
    loader = GenerativeLoader(
        shuffled, seed_generator, ratio=1.5, class_policy=policy, return_mask=True
    )
    for epoch in (0, 1):
        before = order.get_state()
        counts = loader.synthetic_class_counts(epoch)
        assert torch.equal(order.get_state(), before)  # the wrapped loader did not advance
        assert loader.epoch == epoch and counts.sum() == 15
        served = torch.cat([y[mask] for _, y, mask in loader])
        assert torch.bincount(served, minlength=3).tolist() == counts.tolist()

    ds = GenerativeDataset(real, seed_generator, ratio=1.5, class_policy=policy)
    ds.set_epoch(2)
    expected = torch.bincount(torch.tensor([int(ds[i][1]) for i in range(10, 25)]), minlength=3)
    ds.set_epoch(0)
    assert ds.synthetic_class_counts(2).tolist() == expected.tolist()
    assert ds.synthetic_class_counts().sum() == 15


@pytest.mark.reliability
def test_synthetic_class_counts_need_a_known_epoch_length(seed_generator) -> None:
    batches = iter([(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]))])
    loader = GenerativeLoader(batches, seed_generator, class_policy="uniform")
    with pytest.raises(ValueError, match="cannot be known before iterating"):
        loader.synthetic_class_counts()
