"""Shared pieces of the MultiViewShapes tests: one rendered train and test split."""

from __future__ import annotations

import pytest

from gdaload.datasets.multiview import MultiViewShapes


@pytest.fixture(scope="session")
def train() -> MultiViewShapes:
    return MultiViewShapes(20, seed=0, split="train")


@pytest.fixture(scope="session")
def held_out() -> MultiViewShapes:
    return MultiViewShapes(10, seed=0, split="test")
