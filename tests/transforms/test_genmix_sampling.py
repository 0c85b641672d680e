"""GenMix draws besides lam: partners dealt evenly from a pool, clipped cutmix boxes."""

import numpy as np
import pytest
import torch

from gdaload.transforms.genmix.sampling import cutmix_boxes, deal


@pytest.mark.parametrize("count", [1, 5, 9, 10])
def test_deal_uses_every_element_before_reusing_any(count):
    pool = np.array([3, 7, 8])
    picks = deal(np.random.default_rng(1), pool, count)
    assert len(picks) == count
    for start in range(0, count, len(pool)):
        block = picks[start : start + len(pool)]
        assert len(set(block.tolist())) == len(block) and set(block.tolist()) <= set(pool)


def test_cutmix_boxes_masks_match_bounds_and_covered_area():
    lam = np.random.default_rng(2).uniform(0, 1, size=64)
    box, inside, area = cutmix_boxes(np.random.default_rng(3), lam, 6, 9, torch.device("cpu"))
    assert box.dtype == torch.int64 and box.shape == (64, 4)
    assert inside.shape == (64, 1, 6, 9) and inside.dtype == torch.bool
    assert area.dtype == torch.float64
    top, bottom, left, right = box.unbind(1)
    assert bool(((top >= 0) & (top <= bottom) & (bottom <= 6)).all())
    assert bool(((left >= 0) & (left <= right) & (right <= 9)).all())
    for i in range(64):
        expected = torch.zeros(6, 9, dtype=torch.bool)
        expected[top[i] : bottom[i], left[i] : right[i]] = True
        assert torch.equal(inside[i, 0], expected)
    assert torch.equal(inside.flatten(1).sum(1).double() / 54, area)
    # Clipping at the border only ever shrinks a box.
    assert bool((area <= torch.from_numpy(lam) + 1e-12).all())
