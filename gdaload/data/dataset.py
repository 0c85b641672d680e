"""``GenerativeDataset``: a map-style dataset of real samples followed by synthetic ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence, Sized
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from gdaload.data.bulk import fill_store
from gdaload.data.hard import HARD_SHARE, HARD_STRENGTH, DatasetImages
from gdaload.data.pairs import check_pair_sample, make_pairs, mask_like, needs_pairs, pair_setup
from gdaload.data.plan import SyntheticPlan
from gdaload.data.policies import as_int_labels, dataset_labels
from gdaload.data.ranges import check_same_scale
from gdaload.data.resume import STATE_VERSION, check_state
from gdaload.data.spec import SpecAttributes, StoreLike, SyntheticSpec, check_not_empty
from gdaload.engine.base import (
    EngineStats,
    SourceImages,
    fetch_stored,
    make_samples,
    plan_variations,
)
from gdaload.generators.base import Generator
from gdaload.generators.masks import PairGenerator

__all__ = ["GenerativeDataset"]


class GenerativeDataset(SpecAttributes, Dataset):
    """Real samples at indices ``0..m_S-1``, synthetic samples after them.

    ``len = m_S + round(ratio * m_S)``. Synthetic sample ``j`` of epoch ``e`` has the
    label given by the class policy and the seed ``SeedPlan(seed).sample_seed(e, j)``, so
    it is the same whatever the batch size, worker or shuffling. Call :meth:`set_epoch`
    each epoch for fresh synthetic samples (non-persistent DataLoader workers pick the new
    epoch up when the next epoch's iterator is created).

    Batched fetching (``__getitems__``) makes a DataLoader ask the generator for all
    synthetic samples of a batch in one call.

    With ``store=``, generated samples are kept on disk and read back by later epochs,
    runs and DataLoader workers. :meth:`fill_store` generates an epoch's samples into the
    store up front, in the main process (e.g. on the GPU), so that workers only read
    files: the dataset's counterpart of :class:`~gdaload.GenerativeLoader`'s background
    engine, whose in-order pool does not fit a dataset's random access.

    Args:
        real: Map-style dataset of ``(input, label)`` pairs; for segmentation
            generators (:class:`~gdaload.PairGenerator`,
            :class:`~gdaload.MaskConditionedGenerator`), of ``(image, mask, label)`` or
            ``(image, mask)`` samples, which synthetic samples then mirror (the rule is
            in :mod:`gdaload.data.pairs`).
        generator: Any :class:`~gdaload.Generator`. With a CUDA generator, use
            ``num_workers=0`` or :class:`~gdaload.GenerativeLoader`.
        ratio: Synthetic samples per real sample, m_G/m_S (finite, >= 0).
        seed: Base seed of the seed plan.
        class_policy: ``match``, ``uniform`` or ``balance`` (see
            :mod:`gdaload.data.policies`).
        labels: Labels of ``real``; read from the dataset when omitted.
        synthetic_transform: Applied to each generated ``(C, H, W)`` image in [0, 1], e.g.
            the normalisation the real samples get.
        return_mask: Return ``(input, label, is_synthetic)`` triples. Pass the
            collated mask to :class:`~gdaload.GenMix`: unlike
            :class:`~gdaload.GenerativeLoader`'s, the batches a DataLoader collates from
            this dataset carry no mark of their synthetic rows (the dataset never sees
            them).
        store: A :class:`~gdaload.cache.SampleStore` or a folder for one.
        refresh: Fraction of synthetic samples made fresh each epoch (default 1: all);
            the others are the previous epoch's samples, read from ``store`` (required
            below 1). :meth:`fill_store` then only generates the fresh ones.
        source_images: Hard-example variations: reads real images by index as
            ``(N, C, H, W)`` floats in [0, 1] (default: ``real[i][0]``).

    The synthetic settings (``generator``, ``ratio``, ``plan``, ``class_policy``,
    ``class_counts``, ``store``, ``epoch``) live in :attr:`spec`, a
    :class:`~gdaload.data.SyntheticSpec`, and read as attributes too.

    Raises:
        ValueError: On an empty ``real``, a bad ratio, seed or class policy, labels that
            do not match ``real`` or that the generator cannot produce, or a store of
            another generator config.
        GeneratorKindError: If ``generator`` is a multi-view generator.

    Example:
        >>> ds = GenerativeDataset(real, generator, ratio=0.5, seed=0)  # doctest: +SKIP
        >>> loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=2)  # doctest: +SKIP
        >>> for epoch in range(10):  # doctest: +SKIP
        ...     ds.set_epoch(epoch)
        ...     for x, y in loader: ...
    """

    def __init__(
        self,
        real: Dataset,
        generator: Generator,
        ratio: float = 1.0,
        seed: int = 0,
        *,
        class_policy: str = "match",
        labels: Sequence[int] | None = None,
        synthetic_transform: Callable[[torch.Tensor], Any] | None = None,
        return_mask: bool = False,
        store: StoreLike = None,
        refresh: float = 1.0,
        source_images: SourceImages | None = None,
    ) -> None:
        def real_labels() -> np.ndarray:
            # Read once the cheap checks have passed; one label per real sample.
            values = (
                as_int_labels(labels, "the labels= given")
                if labels is not None
                else dataset_labels(real)
            )
            num_real = len(cast(Sized, real))
            if len(values) != num_real:
                raise ValueError(f"got {len(values)} labels for {num_real} real samples")
            return values

        check_not_empty(real, "GenerativeDataset")
        self.real = real
        # Segmentation (see gdaload.data.pairs): synthetic (image, mask[, label]) samples.
        self._pairs: PairGenerator | None = None
        pair_labels = None
        if needs_pairs(generator):
            self._pairs, pair_labels = pair_setup(real, generator, labels, "GenerativeDataset")
        self.spec = SyntheticSpec(
            "GenerativeDataset",
            self._pairs or generator,
            ratio,
            seed,
            class_policy=class_policy,
            labels=real_labels if self._pairs is None else pair_labels,
            store=store,
            refresh=refresh,
        )
        self.synthetic_transform = synthetic_transform
        self.source_images = source_images if source_images is not None else DatasetImages(real)
        self.return_mask = return_mask
        self.num_real = len(cast(Sized, real))
        self.num_synthetic = self.spec.synthetic_count(self.num_real)
        self._shape_checked = False
        self._example: tuple[Any, Any] | None = None
        self._engine_stats = EngineStats()
        self._mask_store = (
            self.store.masks_for() if self._pairs is not None and self.store is not None else None
        )

    @property
    def serves_pairs(self) -> bool:
        """Whether samples are (image, mask[, label]) pairs (see :mod:`gdaload.data.pairs`)."""
        return self._pairs is not None

    def __len__(self) -> int:
        return self.num_real + self.num_synthetic

    def set_epoch(self, epoch: int) -> None:
        """Select the synthetic samples of ``epoch`` (fresh ones for each epoch)."""
        self.spec.set_epoch(epoch)

    def feedback(self, per_class: Any, kind: str = "recall") -> None:
        """Hand over per-class validation results for the epoch after the current one
        (``class_policy="feedback"``; see :meth:`GenerativeLoader.feedback`).

        DataLoader workers copy the dataset when an epoch's iteration starts, so the
        feedback reaches them from the next epoch on, except with
        ``persistent_workers=True``, whose copies keep the old plan: do not use
        persistent workers with this policy.

        Raises:
            ValueError: As :meth:`GenerativeLoader.feedback`.
        """
        self.spec.add_feedback(per_class, self.epoch + 1, kind)

    def hard_examples(
        self,
        indices: Any = None,
        *,
        scores: Any = None,
        top: int | None = None,
        share: float = HARD_SHARE,
        strength: float = HARD_STRENGTH,
    ) -> None:
        """Hand over the real samples the model fails on, for the epoch after the current
        one on (see :meth:`GenerativeLoader.hard_examples`; workers as with
        :meth:`feedback`). Variations are generated when read (DataLoader workers
        included: use a CPU generator there); :meth:`fill_store` stores only the plain
        samples of the plan as it stands.

        Raises:
            ValueError: As :meth:`GenerativeLoader.hard_examples`.
        """
        self.spec.add_hard_examples(indices, scores, top, share, strength, self.epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        """The epoch and seed, versioned, for resuming (see :meth:`load_state_dict`).

        The position inside an epoch is the DataLoader's: wrap this dataset in a
        ``torchdata.stateful_dataloader.StatefulDataLoader`` and save its state too.
        """
        return {"version": STATE_VERSION, "kind": "GenerativeDataset", **self.spec.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (also one saved before states had versions).

        Raises:
            TypeError: If ``state`` is not a dict.
            ValueError: On a state of an unknown version or of another wrapper.
        """
        state = check_state(state, "GenerativeDataset", {})
        self.spec.load_state_dict(state)

    def _synthetic_plan(self) -> SyntheticPlan:
        return self.spec.synthetic_plan()

    def synthetic_labels(self) -> np.ndarray:
        """Labels of this epoch's synthetic samples, in index order."""
        return self._synthetic_plan().labels(self.epoch, range(self.num_synthetic)).numpy()

    def synthetic_class_counts(self, epoch: int | None = None) -> np.ndarray:
        """Synthetic samples per class in ``epoch`` (default: the current one), from the
        plan: nothing is generated and no sample is read.

        Example:
            >>> ds.synthetic_class_counts()  # doctest: +SKIP
            array([4, 3, 3])
        """
        return self.spec.synthetic_class_counts(self.num_synthetic, epoch)

    def is_synthetic(self, index: int) -> bool:
        """Whether ``index`` holds a synthetic sample (it follows the real ones)."""
        return index >= self.num_real

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        n = len(self)
        indices = [int(i) + n if int(i) < 0 else int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise IndexError(f"indices {bad[:5]} out of range for GenerativeDataset of length {n}")
        synthetic = [i for i in indices if i >= self.num_real]
        generated = (
            dict(zip(synthetic, self._generate(synthetic), strict=True)) if synthetic else {}
        )
        out = []
        for i in indices:
            item = generated[i] if i in generated else self.real[i]
            if self._pairs is not None and i not in generated:
                check_pair_sample(item, i, "GenerativeDataset")
            out.append((*item, i in generated) if self.return_mask else item)
        return out

    def _generate(self, indices: list[int]) -> list[tuple[Any, ...]]:
        js = [i - self.num_real for i in indices]
        plan = self._synthetic_plan()
        labels, seeds = plan.labels(self.epoch, js), plan.seeds(self.epoch, js)
        if self._pairs is not None:
            return self._generate_pairs(labels, seeds)
        variations = plan_variations(plan, self.epoch, js, self.source_images)
        plain = list(range(len(js)))
        if variations is not None:
            plain = sorted(set(plain) - set(variations.rows))
        fetched = (
            fetch_stored(
                self.store, labels[plain], [seeds[i] for i in plain], self.generator.image_shape
            )
            if self.store is not None
            else None
        )
        if (
            get_worker_info() is not None
            and self.generator.device.type == "cuda"
            and (fetched is None or fetched[1] or variations is not None)
        ):
            raise RuntimeError(
                "a CUDA generator cannot run inside DataLoader worker processes (forked "
                "workers cannot use CUDA, and each would load its own copy of the model). "
                "Use num_workers=0, fill a store first (GenerativeDataset(..., store=folder)"
                ".fill_store()), or wrap the real DataLoader with "
                "gdaload.GenerativeLoader(loader, generator, ratio=...), which generates in "
                "the main process."
            )
        images = make_samples(
            self.generator,
            self.store,
            labels,
            seeds,
            self._engine_stats,
            host=True,
            fetched=fetched,
            variations=variations,
        )
        real_input, real_label = self._real_example()
        items = []
        for image, label in zip(images, labels.tolist(), strict=True):
            items.append(
                (
                    self.synthetic_transform(image) if self.synthetic_transform else image,
                    _label_like(label, real_label),
                )
            )
        if not self._shape_checked:
            self._check_like_real(real_input, items[0][0])
        return items

    def _generate_pairs(self, labels: torch.Tensor, seeds: list[int]) -> list[tuple[Any, ...]]:
        """Synthetic samples with the fields of the real ones: ``(image, mask, label)``
        or ``(image, mask)`` (see :mod:`gdaload.data.pairs`)."""
        assert self._pairs is not None
        if get_worker_info() is not None and self.generator.device.type == "cuda":
            raise RuntimeError(
                "a CUDA generator cannot run inside DataLoader worker processes; use "
                "num_workers=0, or fill a store first (fill_store())"
            )
        images, masks = make_pairs(
            self._pairs, self.store, self._mask_store, labels, seeds, self._engine_stats
        )
        real = self.real[0]
        items = []
        for image, mask, label in zip(images, masks, labels.tolist(), strict=True):
            image = self.synthetic_transform(image) if self.synthetic_transform else image
            fields = (image, mask_like(mask, real[1]))
            items.append((*fields, _label_like(label, real[2])) if len(real) == 3 else fields)
        if not self._shape_checked:
            self._check_like_real(real[0], items[0][0])
        return items

    def make_block(self, labels: torch.Tensor, seeds: list[int], stats: EngineStats) -> None:
        """Make the samples of ``(labels, seeds)`` into the store (pairs: images and
        masks), skipping stored ones; what :meth:`fill_store` runs block by block."""
        if self._pairs is not None:
            make_pairs(self._pairs, self.store, self._mask_store, labels, seeds, stats)
        else:
            make_samples(self.generator, self.store, labels, seeds, stats)

    def fill_store(
        self, epochs: int | Iterable[int] | None = None, batch_size: int = 64, progress: bool = True
    ) -> int:
        """Generate the synthetic samples of ``epochs`` into the store, skipping stored ones.

        Run it before training (on the GPU, say) so that DataLoader workers only read
        samples. When ``torch.distributed`` is initialised each process generates its
        share (see :func:`gdaload.data.bulk.fill_store`) and waits at a barrier for the
        others, so every sample of the range is stored when it returns.

        Args:
            epochs: An epoch or epochs; default: the current one.
            batch_size: Samples per ``generate`` call.
            progress: Show a progress bar.

        Returns:
            The number of samples this process generated.
        """
        if epochs is None:
            epochs = [self.epoch]
        epochs = [epochs] if isinstance(epochs, int) else list(epochs)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank, world = (
            (torch.distributed.get_rank(), torch.distributed.get_world_size())
            if distributed
            else (0, 1)  # without a process group there is no barrier: make it all
        )
        report = fill_store(
            self, epochs, batch_size=batch_size, rank=rank, world=world, progress=progress
        )
        if distributed:
            torch.distributed.barrier()
        return report.generated

    def _real_example(self) -> tuple[Any, Any]:
        """``(input, label)`` of the first real sample, which synthetic items must look
        like; ``(None, None)`` without one. Read once per process: reading a real sample
        may decode an image and draw from its random transforms."""
        if self._example is None:
            item = self.real[0] if self.num_real else None
            if isinstance(item, (tuple, list)) and len(item) > 1:
                self._example = (item[0], item[1])
            else:
                self._example = (None, None)
        return self._example

    def _check_like_real(self, real: Any, synthetic: Any) -> None:
        """Fail at the first synthetic sample, not deep inside collate, when real and
        synthetic inputs cannot be batched together."""
        self._shape_checked = True
        if (
            isinstance(real, torch.Tensor)
            and isinstance(synthetic, torch.Tensor)
            and (real.shape != synthetic.shape or real.dtype != synthetic.dtype)
        ):
            raise ValueError(
                f"synthetic inputs are {synthetic.dtype} of shape {tuple(synthetic.shape)} but "
                f"real inputs are {real.dtype} of shape {tuple(real.shape)}; pass "
                "synthetic_transform= (e.g. v2.Resize, v2.Grayscale, v2.Normalize, "
                "v2.ToDtype) so synthetic samples match the real ones"
            )
        if isinstance(real, torch.Tensor) and isinstance(synthetic, torch.Tensor):
            check_same_scale(real, synthetic, "GenerativeDataset")

    def __repr__(self) -> str:
        return (
            f"GenerativeDataset(real={self.num_real}, synthetic={self.num_synthetic}, "
            f"ratio={self.ratio}, policy={self.class_policy}, epoch={self.epoch}, "
            f"generator={self.generator!r})"
        )


def _label_like(label: int, like: Any) -> Any:
    """``label`` in the type of a real label, so default_collate batches real and
    synthetic items together (a TensorDataset yields 0-d tensors, not ints)."""
    if isinstance(like, torch.Tensor):
        return torch.tensor(label, dtype=like.dtype)
    if isinstance(like, np.integer):
        return type(like)(label)
    return label
