"""MultiViewShapes: procedural objects seen from four views, as PyTorch datasets.

A stand-in for multi-view renderings of 3D object classes (as in multi-view generative
augmentation, where missing views of a single-view image are generated and a
classifier's predictions are averaged over views). Nothing is downloaded: every image is
ray cast by :mod:`gdaload.datasets.multiview.render` from the scenes of
:mod:`gdaload.datasets.multiview.scene`, which also explains which views tell which
classes apart.

Instance seeds come from ``(dataset seed, split, class, index)`` through
:class:`numpy.random.SeedSequence`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from gdaload.datasets.multiview.render import (
    check_seed,
    check_size,
    render_class,
    to_float,
)
from gdaload.datasets.multiview.scene import CLASSES, VIEW_NAMES, view_index
from gdaload.seeding import derive_seed

__all__ = ["MultiViewShapes", "SingleView"]

_SPLITS = {"train": 0, "test": 1}


@functools.lru_cache(maxsize=4)
def _render_split(seed: int, split: str, per_class: int, size: int) -> torch.Tensor:
    """All four views of a split, ``(C * per_class, 4, 3, size, size)`` uint8, class-major.

    Memoised because train/test datasets, single-view wrappers and repeated test or
    notebook constructions ask for the same images again.
    """
    split_id = _SPLITS[split]
    images = [
        render_class(c, [derive_seed(seed, split_id, c, k) for k in range(per_class)], size)
        for c in range(len(CLASSES))
    ]
    return torch.from_numpy(np.concatenate(images))


class MultiViewShapes(Dataset):
    """Procedural objects seen from four views; single views are ambiguous by design.

    Sixteen classes (:data:`CLASSES`), each with ``num_instances_per_class`` instances
    per split. Item ``i`` is ``(views, label)``: ``views`` is a float tensor
    ``(V, 3, size, size)`` in ``[0, 1]`` holding the requested ``views`` in the order
    given, ``label`` an int. Items are class-major (``label = i // num_instances_per_class``).
    See :mod:`gdaload.datasets.multiview.scene` for which views tell which classes apart.

    All images are rendered when the dataset is built (a few seconds for the default
    sizes) and kept as uint8; datasets with equal ``(seed, split,
    num_instances_per_class, size)`` share one rendering.

    Args:
        num_instances_per_class: Instances of each class, at least 1.
        seed: Non-negative dataset seed; instance ``k`` of class ``c`` has the seed
            ``SeedSequence``-derived from ``(seed, split, c, k)``.
        size: Image height and width in pixels, at least 16.
        split: ``"train"`` or ``"test"``; the splits hold different instances.
        views: Views to return, as indices into :data:`VIEW_NAMES` or names, distinct.
        transform: Called on the ``(V, 3, size, size)`` stack, so a random transform
            sees all views of an item together.

    Attributes:
        classes: Class names.
        targets: Label of every item, without rendering anything new.
        instance_seeds: Seed of every item, for
            :func:`~gdaload.datasets.multiview.render.render_instance`.
        view_names: Names of all four views.
        views: Indices of the returned views.

    Example:
        >>> ds = MultiViewShapes(num_instances_per_class=2, seed=0)
        >>> views, label = ds[0]
        >>> views.shape, ds.classes[label]
        (torch.Size([4, 3, 32, 32]), 'crate')
        >>> front, label = ds.single_view("front")[0]
        >>> front.shape
        torch.Size([3, 32, 32])
    """

    view_names: tuple[str, ...] = VIEW_NAMES

    def __init__(
        self,
        num_instances_per_class: int = 100,
        *,
        seed: int = 0,
        size: int = 32,
        split: str = "train",
        views: Sequence[int | str] = (0, 1, 2, 3),
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if (
            isinstance(num_instances_per_class, bool)
            or not isinstance(num_instances_per_class, (int, np.integer))
            or num_instances_per_class < 1
        ):
            raise ValueError(
                "num_instances_per_class must be a positive integer, got "
                f"{num_instances_per_class!r}"
            )
        check_seed(seed, "seed")
        check_size(size)
        if split not in _SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {tuple(_SPLITS)}")
        if isinstance(views, (str, int)) or len(views) == 0:
            raise ValueError(
                f"views must be a non-empty sequence of view indices or names, got {views!r}; "
                "e.g. views=(0,) or views=('front', 'back')"
            )
        indices = tuple(view_index(v) for v in views)
        if len(set(indices)) != len(indices):
            raise ValueError(f"views must be distinct, got {tuple(views)!r}")

        self.num_instances_per_class = int(num_instances_per_class)
        self.seed = int(seed)
        self.size = int(size)
        self.split = split
        self.views = indices
        self.transform = transform
        self.classes: list[str] = list(CLASSES)
        n = self.num_instances_per_class
        self.targets: list[int] = [c for c in range(len(CLASSES)) for _ in range(n)]
        split_id = _SPLITS[split]
        self.instance_seeds: list[int] = [
            derive_seed(self.seed, split_id, c, k) for c in range(len(CLASSES)) for k in range(n)
        ]
        self._images = _render_split(self.seed, split, n, self.size)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        views = to_float(self._images[index, list(self.views)])
        if self.transform is not None:
            views = self.transform(views)
        return views, self.targets[index]

    def single_view(
        self,
        view: int | str = 0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> SingleView:
        """This dataset seen from one view only; see :class:`SingleView`."""
        return SingleView(self, view, transform=transform)


class SingleView(Dataset):
    """One view of a :class:`MultiViewShapes`: items ``(image (3, H, W), label)``.

    Args:
        dataset: The multi-view dataset; its own transform runs first.
        view: Index into :data:`VIEW_NAMES` or a view name; must be among
            ``dataset.views``.
        transform: Called on the single image.

    Example:
        >>> ds = SingleView(MultiViewShapes(num_instances_per_class=2), view="back")
        >>> image, label = ds[0]
        >>> image.shape, len(ds) == len(ds.targets)
        (torch.Size([3, 32, 32]), True)
    """

    def __init__(
        self,
        dataset: MultiViewShapes,
        view: int | str = 0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        index = view_index(view)
        if index not in dataset.views:
            raise ValueError(
                f"view {VIEW_NAMES[index]!r} is not among the dataset's views "
                f"{[VIEW_NAMES[v] for v in dataset.views]}; build the dataset with it"
            )
        self.dataset = dataset
        self.view = index
        self.transform = transform
        self._position = dataset.views.index(index)
        self.classes = dataset.classes
        self.targets = dataset.targets

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        views, label = self.dataset[index]
        image = views[self._position]
        if self.transform is not None:
            image = self.transform(image)
        return image, label
