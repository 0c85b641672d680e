"""The partial-refresh schedule: which epoch's sample each synthetic index holds."""

import math

import numpy as np
import pytest

from gdaload.seeding.refresh import check_refresh, source_epochs

INDICES = np.arange(1000)


@pytest.mark.parametrize("refresh", [0.1, 0.25, 1 / 3, 0.5, 0.9])
def test_each_epoch_refreshes_the_fraction_asked_for_within_a_few_samples(refresh) -> None:
    for epoch in range(1, 40):
        fresh = int((source_epochs(epoch, INDICES, refresh) == epoch).sum())
        assert abs(fresh - refresh * len(INDICES)) <= 2


@pytest.mark.parametrize("refresh", [0.1, 0.5, 0.75])
def test_a_carried_sample_is_the_one_its_source_epoch_made(refresh) -> None:
    previous = source_epochs(0, INDICES, refresh)
    for epoch in range(1, 30):
        source = source_epochs(epoch, INDICES, refresh)
        assert ((source == epoch) | (source == previous)).all()  # fresh, or carried over
        assert (source <= epoch).all()
        for s in np.unique(source).tolist():
            # The source epoch itself made those samples fresh.
            assert (source_epochs(s, INDICES[source == s], refresh) == s).all()
        previous = source


def test_refresh_one_is_always_fresh_and_zero_never() -> None:
    assert (source_epochs(7, INDICES, 1.0) == 7).all()
    assert (source_epochs(7, INDICES, 0.0) == 0).all()
    assert (source_epochs(0, INDICES, 0.3) == 0).all()


def test_every_index_is_refreshed_about_every_one_over_refresh_epochs() -> None:
    epochs = np.stack([source_epochs(e, INDICES, 0.25) for e in range(41)])
    refreshes = (epochs[1:] != epochs[:-1]).sum(axis=0)
    assert refreshes.min() >= 9 and refreshes.max() <= 11  # 40 epochs x 0.25


@pytest.mark.reliability
@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, "0.5", True, None])
def test_bad_refresh_values_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="refresh must be"):
        check_refresh(bad)
