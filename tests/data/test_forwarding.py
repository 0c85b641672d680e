"""GenerativeLoader passes on the attributes training loops read, and only those."""

import pickle

import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

from gdaload import GenerativeLoader
from gdaload.data.forwarding import FORWARDED


def real_loader(**kwargs) -> DataLoader:
    ds = TensorDataset(torch.zeros(10, 1, 4, 4), torch.tensor([i % 3 for i in range(10)]))
    return DataLoader(ds, batch_size=4, **kwargs)


@pytest.mark.parametrize("prepare", [False, True])
def test_loop_attributes_are_the_wrapped_loaders(seed_generator, prepare: bool) -> None:
    wrapped = real_loader(drop_last=True)
    if prepare:
        wrapped = Accelerator(cpu=True).prepare(wrapped)
    loader = GenerativeLoader(wrapped, seed_generator, ratio=1.0)
    for name in FORWARDED:
        assert getattr(loader, name) is getattr(wrapped, name), name
    assert len(loader) == len(wrapped) == 2
    if not prepare:  # accelerate rebuilds the loader around its batch sampler
        assert (loader.batch_size, loader.drop_last, loader.num_workers) == (4, True, 0)


def test_other_attributes_point_to_the_wrapped_loader(seed_generator) -> None:
    loader = GenerativeLoader(real_loader(), seed_generator, ratio=1.0)
    with pytest.raises(AttributeError, match="use .loader.pin_memory for the wrapped loader's"):
        loader.pin_memory  # noqa: B018
    assert loader.loader.pin_memory is False
    assert not hasattr(loader, "collate_fn") and not hasattr(loader, "_private")


def test_a_plain_iterable_has_no_loader_attributes(seed_generator) -> None:
    batches = [(torch.zeros(3, 1, 4, 4), torch.tensor([0, 1, 2]))] * 2
    loader = GenerativeLoader(batches, seed_generator, ratio=1.0, class_policy="uniform")
    assert len(loader) == 2
    with pytest.raises(AttributeError, match="the wrapped list has no attribute 'dataset'"):
        loader.dataset  # noqa: B018
    assert not hasattr(loader, "sampler")
    loader.set_epoch(1)  # nothing to forward it to
    assert loader.epoch == 1
    generated = GenerativeLoader(iter(batches), seed_generator, ratio=1.0, class_policy="uniform")
    with pytest.raises(TypeError):
        len(generated)


def test_set_epoch_reaches_the_wrapped_sampler(seed_generator) -> None:
    class Sampler(torch.utils.data.SequentialSampler):
        epoch = None

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

    ds = TensorDataset(torch.zeros(4, 1, 4, 4), torch.tensor([0, 1, 2, 0]))
    wrapped = DataLoader(ds, batch_size=2, sampler=Sampler(ds))
    loader = GenerativeLoader(wrapped, seed_generator, ratio=1.0)
    loader.set_epoch(3)
    assert wrapped.sampler.epoch == 3 and loader.sampler is wrapped.sampler


def test_the_wrapper_unpickles_without_touching_missing_attributes(seed_generator) -> None:
    loader = GenerativeLoader(real_loader(), seed_generator, ratio=1.0)
    copy = pickle.loads(pickle.dumps(loader))
    assert copy.batch_size == 4 and copy.epoch == 0
    blank = GenerativeLoader.__new__(GenerativeLoader)  # no instance attributes at all
    with pytest.raises(AttributeError, match="the wrapped NoneType has no attribute"):
        blank.dataset  # noqa: B018
