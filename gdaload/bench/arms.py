"""The arms of one seed and the metrics they accumulate across seeds.

Every arm of a seed trains the task's classifier from the same initial weights on the
same real images in the same order; arms differ only in what is added to or done with
the batches (see :func:`~gdaload.bench.evaluate.run_evaluation`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from gdaload.bench.adapters import BatchAugment, FixedEpoch, dataset_tensors
from gdaload.bench.classifier import fit_classifier, predict
from gdaload.bench.memo import MemoGenerator
from gdaload.bench.stats import mean_ci, paired_gain
from gdaload.bench.tasks import Task
from gdaload.data.loader import GenerativeLoader
from gdaload.generators.base import Generator
from gdaload.metrics import classification_report, penultimate
from gdaload.seeding import Stream, derive_seed
from gdaload.select import ClusterSelect, RealismScore, SelectedGenerator, SelectionStage, TopK

__all__ = ["BASELINE", "SELECTIONS", "ArmResults", "SeedRun", "selection_stage"]

#: Name of the arm every gain is measured against.
BASELINE = "real only"

#: Selection stages of the ``GDA + selection`` arm, by name; see :func:`selection_stage`.
SELECTIONS: dict[str, str] = {"topk": "TopK", "realism": "RealismScore", "cluster": "ClusterSelect"}


class ArmResults:
    """Per-seed test metrics of every arm, accumulated across seeds.

    Attributes:
        accuracy: ``{arm: [accuracy per seed]}``.
        macro_f1: ``{arm: [macro F1 per seed]}``.
        seconds: ``{arm: training seconds summed over seeds}``.
        kept_fraction: ``{arm: [kept fraction per seed]}`` for selection arms.
        ratios: ``{arm: m_G/m_S}`` for arms with synthetic samples.
    """

    def __init__(self) -> None:
        self.accuracy: dict[str, list[float]] = {}
        self.macro_f1: dict[str, list[float]] = {}
        self.seconds: dict[str, float] = {}
        self.kept_fraction: dict[str, list[float]] = {}
        self.ratios: dict[str, float] = {}

    def summary(
        self, values: dict[str, list[float]] | None = None
    ) -> dict[str, tuple[float, float]]:
        """``{arm: (mean, 95% CI half-width)}`` of ``values`` (default: accuracy)."""
        return {name: mean_ci(v) for name, v in (values or self.accuracy).items()}

    def gains(self, baseline: str = BASELINE) -> dict[str, tuple[float, float]]:
        """``{arm: (mean, half-width)}`` of the per-seed accuracy difference to ``baseline``."""
        base = self.accuracy[baseline]
        return {name: paired_gain(v, base) for name, v in self.accuracy.items()}


class SeedRun:
    """The arms of one seed: same real images in the same order, shared generated samples.

    Args:
        task: The task.
        seed: Experiment seed: the split, the order of the real images, the weights and
            every seed plan derive from it.
        results: Where :meth:`record` adds the test metrics.
        generator: Overrides ``task.generator`` (e.g. a shared base model).

    Example:
        >>> run = SeedRun(task, seed=0, results=ArmResults())  # doctest: +SKIP
        >>> real_model = run.record("real only", run.real_batches())  # doctest: +SKIP
        >>> run.record("GDA", run.gda_batches(ratio=2.0))  # doctest: +SKIP
    """

    def __init__(
        self, task: Task, seed: int, results: ArmResults, generator: Generator | None = None
    ) -> None:
        self.task, self.seed, self.results = task, seed, results
        self.train, self.test = task.splits(seed)
        self.test_x, self.test_y = dataset_tensors(self.test)
        self.generator = MemoGenerator(generator or task.generator)

    def real_batches(self) -> DataLoader:
        """The real training images, shuffled in the same order for every arm."""
        shuffle = torch.Generator().manual_seed(derive_seed(self.seed, Stream.TRAIN_LOADER))
        return DataLoader(
            self.train, batch_size=self.task.batch_size, shuffle=True, generator=shuffle
        )

    def gda_batches(self, ratio: float, generator: Generator | None = None) -> FixedEpoch:
        """Real batches with ``ratio`` synthetic samples per real one and a synthetic mask."""
        loader = GenerativeLoader(
            self.real_batches(),
            generator or self.generator,
            ratio=ratio,
            seed=self.seed,
            return_mask=True,
        )
        return FixedEpoch(loader)

    def augmented_batches(self) -> BatchAugment:
        """Real batches under the task's classic augmentation.

        Raises:
            ValueError: If the task has no classic augmentation.
        """
        if self.task.augment is None:
            raise ValueError(f"task {self.task.name!r} has no classic augmentation (augment=None)")
        return BatchAugment(self.real_batches(), self.task.augment, self.seed)

    def record(
        self, name: str, batches: Iterable[Any], mix: Any = None, ratio: float | None = None
    ) -> nn.Module:
        """Train the task's classifier on ``batches``, test it, store the metrics under ``name``.

        Args:
            name: The arm.
            batches: Training batches (see :func:`~gdaload.bench.classifier.fit_classifier`).
            mix: Optional batch transform such as :class:`~gdaload.GenMix`.
            ratio: m_G/m_S of the arm, when it has synthetic samples.

        Returns:
            The trained model.
        """
        start = time.perf_counter()
        model = fit_classifier(
            self.task.classifier,
            batches,
            self.task.epochs,
            self.seed,
            lr=self.task.lr,
            mix=mix,
            device=self.task.device,
        )
        r = self.results
        r.seconds[name] = r.seconds.get(name, 0.0) + time.perf_counter() - start
        preds = predict(model, self.test_x, self.task.device)
        r.accuracy.setdefault(name, []).append(float((preds == self.test_y).float().mean()))
        report = classification_report(preds, self.test_y, self.task.num_classes)
        r.macro_f1.setdefault(name, []).append(report.macro_f1)
        if ratio is not None:
            r.ratios[name] = ratio
        return model

    def record_selected(
        self, name: str, stage: SelectionStage, ratio: float, candidates: int
    ) -> nn.Module:
        """GDA through ``stage`` (``candidates`` per sample); also stores the kept fraction.

        Args:
            name: The arm.
            stage: Keeps the best of the candidates.
            ratio: m_G/m_S of the arm.
            candidates: Candidates generated per synthetic sample.

        Returns:
            The trained model.
        """
        selected = SelectedGenerator(
            self.generator, [stage], candidates=candidates, on_empty="best"
        )
        model = self.record(name, self.gda_batches(ratio, selected), ratio=ratio)
        kept = selected.selection_report()["total"]["kept_fraction"]
        self.results.kept_fraction.setdefault(name, []).append(kept)
        return model

    def quality_samples(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` generated images, classes in turn, seeds from a stream of their own."""
        labels = torch.arange(n) % self.task.num_classes
        seeds = [derive_seed(self.seed, Stream.BENCH_QUALITY, i) for i in range(n)]
        return self.generator.generate(labels, seeds).cpu(), labels


def selection_stage(
    name: str,
    real_model: nn.Module,
    real_x: torch.Tensor,
    real_y: torch.Tensor,
    feature_layer: str | None = None,
) -> SelectionStage:
    """A selection stage built from the real-only classifier of the same seed.

    ``topk``: its confidence in the intended class (the best of the candidates is kept);
    ``realism``: the realism score on its penultimate features, fitted on the real
    training images; ``cluster``: per-class k-means on those features, keeping half.

    Args:
        name: A key of :data:`SELECTIONS`.
        real_model: The seed's real-only classifier.
        real_x: The real training images.
        real_y: Their labels.
        feature_layer: Layer whose input is the feature vector (default: the last
            ``nn.Linear``).

    Returns:
        The stage, fitted when it needs to be.

    Raises:
        ValueError: If ``name`` is not in :data:`SELECTIONS`; the message lists them.
    """
    if name not in SELECTIONS:
        raise ValueError(f"unknown selection {name!r}; valid ones are {sorted(SELECTIONS)}")
    if name == "topk":
        return TopK(real_model)
    features = penultimate(real_model, feature_layer)
    if name == "realism":
        return RealismScore(features, k=3).fit(real_x, real_y)
    return ClusterSelect(features, n_clusters=2, keep=0.5).fit(real_x, real_y)
