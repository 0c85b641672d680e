"""The docstring examples of the selection modules run and print what they show."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name",
    [
        "gdaload.select.stage",
        "gdaload.select.feature",
        "gdaload.select.selected",
        "gdaload.select.cluster",
        "gdaload.select.realism",
        "gdaload.select.topk",
    ],
)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
