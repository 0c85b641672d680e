import gc

import torch

import gdaload.provenance as provenance
from gdaload.provenance import mark_synthetic_rows, synthetic_rows


def test_mark_is_read_back_from_the_same_tensor_only():
    x = torch.rand(3, 1, 2, 2)
    mask = torch.tensor([False, True, True])
    mark_synthetic_rows(x, mask)
    assert synthetic_rows(x) is mask
    # Tensors made from x are other objects, even when they share its storage.
    for other in (x.clone(), x.view(3, 4), x[:], x.to(torch.float64), x.detach()):
        assert synthetic_rows(other) is None


def test_marking_again_replaces_the_mark():
    x = torch.rand(2, 1, 2, 2)
    mark_synthetic_rows(x, torch.tensor([True, False]))
    mark_synthetic_rows(x, torch.tensor([False, True]))
    assert synthetic_rows(x).tolist() == [False, True]
    del x
    gc.collect()
    assert all(ref() is not None for ref, _ in provenance._marks.values())


def test_marks_vanish_when_tensors_are_freed():
    before = len(provenance._marks)
    kept = []
    for i in range(500):
        x = torch.rand(4, 1, 2, 2)
        mark_synthetic_rows(x, torch.arange(4) >= 2)
        if i % 100 == 0:
            kept.append(x)
        # Only the tensors still alive are in the registry: no growth with batches.
        assert len(provenance._marks) <= before + len(kept) + 1
    del x
    gc.collect()
    assert len(provenance._marks) == before + len(kept)
    assert all(synthetic_rows(x).tolist() == [False, False, True, True] for x in kept)
    kept.clear()
    gc.collect()
    assert len(provenance._marks) == before


def test_a_tensor_alive_only_in_a_reference_cycle_is_forgotten_when_collected():
    before = len(provenance._marks)
    holder: dict = {}
    holder["self"] = holder
    holder["x"] = torch.rand(2, 1, 2, 2)
    mark_synthetic_rows(holder["x"], torch.tensor([False, True]))
    del holder
    gc.collect()
    assert len(provenance._marks) == before
