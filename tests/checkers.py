"""Checkers shared by the tests, and a cheap CPU generator that honours the contract."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gdaload.generators.base import (
    Generator,
    ImageConditionedGenerator,
    as_labels,
    as_seeds,
    check_generated,
    check_source,
    config_digest,
    sample_strengths,
)

#: ``make(labels, seeds) -> images``: one way of calling a generator.
Make = Callable[[list[int], list[int]], torch.Tensor]


class SeedImageGenerator(Generator):
    """Images that are a pure function of (label, seed): cheap enough for data tests.

    Pixel (0, 0, 0) encodes the label and the rest is noise from the seed, so tests can
    read back which label a generated sample was made for.
    """

    def __init__(self, num_classes: int = 3, image_shape: tuple[int, int, int] = (1, 4, 4)) -> None:
        self.num_classes, self.image_shape = num_classes, image_shape

    def generate(self, labels: Any, seeds: Sequence[int]) -> torch.Tensor:
        labels = as_labels(labels, self.num_classes)
        seeds = as_seeds(seeds, len(labels))
        out = (
            torch.stack(
                [
                    torch.rand(self.image_shape, generator=torch.Generator().manual_seed(s))
                    for s in seeds
                ]
            )
            if seeds
            else torch.empty(0, *self.image_shape)
        )
        if len(labels):
            out[:, 0, 0, 0] = labels.float() / max(self.num_classes - 1, 1)
        return out

    def label_of(self, image: torch.Tensor) -> int:
        return round(float(image[0, 0, 0]) * max(self.num_classes - 1, 1))

    @property
    def config(self) -> dict[str, Any]:
        return {"kind": "seed-image", "classes": self.num_classes, "shape": list(self.image_shape)}


def assert_pickle_round_trip(obj: Any, check: Callable[[Any, Any], None] | None = None) -> Any:
    """Pickle ``obj`` (as DataLoader workers do) and run ``check(original, copy)``."""
    copy = pickle.loads(pickle.dumps(obj))
    assert type(copy) is type(obj)
    if check is not None:
        check(obj, copy)
    return copy


def assert_same_per_sample(
    make: Callable[[list[int], list[int]], torch.Tensor],
    labels: list[int],
    seeds: list[int],
    atol: float = 1e-4,
) -> None:
    """Determinism checker: each sample equals the one made alone, whatever the batch."""
    batch = make(labels, seeds)
    for i in (0, len(labels) - 1):
        alone = make([labels[i]], [seeds[i]])
        torch.testing.assert_close(batch[i : i + 1], alone, atol=atol, rtol=0)
    torch.testing.assert_close(make(labels[::-1], seeds[::-1]), batch.flip(0), atol=atol, rtol=0)


def assert_image_batch(images: torch.Tensor, n: int, shape: Sequence[int]) -> None:
    """Generator output contract: (n, *shape) float in [0, 1], finite."""
    assert images.shape == (n, *shape)
    assert images.dtype.is_floating_point
    assert torch.isfinite(images).all()
    assert images.min() >= 0 and images.max() <= 1


@dataclass
class GeneratorCase:
    """A generator under the contract suite, and how its kind is called.

    ``make(generator, labels, seeds)`` makes one image per ``(label, seed)`` the way the
    generator's consumers do (with ``source=`` for image-conditioned and multi-view
    generators); ``labels`` and ``seeds`` are a valid request of four samples.
    """

    name: str
    generator: Generator
    make: Callable[[Generator, list[int], list[int]], torch.Tensor]
    labels: list[int]
    seeds: list[int] = field(default_factory=lambda: [11, 12, 13, 14])
    atol: float = 1e-4

    def bound(self, generator: Generator | None = None) -> Make:
        """``make`` bound to ``generator`` (default: the case's own)."""
        gen = self.generator if generator is None else generator
        return lambda labels, seeds: self.make(gen, labels, seeds)


def seeded_sources(seeds: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """One source image per seed, a pure function of the seed: a sample's source then does
    not depend on the batch it is requested in."""
    images = [
        torch.rand(tuple(shape), generator=torch.Generator().manual_seed(10_000 + s)) for s in seeds
    ]
    return torch.stack(images) if images else torch.empty(0, *shape)


def assert_contract_output(images: torch.Tensor, generator: Generator, n: int) -> None:
    """The :class:`~gdaload.Generator` output contract: ``(n, *image_shape)``, floating
    point, finite, in [0, 1], on the generator's device; ``check_generated`` agrees."""
    assert_image_batch(images, n, generator.image_shape)
    assert images.device == generator.device
    assert check_generated(images, n, generator.image_shape) is images


def assert_deterministic(make: Make, labels: list[int], seeds: list[int]) -> None:
    """Same ``(label, seed)`` pairs give bit-identical images; other seeds other images."""
    first = make(labels, seeds)
    assert torch.equal(first, make(labels, seeds))
    other = make(labels, [s + 100 for s in seeds])
    assert (other - first).flatten(1).abs().amax(1).min() > 1e-4


def assert_config_contract(generator: Generator) -> None:
    """:attr:`config` is JSON-serialisable, stable and keys :meth:`config_hash`."""
    import json

    config = generator.config
    json.dumps(config, sort_keys=True)
    assert generator.config == config
    assert generator.config_hash() == config_digest(config) == generator.config_hash()


class SourceBlendGenerator(SeedImageGenerator, ImageConditionedGenerator):
    """Image-conditioned double: ``(1 - s) * source + s * noise(label, seed)``, with ``s``
    from ``sample_strengths``, so strength 0 returns the source and 1 ignores it.

    Every call is recorded in :attr:`calls` (labels, seeds, strength, batch size), so tests
    can check what a consumer asked for.
    """

    def __init__(self, num_classes: int = 3, image_shape: tuple[int, int, int] = (1, 4, 4)) -> None:
        super().__init__(num_classes, image_shape)
        self.calls: list[dict[str, Any]] = []

    def generate(
        self,
        labels: Any,
        seeds: Sequence[int],
        source: torch.Tensor | None = None,
        strength: Any = 1.0,
    ) -> torch.Tensor:
        labels = as_labels(labels, self.num_classes)
        seeds = as_seeds(seeds, len(labels))
        self.calls.append(
            {
                "labels": labels.tolist(),
                "seeds": list(seeds),
                "strength": strength,
                "n": len(labels),
            }
        )
        noise = super().generate(labels, seeds)
        if source is None:
            return noise
        source = check_source(source, self.image_shape, len(labels)).to(self.device)
        s = torch.tensor(sample_strengths(strength, seeds)).view(-1, 1, 1, 1)
        return (1 - s) * source + s * noise

    def __repr__(self) -> str:
        return f"SourceBlendGenerator(classes={self.num_classes}, image_shape={self.image_shape})"


def served(loader: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic images and labels one epoch of a ``return_mask=True`` loader serves."""
    xs, ys = [], []
    for x, y, mask in loader:
        xs.append(x[mask])
        ys.append(y[mask])
    return torch.cat(xs), torch.cat(ys)
