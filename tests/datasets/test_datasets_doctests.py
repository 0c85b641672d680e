"""The docstring examples of the dataset modules run and print what they show."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name",
    [
        "gdaload.datasets.digits",
        "gdaload.datasets.multiview.scene",
        "gdaload.datasets.multiview.render",
        "gdaload.datasets.multiview.dataset",
    ],
)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
