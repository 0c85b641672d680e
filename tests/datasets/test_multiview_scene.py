"""MultiViewShapes scenes: each feature shows exactly in its revealing views, pixel for
pixel, and lookalikes lists the classes that look the same from a view."""

from __future__ import annotations

import pytest
import torch

from gdaload.datasets.multiview import (
    CLASSES,
    REVEALING_VIEWS,
    VIEW_NAMES,
    lookalikes,
    render_instance,
)


@pytest.mark.parametrize("instance_seed", [0, 1, 2])
def test_each_feature_shows_exactly_in_its_revealing_views(instance_seed: int) -> None:
    """The ambiguity by design, pixel for pixel: with the same instance seed, a class
    renders exactly like the plain body of its family in every view that does not
    reveal its feature, and differently in every view that does."""
    for c, name in enumerate(CLASSES):
        plain = render_instance(c - c % 4, instance_seed)
        views = render_instance(c, instance_seed)
        for v, view in enumerate(VIEW_NAMES):
            identical = torch.equal(views[v], plain[v])
            assert identical == (view not in REVEALING_VIEWS[name]), (name, view)
    assert all(REVEALING_VIEWS[name] == () for name in CLASSES[::4])
    assert all(REVEALING_VIEWS[name] for i, name in enumerate(CLASSES) if i % 4)


@pytest.mark.parametrize("instance_seed", [0, 1])
def test_lookalikes_are_the_classes_with_identical_pixels(instance_seed: int) -> None:
    views = torch.stack([render_instance(c, instance_seed) for c in range(len(CLASSES))])
    for c in range(len(CLASSES)):
        family = range(c - c % 4, c - c % 4 + 4)
        for v, name in enumerate(VIEW_NAMES):
            same = tuple(k for k in family if torch.equal(views[k, v], views[c, v]))
            assert lookalikes(c, v) == same == lookalikes(c, name), (CLASSES[c], name)
    # From the front a plain body hides its back block and back knob; from the right,
    # its left knob; from the back and the left every class shows.
    crate = CLASSES.index("crate")
    assert len(lookalikes(crate, "front")) == 3 and len(lookalikes(crate, "right")) == 2
    assert lookalikes(crate, "back") == lookalikes(crate, "left") == (crate,)


@pytest.mark.reliability
def test_bad_lookalikes_arguments() -> None:
    with pytest.raises(ValueError, match="class_index must be an integer in"):
        lookalikes(-1, "front")
    with pytest.raises(ValueError, match="unknown view name 'top'"):
        lookalikes(0, "top")
