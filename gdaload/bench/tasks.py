"""Classification tasks of the benchmark: what a :class:`Task` holds, and the built-in ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from gdaload.bench.assets import DIGITS_GENERATOR
from gdaload.bench.classifier import digits_cnn
from gdaload.generators.base import Generator

__all__ = ["TASKS", "Task", "digits_task", "get_task"]


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
            from the torch RNG (run under :class:`~gdaload.bench.adapters.BatchAugment`);
            ``None`` skips the arm.
        feature_layer: Layer whose input is the classifier's feature vector (see
            :func:`~gdaload.metrics.penultimate`); default the last ``nn.Linear``.
        device: Where the classifier trains.
        description: One line for the report.

    Example:
        >>> task = Task(name="mine", splits=lambda seed: (train_set, test_set),
        ...             generator=generator, classifier=lambda: MyNet(num_classes=5),
        ...             num_classes=5, epochs=30)  # doctest: +SKIP
        >>> from gdaload.bench.evaluate import EvalSettings, run_evaluation
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
    :func:`~gdaload.bench.classifier.digits_cnn`; classic augmentation is kornia's
    ``RandomAffine`` (±10°, ±1 pixel, scale 0.9-1.1).

    Args:
        shots: Labelled training images per class.
        sampler: Sampler of the generator (see :data:`~gdaload.SAMPLERS`).
        steps: Sampling steps per image.
        generator_path: Another digits generator (default: the shipped one).
        epochs: Training epochs of every arm.
        batch_size: Real images per batch.

    Returns:
        The task.

    Example:
        >>> task = digits_task(shots=10, steps=10)  # doctest: +SKIP
        >>> task.num_classes, task.generator.image_shape  # doctest: +SKIP
        (10, (1, 8, 8))
    """
    # Imported here: kornia, scikit-learn and diffusers load only when the task is built.
    from kornia.augmentation import RandomAffine

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

    Args:
        name: A key of :data:`TASKS`.
        **options: Keyword options of the task's builder.

    Returns:
        The task.

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
