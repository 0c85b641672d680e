"""SharedEpoch: one epoch for a dataset or transform and every copy of it."""

import copy
import pickle

import pytest

from gdaload.seeding import SharedEpoch


@pytest.mark.reliability
def test_set_get_and_validation() -> None:
    epoch = SharedEpoch(2)
    assert epoch.get() == 2
    epoch.set(5)
    assert epoch.get() == 5
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="non-negative integer"):
            epoch.set(bad)  # type: ignore[arg-type]


def test_plain_copies_are_independent_snapshots() -> None:
    # Outside DataLoader workers (plain pickle, deepcopy), a copy is its own epoch.
    epoch = SharedEpoch(1)
    for clone in (pickle.loads(pickle.dumps(epoch)), copy.deepcopy(epoch)):
        assert clone.get() == 1
        clone.set(4)
        assert epoch.get() == 1
