"""``GenerativeLoader``: put synthetic samples into the batches of an existing loader.

It wraps the iterable instead of subclassing ``DataLoader``, so it also wraps loaders
that ``accelerate.Accelerator.prepare`` returns (which are rebuilt from their constructor
arguments and would lose a subclass's additions). Generation runs in the main process,
so CUDA generators are safe with any number of DataLoader workers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from gdaload.data.policies import (
    CLASS_POLICIES,
    check_ratio,
    dataset_labels,
    plan_labels,
    real_class_counts,
)
from gdaload.generators.base import Generator, check_generated
from gdaload.seeding import SeedPlan

__all__ = ["GenerativeLoader"]

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _distributed_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class GenerativeLoader:
    """Yield the batches of ``loader`` with synthetic samples appended to each.

    Over an epoch that yields m_S real samples, exactly ``round(ratio * m_S)``
    synthetic samples are added, spread as evenly as the batches allow: after each batch
    the running synthetic count is ``round(ratio * real samples so far)``. Synthetic
    sample ``j`` of epoch ``e`` gets the seed ``SeedPlan(seed).sample_seed(e, j)`` and a
    label from the class policy, so two runs with the same seed see the same samples.
    Under ``torch.distributed`` ranks take disjoint synthetic indices (``j * world +
    rank``) from the same plan.

    The epoch advances by one after each full pass; :meth:`set_epoch` sets it explicitly
    (and is forwarded to the wrapped loader, e.g. for a ``DistributedSampler``).

    Args:
        loader: Any iterable of ``(inputs, labels)`` batches with integer labels of shape
            ``(B,)``: a ``DataLoader``, one from ``Accelerator.prepare``, a list...
        generator: Any :class:`~gdaload.Generator`.
        ratio: Synthetic samples per real sample, m_G/m_S (finite, >= 0).
        seed: Base seed of the seed plan.
        class_policy: ``match``, ``uniform`` or ``balance``.
        labels: Labels of the real dataset, for the class policy; read from
            ``loader.dataset`` when omitted. ``uniform`` works without them.
        synthetic_transform: Applied to the generated batch ``(N, C, H, W)`` in [0, 1]
            before merging, e.g. the normalisation the real batches get.
        return_mask: Yield ``(inputs, labels, is_synthetic)`` with a boolean mask.

    Example:
        >>> loader = DataLoader(real, batch_size=64, shuffle=True, num_workers=4)  # doctest: +SKIP
        >>> gen_loader = GenerativeLoader(loader, generator, ratio=0.5, return_mask=True)  # doctest: +SKIP
        >>> for x, y, synthetic in gen_loader:  # doctest: +SKIP
        ...     loss = criterion(model(x), y)
    """

    def __init__(
        self,
        loader: Iterable[Any],
        generator: Generator,
        ratio: float = 1.0,
        seed: int = 0,
        *,
        class_policy: str = "match",
        labels: Sequence[int] | None = None,
        synthetic_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        return_mask: bool = False,
    ) -> None:
        if not isinstance(generator, Generator):
            raise TypeError(f"generator must be a gdaload.Generator, got {type(generator).__name__}")
        if class_policy not in CLASS_POLICIES:
            raise ValueError(f"unknown class_policy {class_policy!r}; valid ones are {list(CLASS_POLICIES)}")
        self.loader, self.generator = loader, generator
        self.ratio = check_ratio(ratio)
        self.plan = SeedPlan(seed)
        self.class_policy = class_policy
        self.synthetic_transform = synthetic_transform
        self.return_mask = return_mask
        self.class_counts = self._class_counts(labels)
        self.epoch = 0
        self._stats = {"real": 0, "synthetic": 0, "batches": 0, "generation_seconds": 0.0}

    def _class_counts(self, labels: Sequence[int] | None) -> np.ndarray | None:
        if labels is None and getattr(self.loader, "dataset", None) is not None:
            try:
                labels = dataset_labels(self.loader.dataset)
            except ValueError:
                labels = None
        if labels is None:
            if self.class_policy != "uniform":
                raise ValueError(
                    f"class_policy={self.class_policy!r} needs the real labels' frequencies but "
                    f"they cannot be read from {type(self.loader).__name__}; pass labels=[...] "
                    "or use class_policy='uniform'"
                )
            return None
        return real_class_counts(np.asarray(labels, dtype=np.int64), self.generator.num_classes)

    # ------------------------------------------------------------------ loop hooks
    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Use the synthetic samples of ``epoch``; forwarded to the wrapped loader."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)
        for target in (self.loader, getattr(self.loader, "sampler", None)):
            if hasattr(target, "set_epoch"):
                target.set_epoch(epoch)
                break

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "seed": self.plan.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plan = SeedPlan(state["seed"])
        self.epoch = int(state["epoch"])

    def stats(self) -> dict[str, float]:
        """Counters since construction: real and synthetic samples served, batches, and
        seconds the training loop spent waiting for generation."""
        return dict(self._stats)

    def __getattr__(self, name: str) -> Any:
        # Training loops read loader attributes (dataset, batch_size, sampler); pass them on.
        if name.startswith("_") or name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    # ------------------------------------------------------------------ iteration
    def _labels_for(self, epoch: int, indices: list[int]) -> torch.Tensor:
        if self.class_counts is None:
            bag = np.arange(self.generator.num_classes)
            plan = plan_labels("uniform", np.ones_like(bag), len(bag), self.plan.label_rng(epoch))
        else:
            total = math.floor(self.ratio * int(self.class_counts.sum()) + 0.5)
            plan = plan_labels(self.class_policy, self.class_counts, max(total, 1),
                               self.plan.label_rng(epoch))
        return torch.as_tensor(plan[np.asarray(indices) % len(plan)], dtype=torch.long)

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.epoch
        rank, world = _distributed_rank_world()
        real_seen = synthetic_made = 0
        for batch in self.loader:
            x, y = self._unpack(batch)
            real_seen += len(y)
            n = math.floor(self.ratio * real_seen + 0.5) - synthetic_made
            indices = [(synthetic_made + k) * world + rank for k in range(n)]
            synthetic_made += n
            yield self._merge(x, y, epoch, indices)
        self.epoch = epoch + 1

    @staticmethod
    def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError(
                "GenerativeLoader expects batches of (inputs, labels); got "
                f"{type(batch).__name__}{f' of length {len(batch)}' if isinstance(batch, (tuple, list)) else ''}. "
                "Adapt the loader (e.g. a collate_fn returning (x, y)) before wrapping it"
            )
        x, y = batch
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError("GenerativeLoader expects tensor inputs and labels; use a collate_fn "
                            "that stacks samples into tensors")
        if y.dim() != 1 or y.dtype.is_floating_point:
            raise ValueError(
                f"GenerativeLoader expects integer class labels of shape (B,), got {y.dtype} of "
                f"shape {tuple(y.shape)}; apply soft-label transforms (mixup, GenMix) after it"
            )
        return x, y

    def _merge(self, x: torch.Tensor, y: torch.Tensor, epoch: int, indices: list[int]) -> Batch:
        mask = torch.zeros(len(y) + len(indices), dtype=torch.bool, device=y.device)
        if indices:
            labels = self._labels_for(epoch, indices)
            seeds = [self.plan.sample_seed(epoch, j) for j in indices]
            start = time.perf_counter()
            images = self.generator.generate(labels, seeds)
            check_generated(images, len(indices), self.generator.image_shape,
                            source=type(self.generator).__name__)
            if self.synthetic_transform is not None:
                images = self.synthetic_transform(images)
            self._stats["generation_seconds"] += time.perf_counter() - start
            if tuple(images.shape[1:]) != tuple(x.shape[1:]):
                raise ValueError(
                    f"synthetic batch has shape {tuple(images.shape[1:])} per sample but real "
                    f"inputs have {tuple(x.shape[1:])}; pass synthetic_transform= (e.g. "
                    "v2.Resize, v2.Grayscale, v2.Normalize) so they match"
                )
            x = torch.cat([x, images.to(device=x.device, dtype=x.dtype)])
            y = torch.cat([y, labels.to(device=y.device, dtype=y.dtype)])
            mask[-len(indices):] = True
        self._stats["real"] += int((~mask).sum())
        self._stats["synthetic"] += len(indices)
        self._stats["batches"] += 1
        return (x, y, mask) if self.return_mask else (x, y)

    def __repr__(self) -> str:
        return (f"GenerativeLoader(ratio={self.ratio}, policy={self.class_policy}, "
                f"epoch={self.epoch}, generator={self.generator!r})")
