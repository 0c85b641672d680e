"""Benchmark whether generated data helps a classifier, with one protocol for every arm.

For each seed, :func:`run_evaluation` trains the task's classifier from the same initial
weights, with the same optimiser, number of epochs and order of the real images, once per
*arm*, and tests every model on the same test set:

* **real only**; **classic augmentation** (random affine transforms of every batch, drawn
  per sample); **mixup** of real with real samples;
* **GDA** (:class:`~gdaload.GenerativeLoader`) at each ratio m_G/m_S of synthetic to real
  samples: the curve shows whether more synthetic data keeps helping, or whether an
  optimal ratio m_G* exists beyond which accuracy falls;
* **GenMix**: GDA batches mixed real-with-synthetic;
* **GDA + selection**: a selection stage of :mod:`gdaload.select` over-generates
  candidates and keeps the best.

The synthetic samples of an arm are those of epoch 0 of its seed plan, reused every
epoch, so that the arms of a seed share generated images through :class:`MemoGenerator`.
Results are means with 95% Student-t intervals over seeds, and gains over real only are
paired by seed. The generated samples are also scored against the test images (FID, KID,
precision/recall, coherence) in the feature space of the seed's real-only classifier, and
pictured: a grid of samples per class beside real ones, a t-SNE map of real and
generated features, and accuracy against m_G/m_S.

Plug in your own data by building a :class:`Task`: a function from seed to train and test
datasets, a generator, a classifier factory and the training settings.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from gdaload.data.loader import GenerativeLoader
from gdaload.generators.base import Generator
from gdaload.metrics import (
    classification_report,
    coherence,
    extract_features,
    frechet_distance,
    kernel_inception_distance,
    penultimate,
    precision_recall,
)
from gdaload.seeding import Stream, derive_seed
from gdaload.select import ClusterSelect, RealismScore, SelectedGenerator, SelectionStage, TopK
from gdaload.transforms.genmix import GenMix

__all__ = [
    "RATIOS",
    "SELECTIONS",
    "TASKS",
    "ArmResults",
    "BatchAugment",
    "EvalSettings",
    "FixedEpoch",
    "MemoGenerator",
    "SeedRun",
    "Task",
    "dataset_tensors",
    "digits_task",
    "evaluate",
    "fit_classifier",
    "get_task",
    "markdown",
    "predict",
    "run_evaluation",
    "selection_stage",
    "write_report",
]

#: Ratios m_G/m_S of the GDA curve.
RATIOS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
#: Name of the arm every gain is measured against.
BASELINE = "real only"


class MemoGenerator(Generator):
    """Keep every image a generator makes, keyed by ``(label, seed)``.

    Arms that request the same ``(label, seed)`` (the same seed plan at several ratios
    and with several batch transforms, or several selection stages over the same
    candidates) get the cached image instead of a second generation. Images are kept in
    memory for the wrapper's lifetime.

    Args:
        inner: The generator to cache.

    Example:
        >>> memo = MemoGenerator(generator)  # doctest: +SKIP
        >>> a = memo.generate([3], [7]); b = memo.generate([3], [7])  # doctest: +SKIP
        >>> memo.generated, torch.equal(a, b)  # doctest: +SKIP
        (1, True)
    """

    def __init__(self, inner: Generator) -> None:
        self.inner, self.num_classes, self.image_shape = inner, inner.num_classes, inner.image_shape
        self.cache: dict[tuple[int, int], torch.Tensor] = {}
        #: Images actually generated (cache misses).
        self.generated = 0

    def generate(self, labels: Any, seeds: Any) -> torch.Tensor:
        keys = list(zip(torch.as_tensor(labels).tolist(), [int(s) for s in seeds], strict=True))
        missing = [k for k in dict.fromkeys(keys) if k not in self.cache]
        if missing:
            images = self.inner.generate([k[0] for k in missing], [k[1] for k in missing])
            self.cache.update(zip(missing, images, strict=True))
            self.generated += len(missing)
        if not keys:
            return torch.empty(0, *self.image_shape, device=self.device)
        return torch.stack([self.cache[k] for k in keys])

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def config(self) -> dict[str, Any]:
        return self.inner.config


class FixedEpoch:
    """Iterate a :class:`~gdaload.GenerativeLoader` at epoch 0 on every pass.

    Every pass then serves the same synthetic samples (those of epoch 0 of the seed
    plan), so a handful of generated images per real one is reused across epochs and
    shared between arms through :class:`MemoGenerator`.

    Example:
        >>> batches = FixedEpoch(GenerativeLoader(loader, generator, ratio=2.0))  # doctest: +SKIP
    """

    def __init__(self, loader: GenerativeLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        self.loader.set_epoch(0)
        return iter(self.loader)


class BatchAugment:
    """Apply a random batch transform to the images of every batch, reproducibly.

    Meant for transforms that draw parameters per sample from the global torch RNG, such
    as kornia's ``RandomAffine``: each batch runs under ``torch.random.fork_rng`` seeded
    from ``(seed, epoch, batch index)``, so the caller's global RNG is left untouched and
    a run is repeatable.

    Args:
        batches: Re-iterable ``(x, y, ...)`` batches; ``set_epoch`` is forwarded.
        transform: Maps an image batch ``(B, C, H, W)`` to one of the same shape.
        seed: Base seed of the per-batch draws.

    Example:
        >>> from kornia.augmentation import RandomAffine
        >>> affine = RandomAffine(degrees=10, p=1.0)
        >>> augmented = BatchAugment(loader, affine, seed=0)  # doctest: +SKIP
    """

    def __init__(
        self, batches: Iterable[Any], transform: Callable[[torch.Tensor], torch.Tensor], seed: int
    ) -> None:
        self.batches, self.transform, self.seed = batches, transform, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        for index, (x, *rest) in enumerate(self.batches):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(self.seed, Stream.BENCH_AUGMENT, self.epoch, index))
                x = self.transform(x)
            yield (x, *rest)
        self.epoch += 1


@dataclass
class Task:
    """A classification task on which to evaluate generative augmentation.

    Attributes:
        name: Short name used in file names and tables.
        splits: Maps an experiment seed to ``(train, test)`` datasets of
            ``(image, label)`` pairs, images ``(C, H, W)`` in [0, 1].
        generator: Makes synthetic images of the task's classes.
        classifier: Builds a fresh, untrained classifier (called under a fixed seed).
        num_classes: Number of classes.
        class_names: Names of the classes, for pictures.
        epochs: Training epochs of every arm.
        batch_size: Real samples per batch.
        lr: Adam learning rate.
        augment: Classic augmentation: a batch transform drawing per-sample parameters
            from the torch RNG (run under :class:`BatchAugment`); ``None`` skips the arm.
        feature_layer: Layer whose input is the classifier's feature vector (see
            :func:`~gdaload.metrics.penultimate`); default the last ``nn.Linear``.
        device: Where the classifier trains.
        description: One line for the report.

    Example:
        >>> task = Task(name="mine", splits=lambda seed: (train_set, test_set),
        ...             generator=generator, classifier=lambda: MyNet(num_classes=5),
        ...             num_classes=5, epochs=30)  # doctest: +SKIP
        >>> settings = EvalSettings(seeds=range(3))
        >>> report = run_evaluation(task, settings, out="runs/eval")  # doctest: +SKIP
    """

    name: str
    splits: Callable[[int], tuple[Dataset, Dataset]]
    generator: Generator
    classifier: Callable[[], nn.Module]
    num_classes: int
    class_names: Sequence[str] | None = None
    epochs: int = 40
    batch_size: int = 20
    lr: float = 1e-3
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    feature_layer: str | None = None
    device: str | torch.device = "cpu"
    description: str = ""


def digits_task(
    shots: int = 10,
    sampler: str = "dpm-solver++",
    steps: int = 10,
    generator_path: str | Path | None = None,
    epochs: int = 40,
    batch_size: int = 20,
) -> Task:
    """The quickstart's task: scikit-learn's 8x8 digits, ``shots`` labelled images per class.

    The generator is the shipped class-conditional digits model (trained on a pool
    disjoint from the training and test images); the classifier is
    :func:`~gdaload.bench.quickstart.digits_cnn`; classic augmentation is kornia's
    ``RandomAffine`` (±10°, ±1 pixel, scale 0.9-1.1).

    Example:
        >>> task = digits_task(shots=10, steps=10)  # doctest: +SKIP
        >>> task.num_classes, task.generator.image_shape  # doctest: +SKIP
        (10, (1, 8, 8))
    """
    from kornia.augmentation import RandomAffine

    from gdaload.bench.quickstart import DIGITS_GENERATOR, digits_cnn
    from gdaload.datasets.digits import DIGIT_CLASSES, digits_splits
    from gdaload.generators.diffusion import DiffusionGenerator

    def splits(seed: int) -> tuple[Dataset, Dataset]:
        data = digits_splits(shots=shots, seed=seed)
        return data.train, data.test

    generator = DiffusionGenerator.from_pretrained(
        Path(generator_path or DIGITS_GENERATOR),
        sampler=sampler,
        steps=steps,
        device="cpu",
    )
    return Task(
        name="digits",
        splits=splits,
        generator=generator,
        classifier=digits_cnn,
        num_classes=10,
        class_names=DIGIT_CLASSES,
        epochs=epochs,
        batch_size=batch_size,
        augment=RandomAffine(degrees=10.0, translate=(0.125, 0.125), scale=(0.9, 1.1), p=1.0),
        description=f"digits (8x8), {shots} labelled images per class; generator: shipped "
        f"digits model, {sampler} {steps} steps",
    )


#: Built-in tasks by name: a function of keyword options returning a :class:`Task`.
TASKS: dict[str, Callable[..., Task]] = {"digits": digits_task}


def get_task(name: str, **options: Any) -> Task:
    """Build the built-in task ``name`` with ``options`` (see :data:`TASKS`).

    Raises:
        ValueError: If ``name`` is not a built-in task; the message lists the valid ones.

    Example:
        >>> get_task("imagenet")
        Traceback (most recent call last):
        ...
        ValueError: unknown task 'imagenet'; valid tasks are ['digits']
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks are {sorted(TASKS)}")
    return TASKS[name](**options)


def dataset_tensors(dataset: Dataset, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``(images, labels)`` of a dataset of pairs, as two tensors (no copy for a
    ``TensorDataset``)."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0], dataset.tensors[1].long()
    xs, ys = zip(
        *((x, torch.as_tensor(y)) for x, y, *_ in DataLoader(dataset, batch_size)), strict=True
    )
    return torch.cat(xs), torch.cat(ys).long()


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of the mean."""
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) < 2:
        return float(arr.mean()), float("nan")
    half = stats.t.ppf((1 + confidence) / 2, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr))
    return float(arr.mean()), float(half)


def fit_classifier(
    classifier: Callable[[], nn.Module],
    batches: Iterable[Any],
    epochs: int,
    seed: int,
    lr: float = 1e-3,
    mix: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train a fresh ``classifier()`` with Adam on ``(x, y)`` or ``(x, y, synthetic)`` batches.

    Args:
        classifier: Builds the model; its weights are drawn under ``seed``.
        batches: Re-iterable batches; ``set_epoch`` is called each epoch when present.
        epochs: Passes over ``batches``.
        seed: Seeds the weights.
        lr: Adam's learning rate.
        mix: Optional batch transform ``mix(x, y[, mask]) -> (x, soft_y)`` such as
            :class:`~gdaload.GenMix`; the loss is then cross-entropy with soft targets.
        device: Where the model trains.

    Example:
        >>> model = fit_classifier(digits_cnn, loader, epochs=40, seed=0)  # doctest: +SKIP
    """
    # fork_rng keeps the caller's global RNG untouched while the weights are initialised.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = classifier()
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        model.train()
        for hook in (batches, mix):
            if hasattr(hook, "set_epoch"):
                hook.set_epoch(epoch)
        for x, y, *mask in batches:
            target = y
            if mix is not None:
                x, target = mix(x, y, *mask)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x.to(device)), target.to(device)).backward()
            opt.step()
    return model


def predict(
    model: nn.Module, images: torch.Tensor, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Predicted classes of ``model`` for ``images``, in order, on the CPU."""
    model.eval()
    with torch.inference_mode():
        # Large chunks: a test set of a few thousand images runs as one batch.
        return torch.cat([model(chunk.to(device)).argmax(1).cpu() for chunk in images.split(4096)])


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
        base = np.asarray(self.accuracy[baseline])
        return {name: mean_ci(np.asarray(v) - base) for name, v in self.accuracy.items()}


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
        """Real batches under the task's classic augmentation."""
        if self.task.augment is None:
            raise ValueError(f"task {self.task.name!r} has no classic augmentation (augment=None)")
        return BatchAugment(self.real_batches(), self.task.augment, self.seed)

    def record(
        self, name: str, batches: Iterable[Any], mix: Any = None, ratio: float | None = None
    ) -> nn.Module:
        """Train the task's classifier on ``batches``, test it, store the metrics under ``name``."""
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
        """GDA through ``stage`` (``candidates`` per sample); also stores the kept fraction."""
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


#: Selection stages of the ``GDA + selection`` arm, by name; see :func:`selection_stage`.
SELECTIONS: dict[str, str] = {"topk": "TopK", "realism": "RealismScore", "cluster": "ClusterSelect"}


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


@dataclass
class EvalSettings:
    """Settings of :func:`run_evaluation`.

    Attributes:
        seeds: Experiment seeds.
        ratios: m_G/m_S of the GDA curve.
        ratio: m_G/m_S of the GenMix and selection arms.
        alpha: Beta concentration of mixup (Beta(α, α)) and GenMix (Beta(α, 1)).
        selection: Stage of the selection arm, one of :data:`SELECTIONS`.
        candidates: Candidates generated per synthetic sample for selection.
        epochs: Overrides the task's epochs when set.
        quality_samples: Generated images scored against the test set per seed (FID
            needs more than the feature dimension; below that only KID is reported).
        tsne_points: Most points of each source in the t-SNE map.

    Example:
        >>> EvalSettings.quick().seeds
        (0, 1)
    """

    seeds: Sequence[int] = (0, 1, 2, 3, 4)
    ratios: Sequence[float] = RATIOS
    ratio: float = 2.0
    alpha: float = 0.3
    selection: str = "topk"
    candidates: int = 4
    epochs: int | None = None
    quality_samples: int = 500
    tsne_points: int = 400

    @classmethod
    def quick(cls, **overrides: Any) -> EvalSettings:
        """A CI-sized run: 2 seeds, 10 epochs, two ratios, fewer samples."""
        preset: dict[str, Any] = dict(
            seeds=(0, 1),
            ratios=(0.5, 2.0),
            epochs=10,
            candidates=2,
            quality_samples=200,
            tsne_points=150,
        )
        return cls(**{**preset, **overrides})


def run_evaluation(
    task: Task,
    settings: EvalSettings | None = None,
    *,
    out: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every arm of the benchmark on ``task`` for each seed.

    Args:
        task: The task (see :class:`Task` and :func:`get_task`).
        settings: Seeds, ratios and arm settings (default :class:`EvalSettings`).
        out: Folder for ``{task}_report.md``, ``{task}_report.json`` and the PNG pictures
            ``{task}_samples.png``, ``{task}_tsne.png``, ``{task}_accuracy_vs_ratio.png``.
        progress: Show a progress bar.

    Returns:
        The report: per-seed metrics, means with 95% intervals, paired gains, quality of
        the generated samples and the files written.

    Raises:
        ValueError: On empty seeds or ratios, a ratio that is not positive, or an
            unknown selection stage.

    Example:
        >>> task = get_task("digits")  # doctest: +SKIP
        >>> report = run_evaluation(task, EvalSettings.quick(), out="eval")  # doctest: +SKIP
        >>> report["mean_ci95"]["GenMix"]  # doctest: +SKIP
        (0.87, 0.01)
    """
    from tqdm.auto import tqdm

    s = settings or EvalSettings()
    if not s.seeds or not s.ratios:
        raise ValueError("seeds and ratios must not be empty")
    if not all(r > 0 and math.isfinite(r) for r in (*s.ratios, s.ratio)):
        raise ValueError(f"ratios must be positive and finite, got {list(s.ratios)} and {s.ratio}")
    if s.selection not in SELECTIONS:
        raise ValueError(f"unknown selection {s.selection!r}; valid ones are {sorted(SELECTIONS)}")
    if s.epochs is not None:
        task = dataclasses.replace(task, epochs=s.epochs)
    results = ArmResults()
    quality: dict[str, list[float]] = {}
    pictures: dict[str, Any] = {}
    names = _arm_names(task, s)
    bar = tqdm(
        total=len(s.seeds) * (len(names) + 1),
        desc=f"evaluate {task.name}",
        disable=not progress,
        unit="arm",
    )
    for seed in s.seeds:
        run = SeedRun(task, seed, results)
        steps = iter(names)

        def record(
            batches: Iterable[Any], mix: Any = None, ratio: float | None = None
        ) -> nn.Module:
            model = run.record(next(steps), batches, mix, ratio)
            bar.update()
            return model

        real_model = record(run.real_batches())
        if task.augment is not None:
            record(run.augmented_batches())
        record(
            run.real_batches(),
            GenMix(
                task.num_classes, alpha=s.alpha, beta="symmetric", pairing="real-real", seed=seed
            ),
        )
        for ratio in s.ratios:
            record(run.gda_batches(ratio), ratio=ratio)
        record(
            run.gda_batches(s.ratio),
            GenMix(task.num_classes, alpha=s.alpha, beta="paper", seed=seed),
            ratio=s.ratio,
        )
        real_x, real_y = dataset_tensors(run.train)
        stage = selection_stage(s.selection, real_model, real_x, real_y, task.feature_layer)
        run.record_selected(next(steps), stage, s.ratio, s.candidates)
        bar.update()
        scores, seed_pictures = _quality(run, real_model, s)
        for key, value in scores.items():
            quality.setdefault(key, []).append(value)
        pictures = pictures or seed_pictures
        bar.update()
        accs = ", ".join(f"{k} {v[-1]:.4f}" for k, v in results.accuracy.items())
        bar.write(f"seed {seed}: {accs} | generated {run.generator.generated}")
    bar.close()
    report = _report(task, s, results, quality)
    if out is not None:
        report["files"] = _write(report, pictures, task, Path(out))
    return report


def _arm_names(task: Task, s: EvalSettings) -> list[str]:
    names = [BASELINE]
    if task.augment is not None:
        names.append("classic augmentation")
    names.append("mixup (real-real)")
    names += [f"GDA m_G/m_S={r:g}" for r in s.ratios]
    names += [f"GenMix m_G/m_S={s.ratio:g}", f"GDA + {SELECTIONS[s.selection]} m_G/m_S={s.ratio:g}"]
    return names


def _quality(
    run: SeedRun, real_model: nn.Module, s: EvalSettings
) -> tuple[dict[str, float], dict[str, Any]]:
    """Scores of generated against test images in the real-only model's feature space,
    and what the pictures need."""
    features = penultimate(real_model, run.task.feature_layer)
    fake_x, fake_y = run.quality_samples(s.quality_samples)
    real_f, fake_f = extract_features(run.test_x, features), extract_features(fake_x, features)
    scores = {
        "KID": kernel_inception_distance(
            real_f, fake_f, subsets=50, subset_size=min(len(real_f), len(fake_f), 500)
        )[0]
    }
    dim = real_f.shape[1]
    if min(len(real_f), len(fake_f)) > dim:
        scores["FID"] = frechet_distance(real_f, fake_f)
    scores["precision"], scores["recall"] = precision_recall(real_f, fake_f, k=3)
    scores["coherence"] = coherence(real_model, fake_x, fake_y)
    # The test set may be sorted by class: the map shows a random subset of it.
    pick = torch.randperm(
        len(real_f),
        generator=torch.Generator().manual_seed(derive_seed(run.seed, Stream.BENCH_QUALITY)),
    )[: s.tsne_points]
    train_x, train_y = dataset_tensors(run.train)
    pictures = {
        "real_x": train_x,
        "real_y": train_y,
        "fake_x": fake_x,
        "fake_y": fake_y,
        "real_f": real_f[pick],
        "real_fy": run.test_y[pick],
        "fake_f": fake_f[: s.tsne_points],
        "fake_fy": fake_y[: s.tsne_points],
        "seed": run.seed,
    }
    return scores, pictures


def _report(
    task: Task, s: EvalSettings, results: ArmResults, quality: dict[str, list[float]]
) -> dict[str, Any]:
    summary = results.summary()
    gains = results.gains()
    gda = {name: r for name, r in results.ratios.items() if name.startswith("GDA m_G")}
    best = max(gda, key=lambda name: summary[name][0])
    return {
        "task": task.name,
        "description": task.description,
        "settings": {
            **dataclasses.asdict(s),
            "seeds": list(s.seeds),
            "ratios": list(s.ratios),
            "epochs": task.epochs,
            "batch_size": task.batch_size,
            "lr": task.lr,
        },
        "accuracy": results.accuracy,
        "macro_f1": results.macro_f1,
        "mean_ci95": summary,
        "macro_f1_ci95": results.summary(results.macro_f1),
        "gain_vs_real_ci95": gains,
        "gain_ci_excludes_zero": {
            name: bool(m - h > 0 or m + h < 0) for name, (m, h) in gains.items() if name != BASELINE
        },
        "ratios": results.ratios,
        "best_ratio": gda[best],
        "kept_fraction": results.kept_fraction,
        "seconds": results.seconds,
        "generated_quality": quality,
        "generated_quality_ci95": {k: mean_ci(v) for k, v in quality.items()},
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: one table of arms, one of the generated samples' quality."""
    s = report["settings"]
    lines = [
        f"{report['description']}; {len(s['seeds'])} seeds, {s['epochs']} epochs, batch "
        f"{s['batch_size']} real images; mean ± 95% CI over seeds, gains paired by seed.",
        "",
        "| arm | m_G/m_S | test accuracy (%) | gain over real only | macro F1 (%) | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name, (mean, half) in report["mean_ci95"].items():
        gain, gain_half = report["gain_vs_real_ci95"][name]
        f1, f1_half = report["macro_f1_ci95"][name]
        ratio = report["ratios"].get(name)
        lines.append(
            f"| {name.split(' m_G/m_S=')[0]} | {'' if ratio is None else f'{ratio:g}'} | "
            f"{100 * mean:.2f} ± {100 * half:.2f} | "
            f"{'' if name == BASELINE else f'{100 * gain:+.2f} ± {100 * gain_half:.2f}'} | "
            f"{100 * f1:.2f} ± {100 * f1_half:.2f} | {report['seconds'][name]:.1f} |"
        )
    lines += ["", f"Best GDA ratio m_G* = {report['best_ratio']:g} of {s['ratios']}.", ""]
    q = report["generated_quality_ci95"]
    # KID is the small-sample fallback: with enough samples for FID it adds only noise.
    keys = ["FID" if "FID" in q else "KID", "precision", "recall", "coherence"]
    lines += [
        f"{s['quality_samples']} generated images per seed against the test images, in the "
        "penultimate features of the seed's real-only classifier:",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
        "| " + " | ".join(f"{q[k][0]:.3g} ± {q[k][1]:.2g}" for k in keys) + " |",
    ]
    return "\n".join(lines)


def _write(
    report: dict[str, Any], pictures: dict[str, Any], task: Task, out: Path
) -> dict[str, str]:
    from gdaload.metrics.plots import accuracy_vs_ratio, sample_grid, tsne_map

    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{task.name}_report"
    p = pictures
    names = task.class_names
    files = {
        "samples": sample_grid(
            p["real_x"],
            p["real_y"],
            p["fake_x"],
            p["fake_y"],
            out / f"{task.name}_samples.png",
            class_names=names,
            title=f"{task.name}: real training images and generated ones",
        ),
        "tsne": tsne_map(
            p["real_f"],
            p["real_fy"],
            p["fake_f"],
            p["fake_fy"],
            out / f"{task.name}_tsne.png",
            class_names=names,
            title=f"{task.name}: test and generated images, features of the "
            f"real-only classifier (seed {p['seed']})",
        ),
    }
    summary = report["mean_ci95"]
    gda = {n: r for n, r in report["ratios"].items() if n.startswith("GDA m_G")}
    files["accuracy_vs_ratio"] = accuracy_vs_ratio(
        list(gda.values()),
        [100 * summary[n][0] for n in gda],
        [100 * summary[n][1] for n in gda],
        out / f"{task.name}_accuracy_vs_ratio.png",
        baseline=tuple(100 * v for v in summary[BASELINE]),
        points={
            n.split(" m_G/m_S=")[0]: (r, 100 * summary[n][0], 100 * summary[n][1])
            for n, r in report["ratios"].items()
            if n not in gda
        },
        title=f"{task.name}: accuracy against m_G/m_S "
        f"({len(report['settings']['seeds'])} seeds, 95% CI)",
    )
    return write_report(
        stem, markdown(report), report, {key: str(path) for key, path in files.items()}
    )


def write_report(
    stem: Path, text: str, report: dict[str, Any], files: dict[str, str]
) -> dict[str, str]:
    """Write ``text`` to ``stem.md`` and ``report`` (with the list of files) to
    ``stem.json``; return ``files`` with those two added."""
    files = {
        **files,
        "markdown": str(stem.with_suffix(".md")),
        "json": str(stem.with_suffix(".json")),
    }
    stem.with_suffix(".md").write_text(text + "\n")
    stem.with_suffix(".json").write_text(
        json.dumps(_json_safe({**report, "files": files}), indent=2)
    )
    return files


def _json_safe(value: Any) -> Any:
    """NaN (a CI from one seed) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def evaluate(
    task: str = "digits",
    *,
    out: str | Path | None = "gdaload-evaluate",
    quick: bool = False,
    progress: bool = True,
    task_options: dict[str, Any] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Build a built-in task and run its benchmark: the entry of ``gdaload evaluate``.

    Class tasks (:data:`TASKS`) run every arm of :func:`run_evaluation`; view tasks
    (:data:`~gdaload.bench.views.VIEW_TASKS`) run the test-time averaging table of
    :func:`~gdaload.bench.views.run_view_evaluation`, which takes only the ``seeds``
    and ``epochs`` settings.

    Args:
        task: Name of a built-in task.
        out: Folder for the report and pictures (``None``: write nothing).
        quick: Start from :meth:`EvalSettings.quick` instead of the defaults.
        progress: Show a progress bar.
        task_options: Keyword options of the task builder (e.g. ``shots``, ``steps``).
        **settings: Fields of :class:`EvalSettings` that override the preset.

    Raises:
        ValueError: If ``task`` is unknown (the message lists the valid ones), or a
            setting does not apply to a view task.

    Example:
        >>> report = evaluate("digits", quick=True, out="runs/eval")  # doctest: +SKIP
    """
    from gdaload.bench.views import VIEW_TASKS, run_view_evaluation, view_markdown

    if task not in TASKS and task not in VIEW_TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks are {sorted({*TASKS, *VIEW_TASKS})}")
    chosen = EvalSettings.quick(**settings) if quick else EvalSettings(**settings)
    if task in VIEW_TASKS:
        extra = sorted(set(settings) - {"seeds", "epochs"})
        if extra:
            raise ValueError(
                f"task {task!r} compares single-view and averaged accuracy; the "
                f"settings {extra} do not apply to it (only seeds and epochs do)"
            )
        seeds = chosen.seeds if quick or "seeds" in settings else (0, 1, 2)
        report = run_view_evaluation(
            VIEW_TASKS[task](**(task_options or {})),
            seeds,
            epochs=chosen.epochs,
            out=out,
            progress=progress,
        )
        text = view_markdown(report)
    else:
        report = run_evaluation(
            get_task(task, **(task_options or {})), chosen, out=out, progress=progress
        )
        text = markdown(report)
    print("\n" + text)
    if out is not None:
        print(f"\nwrote {', '.join(report['files'].values())}")
    return report
