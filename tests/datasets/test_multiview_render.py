"""The MultiViewShapes ray caster: pure, framed, four distinct views, checked arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gdaload.datasets.multiview import CLASSES, VIEW_NAMES, MultiViewShapes, render_instance


def _all_views(ds: MultiViewShapes) -> torch.Tensor:
    return torch.stack([ds[i][0] for i in range(len(ds))])


def test_render_instance_is_pure_and_matches_the_dataset(train: MultiViewShapes) -> None:
    n = train.num_instances_per_class
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    for i in (0, n + 3, len(train) - 1):
        views = render_instance(train.targets[i], train.instance_seeds[i])
        assert torch.equal(views, train[i][0])
    assert torch.equal(render_instance(3, 11), render_instance(3, 11))
    # No global random state is read or advanced.
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_the_four_views_of_every_instance_differ(train: MultiViewShapes) -> None:
    x = _all_views(train)
    for a in range(4):
        for b in range(a + 1, 4):
            per_item = (x[:, a] - x[:, b]).abs().flatten(1).amax(1)
            assert per_item.min() > 0.05, (VIEW_NAMES[a], VIEW_NAMES[b])


def test_objects_stay_inside_the_frame(train: MultiViewShapes) -> None:
    x = _all_views(train)
    corner = x[..., :1, :1]
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], -1)
    assert torch.equal(border, corner[..., 0].expand_as(border))


@pytest.mark.reliability
def test_bad_render_arguments() -> None:
    with pytest.raises(ValueError, match="class_index must be an integer in"):
        render_instance(len(CLASSES), 0)
    with pytest.raises(ValueError, match="instance_seed must be a non-negative integer"):
        render_instance(0, -1)
    with pytest.raises(ValueError, match="size must be an integer of at least 16"):
        render_instance(0, 0, size=4)
