"""Shared pieces of the selection tests: a generator whose output quality is known."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from gdaload.generators.base import Generator, as_labels, as_seeds
from gdaload.select import SelectionStage


class ValueGenerator(Generator):
    """Constant images whose value ``v`` is a uniform draw seeded by the sample's seed.

    ``v`` plays the role of quality in the tests, so the right selection is known.
    """

    num_classes = 3
    image_shape = (3, 4, 4)

    def __init__(self) -> None:
        self.calls: list[int] = []

    @staticmethod
    def value(seed: int) -> float:
        return float(torch.rand(1, generator=torch.Generator().manual_seed(seed)))

    def generate(self, labels: torch.Tensor | Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
        labels = as_labels(labels, self.num_classes)
        seeds = as_seeds(seeds, len(labels))
        self.calls.append(len(seeds))
        values = torch.tensor([self.value(s) for s in seeds])
        return values.view(-1, 1, 1, 1).expand(-1, *self.image_shape).clone()

    @property
    def config(self) -> dict[str, Any]:
        return {"kind": "value"}


class Brightness(SelectionStage):
    """Scores the mean pixel value (``v`` of :class:`ValueGenerator`), or its negation."""

    def __init__(self, sign: float = 1.0, **rule: Any) -> None:
        super().__init__(**rule)
        self.sign = sign

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.sign * images.mean(dim=(1, 2, 3))

    def _config(self) -> dict[str, Any]:
        return {"sign": self.sign}


class MeanFeatures(torch.nn.Module):
    """2-D features ``(v, 1 - v)`` of constant images: direction changes with ``v``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.mean(dim=(1, 2, 3))
        return torch.stack([v, 1 - v], dim=1)


@pytest.fixture
def gen() -> ValueGenerator:
    return ValueGenerator()


@pytest.fixture
def brightness() -> type[Brightness]:
    return Brightness


@pytest.fixture
def mean_features() -> MeanFeatures:
    return MeanFeatures()
