"""The evaluation harness behind ``gdaload quickstart`` and ``gdaload evaluate``.

One concept per module, dependencies pointing down the list:

* :mod:`~gdaload.bench.stats`: means with Student-t intervals, paired gains;
* :mod:`~gdaload.bench.assets`: the shipped generators;
* :mod:`~gdaload.bench.classifier`: the small CNNs, their training loop and tests;
* :mod:`~gdaload.bench.memo`: :class:`MemoGenerator`, generated samples shared by arms;
* :mod:`~gdaload.bench.adapters`: loader adapters (fixed epoch, batch augmentation);
* :mod:`~gdaload.bench.tasks`: :class:`Task` and the built-in classification tasks;
* :mod:`~gdaload.bench.arms`: the arms of one seed and their accumulated metrics;
* :mod:`~gdaload.bench.report`: markdown tables, strict JSON and pictures;
* :mod:`~gdaload.bench.novel_views`: single views, their generated views, averaging;
* :mod:`~gdaload.bench.views`: the multi-view averaging benchmark and its task;
* :mod:`~gdaload.bench.evaluate`: the class-task benchmark and ``gdaload evaluate``;
* :mod:`~gdaload.bench.quickstart`: ``gdaload quickstart``.

Note that the package attribute ``evaluate`` is the function, which shadows the module of
the same name; import from the module with ``from gdaload.bench.evaluate import ...``.
"""

from gdaload.bench.adapters import BatchAugment, FixedEpoch, dataset_tensors
from gdaload.bench.arms import BASELINE, SELECTIONS, ArmResults, SeedRun, selection_stage
from gdaload.bench.assets import DIGITS_GENERATOR, MULTIVIEW_GENERATOR
from gdaload.bench.classifier import accuracy, digits_cnn, fit_classifier, predict, view_cnn
from gdaload.bench.evaluate import RATIOS, EvalSettings, evaluate, run_evaluation
from gdaload.bench.memo import MemoGenerator
from gdaload.bench.novel_views import ViewBatches, ViewSet, generate_novel_views, tta_accuracy
from gdaload.bench.quickstart import run_quickstart
from gdaload.bench.report import markdown, view_markdown, write_report
from gdaload.bench.stats import mean_ci, paired_gain
from gdaload.bench.tasks import TASKS, Task, digits_task, get_task
from gdaload.bench.views import ARMS, VIEW_TASKS, ViewTask, multiview_task, run_view_evaluation

__all__ = [
    "ARMS",
    "BASELINE",
    "DIGITS_GENERATOR",
    "MULTIVIEW_GENERATOR",
    "RATIOS",
    "SELECTIONS",
    "TASKS",
    "VIEW_TASKS",
    "ArmResults",
    "BatchAugment",
    "EvalSettings",
    "FixedEpoch",
    "MemoGenerator",
    "SeedRun",
    "Task",
    "ViewBatches",
    "ViewSet",
    "ViewTask",
    "accuracy",
    "dataset_tensors",
    "digits_cnn",
    "digits_task",
    "evaluate",
    "fit_classifier",
    "generate_novel_views",
    "get_task",
    "markdown",
    "mean_ci",
    "multiview_task",
    "paired_gain",
    "predict",
    "run_evaluation",
    "run_quickstart",
    "run_view_evaluation",
    "selection_stage",
    "tta_accuracy",
    "view_cnn",
    "view_markdown",
    "write_report",
]
