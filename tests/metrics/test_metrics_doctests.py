"""The docstring examples of the metrics modules run and print what they show."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name",
    [
        "gdaload.metrics.classification",
        "gdaload.metrics.coherence",
        "gdaload.metrics.features",
        "gdaload.metrics.fid",
        "gdaload.metrics.plots",
        "gdaload.metrics.precision_recall",
    ],
)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
