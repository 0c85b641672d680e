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
epoch, so that the arms of a seed share generated images through
:class:`~gdaload.bench.memo.MemoGenerator`. Results are means with 95% Student-t
intervals over seeds, and gains over real only are paired by seed. The generated samples
are also scored against the test images (FID, KID, precision/recall, coherence) in the
feature space of the seed's real-only classifier, and pictured: a grid of samples per
class beside real ones, a t-SNE map of real and generated features, and accuracy against
m_G/m_S.

Plug in your own data by building a :class:`~gdaload.bench.tasks.Task`: a function from
seed to train and test datasets, a generator, a classifier factory and the training
settings. :func:`evaluate`, the entry of ``gdaload evaluate``, also runs the view tasks of
:mod:`gdaload.bench.views`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gdaload.bench.adapters import dataset_tensors
from gdaload.bench.arms import BASELINE, SELECTIONS, ArmResults, SeedRun, selection_stage
from gdaload.bench.report import markdown, view_markdown, write_evaluation_report
from gdaload.bench.stats import mean_ci
from gdaload.bench.tasks import TASKS, Task, get_task
from gdaload.bench.views import VIEW_TASKS, run_view_evaluation
from gdaload.metrics import (
    coherence,
    extract_features,
    frechet_distance,
    kernel_inception_distance,
    penultimate,
    precision_recall,
)
from gdaload.seeding import Stream, derive_seed
from gdaload.transforms.genmix import GenMix

if TYPE_CHECKING:
    from tqdm.auto import tqdm

__all__ = ["RATIOS", "EvalSettings", "evaluate", "run_evaluation"]

#: Ratios m_G/m_S of the GDA curve.
RATIOS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass
class EvalSettings:
    """Settings of :func:`run_evaluation`.

    Attributes:
        seeds: Experiment seeds.
        ratios: m_G/m_S of the GDA curve.
        ratio: m_G/m_S of the GenMix and selection arms.
        alpha: Beta concentration of mixup (Beta(α, α)) and GenMix (Beta(α, 1)).
        selection: Stage of the selection arm, one of
            :data:`~gdaload.bench.arms.SELECTIONS`.
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
        """A CI-sized run: 2 seeds, 10 epochs, two ratios, fewer samples.

        Args:
            **overrides: Fields that replace the preset's.

        Returns:
            The settings.
        """
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
        task: The task (see :class:`~gdaload.bench.tasks.Task` and
            :func:`~gdaload.bench.tasks.get_task`).
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
    # tqdm loads only when a benchmark runs.
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
        real_model = _run_arms(run, names, s, bar)
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
        report["files"] = write_evaluation_report(
            report, pictures, Path(out), task.name, task.class_names
        )
    return report


def _arm_names(task: Task, s: EvalSettings) -> list[str]:
    names = [BASELINE]
    if task.augment is not None:
        names.append("classic augmentation")
    names.append("mixup (real-real)")
    names += [f"GDA m_G/m_S={r:g}" for r in s.ratios]
    names += [f"GenMix m_G/m_S={s.ratio:g}", f"GDA + {SELECTIONS[s.selection]} m_G/m_S={s.ratio:g}"]
    return names


def _run_arms(run: SeedRun, names: Sequence[str], s: EvalSettings, bar: tqdm) -> nn.Module:
    """Train and test the arms of one seed, in the order of ``names``; return the real-only
    model (the selection stage and the quality scores are built on it)."""
    task, seed = run.task, run.seed
    steps = iter(names)

    def record(batches: Iterable[Any], mix: Any = None, ratio: float | None = None) -> nn.Module:
        model = run.record(next(steps), batches, mix, ratio)
        bar.update()
        return model

    real_model = record(run.real_batches())
    if task.augment is not None:
        record(run.augmented_batches())
    record(
        run.real_batches(),
        GenMix(task.num_classes, alpha=s.alpha, beta="symmetric", pairing="real-real", seed=seed),
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
    return real_model


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

    Class tasks (:data:`~gdaload.bench.tasks.TASKS`) run every arm of
    :func:`run_evaluation`; view tasks (:data:`~gdaload.bench.views.VIEW_TASKS`) run the
    test-time averaging table of :func:`~gdaload.bench.views.run_view_evaluation`, which
    takes only the ``seeds`` and ``epochs`` settings.

    Args:
        task: Name of a built-in task.
        out: Folder for the report and pictures (``None``: write nothing).
        quick: Start from :meth:`EvalSettings.quick` instead of the defaults.
        progress: Show a progress bar.
        task_options: Keyword options of the task builder (e.g. ``shots``, ``steps``).
        **settings: Fields of :class:`EvalSettings` that override the preset.

    Returns:
        The report of the benchmark run.

    Raises:
        ValueError: If ``task`` is unknown (the message lists the valid ones), or a
            setting does not apply to a view task.

    Example:
        >>> report = evaluate("digits", quick=True, out="runs/eval")  # doctest: +SKIP
    """
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
