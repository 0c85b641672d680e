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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gdaload.bench.evaluate import fit_classifier, mean_ci, write_report
from gdaload.generators.multiview.generator import MultiViewDiffusion
from gdaload.seeding import Stream, derive_rng, derive_seed
from gdaload.tta import GenerativeTTA

__all__ = [
    "ARMS",
    "VIEW_TASKS",
    "ViewBatches",
    "ViewSet",
    "ViewTask",
    "generate_novel_views",
    "multiview_task",
    "run_view_evaluation",
    "tta_accuracy",
    "view_cnn",
    "view_markdown",
]

#: Training arms of the table; each is tested on single views and with averaging.
ARMS: tuple[str, ...] = ("real only", "+ generated views")


@dataclass
class ViewSet:
    """Single views of objects: ``images (N, C, H, W)`` in [0, 1], ``labels (N,)`` and
    ``views (N,)``, the index of the view each image shows."""

    images: torch.Tensor
    labels: torch.Tensor
    views: torch.Tensor

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dim() != 4 or len(self.labels) != n or len(self.views) != n:
            raise ValueError(
                f"a ViewSet needs images (N, C, H, W) with N labels and N view "
                f"indices, got {tuple(self.images.shape)}, {len(self.labels)} and "
                f"{len(self.views)}"
            )


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

    Raises:
        FileNotFoundError: When no generator is shipped and none is given.

    Example:
        >>> task = multiview_task(shots=20)  # doctest: +SKIP
        >>> task.generator.num_views  # doctest: +SKIP
        4
    """
    from gdaload.bench.quickstart import MULTIVIEW_GENERATOR
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


def view_cnn(num_classes: int = 16) -> nn.Module:
    """A three-level CNN for 32x32 RGB views."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 16, num_classes),
    )


def _by_observed_view(
    generator: MultiViewDiffusion, views: torch.Tensor
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(view, indices of the images showing it)`` per view, with the generator's
    :attr:`~gdaload.MultiViewDiffusion.observed_view` set to it meanwhile (and restored)."""
    observed = generator.observed_view
    try:
        for view in views.unique().tolist():
            generator.observed_view = view
            yield view, (views == view).nonzero().flatten()
    finally:
        generator.observed_view = observed


def generate_novel_views(
    generator: MultiViewDiffusion, images: torch.Tensor, views: torch.Tensor, seeds: Sequence[int]
) -> torch.Tensor:
    """The ``V - 1`` missing views of each image, from the view it shows:
    ``(N, V - 1, C, H, W)`` on the CPU."""
    out = torch.empty(len(images), generator.num_views - 1, *generator.image_shape)
    for _, index in _by_observed_view(generator, views):
        out[index] = generator.novel_views(images[index], [seeds[i] for i in index.tolist()]).cpu()
    return out


class ViewBatches:
    """Shuffled batches of real single views, each followed by the views generated from
    it, with a synthetic mask: ``(x, y, is_generated)``.

    Args:
        data: The real single views.
        novel: ``(N, K, C, H, W)`` generated views of each (``None``: real batches only).
        batch_size: Real images per batch.
        seed: Seeds the order (the same for every arm of a seed).
    """

    def __init__(
        self, data: ViewSet, novel: torch.Tensor | None, batch_size: int, seed: int
    ) -> None:
        self.data, self.novel, self.batch_size, self.seed = data, novel, batch_size, seed
        tensors = (data.images, data.labels) + (() if novel is None else (novel,))
        self._loader = DataLoader(
            TensorDataset(*tensors),
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(derive_seed(seed, Stream.BENCH_ORDER)),
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for x, y, *novel in self._loader:
            mask = torch.zeros(len(y), dtype=torch.bool)
            if novel:
                extra = novel[0].flatten(0, 1)
                x = torch.cat([x, extra])
                y = torch.cat([y, y.repeat_interleave(novel[0].shape[1])])
                mask = torch.cat([mask, torch.ones(len(extra), dtype=torch.bool)])
            yield x, y, mask

    def __len__(self) -> int:
        return len(self._loader)


def tta_accuracy(
    model: nn.Module,
    generator: MultiViewDiffusion,
    test: ViewSet,
    seed: int,
    cache: dict[int, GenerativeTTA] | None = None,
) -> tuple[float, float]:
    """Accuracy on single views and averaged over the real view and its generated views.

    Views of the test images depend on the generator and seed, not on the model: pass
    the same ``cache`` dict for several models and the wrappers kept in it (one per
    observed view) generate them once for all.
    """
    cache = {} if cache is None else cache
    hits = np.zeros(2)
    for view, index in _by_observed_view(generator, test.views):
        tta = cache.get(view)
        if tta is None:
            tta = cache[view] = GenerativeTTA(
                model, generator, views=generator.num_views - 1, seed=seed, cache_size=len(index)
            )
        tta.model = model
        report = tta.evaluate([(test.images[index], test.labels[index])])
        hits += np.array([report["single"], report["averaged"]]) * report["num_samples"]
    single, averaged = hits / len(test.images)
    return float(single), float(averaged)


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
    from tqdm.auto import tqdm

    if not seeds:
        raise ValueError("seeds must not be empty")
    if epochs is not None:
        task = dataclasses.replace(task, epochs=epochs)
    accuracy = {arm: {"single": [], "averaged": []} for arm in ARMS}
    seconds: dict[str, float] = {}
    picture = None
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
    report = {
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
            arm: mean_ci(np.subtract(cells["averaged"], cells["single"]))
            for arm, cells in accuracy.items()
        },
        "seconds": seconds,
    }
    if out is not None:
        report["files"] = _write(report, picture, task, Path(out))
    return report


def view_markdown(report: dict[str, Any]) -> str:
    """The 2x2 table as markdown, with the paired effect of averaging."""
    s = report["settings"]

    def cell(mean_half: tuple[float, float], sign: bool = False) -> str:
        mean, half = mean_half
        return f"{100 * mean:{'+' if sign else ''}.2f} ± {100 * half:.2f}"

    lines = [
        (
            f"{report['description']}; {len(s['seeds'])} seeds, {s['epochs']} epochs, batch "
            f"{s['batch_size']} real images; mean ± 95% CI over seeds, averaging gain paired by "
            "seed."
        ),
        "",
        (
            "| classifier trained on | test: single view (%) | test: averaged over the real view "
            f"and {s['generated_views']} generated (%) | averaging gain (points) |"
        ),
        "|---|---|---|---|",
    ]
    for arm, cells in report["mean_ci95"].items():
        lines.append(
            f"| {arm} | {cell(cells['single'])} | {cell(cells['averaged'])} | "
            f"{cell(report['averaging_gain_ci95'][arm], sign=True)} |"
        )
    return "\n".join(lines)


def _write(report: dict[str, Any], picture: Any, task: ViewTask, out: Path) -> dict[str, str]:
    from gdaload.metrics.plots import view_grid

    out.mkdir(parents=True, exist_ok=True)
    images, novel, views = picture
    grid = view_grid(
        images,
        novel,
        views,
        out / f"{task.name}_views.png",
        view_names=task.generator.view_names,
        title=f"{task.name}: test views (left) and the views generated from them",
    )
    return write_report(
        out / f"{task.name}_report", view_markdown(report), report, {"views": str(grid)}
    )
