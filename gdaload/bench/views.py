"""The view benchmark: does averaging a classifier over generated views help?

The 2x2 protocol of DiMViDA (diffusion-based multi-view data augmentation), run by
``gdaload evaluate --task multiview``: for each seed a classifier is trained on single
views of objects (**real only**), and another on the same single views with the
``V - 1`` views generated from each appended to its batch (**+ generated views**, as
GDA appends synthetic samples); both are tested on single views of other objects, once
on the view alone and once averaging their softmax over the real view and ``V - 1``
generated views of it (:class:`~gdaload.GenerativeTTA`). Results are means with 95%
Student-t intervals over seeds, and the effect of averaging is paired by seed.

Each training and test image shows one view of its object, drawn per object (the
paper's setting), and the generator is told which: images are grouped by view and
:attr:`~gdaload.MultiViewDiffusion.observed_view` is set per group.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gdaload.bench.assets import MULTIVIEW_GENERATOR
from gdaload.bench.classifier import fit_classifier, view_cnn
from gdaload.bench.novel_views import ViewBatches, ViewSet, generate_novel_views, tta_accuracy
from gdaload.bench.report import write_view_report
from gdaload.bench.stats import mean_ci, paired_gain
from gdaload.generators.multiview.generator import MultiViewDiffusion
from gdaload.seeding import Stream, derive_rng, derive_seed
from gdaload.tta import GenerativeTTA

__all__ = [
    "ARMS",
    "VIEW_TASKS",
    "ViewTask",
    "multiview_task",
    "run_view_evaluation",
]

#: Training arms of the table; each is tested on single views and with averaging.
ARMS: tuple[str, ...] = ("real only", "+ generated views")


@dataclass
class ViewTask:
    """A single-view classification task with a multi-view generator.

    Attributes:
        name: Short name used in file names and tables.
        splits: Maps an experiment seed to ``(train, test)`` :class:`ViewSet` s.
        generator: Generates the missing views of an object from the view observed.
        classifier: Builds a fresh, untrained classifier (called under a fixed seed).
        num_classes: Number of classes.
        epochs: Training epochs of both arms.
        batch_size: Real images per batch.
        lr: Adam learning rate.
        device: Where the classifiers train.
        description: One line for the report.

    Example:
        >>> task = ViewTask(name="mine", splits=lambda seed: (train, test), generator=gen,
        ...                 classifier=lambda: MyNet(10), num_classes=10)  # doctest: +SKIP
        >>> report = run_view_evaluation(task, seeds=range(3), out="runs/views")  # doctest: +SKIP
    """

    name: str
    splits: Callable[[int], tuple[ViewSet, ViewSet]]
    generator: MultiViewDiffusion
    classifier: Callable[[], nn.Module]
    num_classes: int
    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-3
    device: str | torch.device = "cpu"
    description: str = ""


def multiview_task(
    generator_path: str | Path | None = None,
    shots: int = 20,
    sampler: str = "dpm-solver++",
    steps: int = 20,
    test_per_class: int = 64,
    epochs: int = 100,
    data_seed: int = 0,
) -> ViewTask:
    """Single views of :class:`~gdaload.datasets.multiview.MultiViewShapes` (16 classes).

    The classifiers train on one random view of ``shots`` objects per class and are
    tested on one random view of ``test_per_class`` other objects per class; the
    generator (default: the shipped model, trained on all views of yet other objects
    with ``gdaload train-multiview``) makes the three missing views.

    Args:
        generator_path: Folder of a multi-view generator (default: the shipped one).
        shots: Training objects per class.
        sampler: Sampler of the generator (see :data:`~gdaload.SAMPLERS`).
        steps: Sampling steps per generation.
        test_per_class: Test objects per class.
        epochs: Training epochs of both arms.
        data_seed: Seeds the test objects and, with the experiment seed, the training ones.

    Returns:
        The task.

    Raises:
        FileNotFoundError: When no generator is shipped and none is given.

    Example:
        >>> task = multiview_task(shots=20)  # doctest: +SKIP
        >>> task.generator.num_views  # doctest: +SKIP
        4
    """
    # Imported here: the dataset loads only when the task is built.
    from gdaload.datasets.multiview import MultiViewShapes

    folder = Path(generator_path or MULTIVIEW_GENERATOR)
    if not (folder / "unet").is_dir():
        raise FileNotFoundError(
            f"no multi-view generator at {folder}; train one with `gdaload train-multiview "
            "--output runs/multiview` and pass generator_path= (--generator) to it"
        )
    generator = MultiViewDiffusion.from_pretrained(
        folder, sampler=sampler, steps=steps, device="cpu"
    )

    def single_views(dataset: MultiViewShapes, seed: int) -> ViewSet:
        objects = torch.stack([dataset[i][0] for i in range(len(dataset))])
        views = torch.from_numpy(
            derive_rng(seed, Stream.BENCH_VIEW, int(dataset.split == "test")).integers(
                objects.shape[1], size=len(objects)
            )
        )
        return ViewSet(
            objects[torch.arange(len(objects)), views], torch.tensor(dataset.targets), views
        )

    def splits(seed: int) -> tuple[ViewSet, ViewSet]:
        # Objects of their own: other instances than the generator's (data_seed, train).
        train = MultiViewShapes(shots, seed=derive_seed(data_seed, seed, 1))
        test = MultiViewShapes(test_per_class, seed=data_seed, split="test")
        return single_views(train, seed), single_views(test, data_seed)

    return ViewTask(
        name="multiview",
        splits=splits,
        generator=generator,
        classifier=functools.partial(view_cnn, 16),
        num_classes=16,
        epochs=epochs,
        description=f"MultiViewShapes single views (32x32), {shots} objects per class, one "
        f"random view each; generator: {folder.name}, {sampler} {steps} steps",
    )


#: Built-in view tasks by name: a function of keyword options returning a :class:`ViewTask`.
VIEW_TASKS: dict[str, Callable[..., ViewTask]] = {"multiview": multiview_task}


def run_view_evaluation(
    task: ViewTask,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    epochs: int | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the 2x2 protocol on ``task`` for each seed.

    Args:
        task: The task (see :class:`ViewTask` and :func:`multiview_task`).
        seeds: Experiment seeds.
        epochs: Overrides the task's epochs when set.
        out: Folder for ``{task}_report.md``, ``{task}_report.json`` and
            ``{task}_views.png`` (test images beside their generated views).
        progress: Show a progress bar.

    Returns:
        The report: per-seed accuracy of each cell, means with 95% intervals, and the
        paired effect of averaging for each arm.

    Raises:
        ValueError: On empty seeds.

    Example:
        >>> report = run_view_evaluation(multiview_task(), seeds=[0])  # doctest: +SKIP
        >>> report["mean_ci95"]["real only"]["averaged"]  # doctest: +SKIP
        (0.41, nan)
    """
    # tqdm loads only when a benchmark runs.
    from tqdm.auto import tqdm

    if not seeds:
        raise ValueError("seeds must not be empty")
    if epochs is not None:
        task = dataclasses.replace(task, epochs=epochs)
    accuracy: dict[str, dict[str, list[float]]] = {
        arm: {"single": [], "averaged": []} for arm in ARMS
    }
    seconds: dict[str, float] = {}
    picture: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    bar = tqdm(
        total=len(seeds) * len(ARMS), desc=f"evaluate {task.name}", unit="arm", disable=not progress
    )
    for seed in seeds:
        train, test = task.splits(seed)
        start = time.perf_counter()
        novel = generate_novel_views(
            task.generator,
            train.images,
            train.views,
            [derive_seed(seed, Stream.BENCH_NOVEL, i) for i in range(len(train.images))],
        )
        seconds["generating views"] = (
            seconds.get("generating views", 0.0) + time.perf_counter() - start
        )
        cache: dict[int, GenerativeTTA] = {}
        for arm, extra in zip(ARMS, (None, novel), strict=True):
            start = time.perf_counter()
            model = fit_classifier(
                task.classifier,
                ViewBatches(train, extra, task.batch_size, seed),
                task.epochs,
                seed,
                lr=task.lr,
                device=task.device,
            )
            single, averaged = tta_accuracy(model, task.generator, test, seed, cache)
            accuracy[arm]["single"].append(single)
            accuracy[arm]["averaged"].append(averaged)
            seconds[arm] = seconds.get(arm, 0.0) + time.perf_counter() - start
            bar.update()
        if picture is None:
            picture = (
                test.images[:8],
                generate_novel_views(
                    task.generator,
                    test.images[:8],
                    test.views[:8],
                    [derive_seed(seed, Stream.BENCH_PICTURE, i) for i in range(8)],
                ),
                test.views[:8],
            )
        bar.write(
            f"seed {seed}: "
            + ", ".join(
                f"{arm} {cell} {values[-1]:.4f}"
                for arm, cells in accuracy.items()
                for cell, values in cells.items()
            )
        )
    bar.close()
    report: dict[str, Any] = {
        "task": task.name,
        "description": task.description,
        "settings": {
            "seeds": list(seeds),
            "epochs": task.epochs,
            "batch_size": task.batch_size,
            "lr": task.lr,
            "generated_views": task.generator.num_views - 1,
        },
        "accuracy": accuracy,
        "mean_ci95": {
            arm: {cell: mean_ci(v) for cell, v in cells.items()} for arm, cells in accuracy.items()
        },
        "averaging_gain_ci95": {
            arm: paired_gain(cells["averaged"], cells["single"]) for arm, cells in accuracy.items()
        },
        "seconds": seconds,
    }
    if out is not None:
        # Seeds are not empty, so the first one drew the picture.
        assert picture is not None
        report["files"] = write_view_report(
            report, picture, Path(out), task.name, task.generator.view_names
        )
    return report
