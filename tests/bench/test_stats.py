import math

import pytest

from gdaload.bench.stats import mean_ci, paired_gain


def test_mean_ci() -> None:
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(2.4841, abs=1e-3)


def test_mean_ci_of_one_value_has_no_interval() -> None:
    mean, half = mean_ci([0.5])
    assert mean == 0.5 and math.isnan(half)


def test_paired_gain_is_the_interval_of_the_per_seed_differences() -> None:
    values, baseline = [0.9, 0.7, 0.8], [0.8, 0.5, 0.8]
    assert paired_gain(values, baseline) == mean_ci(
        [v - b for v, b in zip(values, baseline, strict=True)]
    )
