"""The view benchmark: the 2x2 table end to end, its built-in task and its errors."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_multiview
from torch import nn

from gdaload.bench.evaluate import evaluate
from gdaload.bench.novel_views import ViewSet
from gdaload.bench.views import ARMS, ViewTask, multiview_task, run_view_evaluation


def view_set(n: int, seed: int) -> ViewSet:
    g = torch.Generator().manual_seed(seed)
    return ViewSet(
        torch.rand(n, 3, 8, 8, generator=g),
        torch.arange(n) % 3,
        torch.randint(0, 4, (n,), generator=g),
    )


def tiny_classifier(num_classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, num_classes))


def tiny_task() -> ViewTask:
    return ViewTask(
        name="tiny",
        splits=lambda seed: (view_set(9, seed), view_set(6, 100)),
        generator=tiny_multiview(steps=2),
        classifier=functools.partial(tiny_classifier, 3),
        num_classes=3,
        epochs=2,
        batch_size=4,
    )


def test_two_by_two_runs_end_to_end_writes_its_files_and_is_deterministic(tmp_path: Path) -> None:
    task = tiny_task()
    report = run_view_evaluation(task, seeds=[0, 1], out=tmp_path, progress=False)
    assert set(report["accuracy"]) == set(ARMS)
    for cells in report["accuracy"].values():
        assert set(cells) == {"single", "averaged"}
        assert all(0.0 <= v <= 1.0 for values in cells.values() for v in values)
        assert all(len(values) == 2 for values in cells.values())
    for arm, (mean, _) in report["averaging_gain_ci95"].items():
        cells = report["accuracy"][arm]
        expected = sum(a - s for a, s in zip(cells["averaged"], cells["single"], strict=True)) / 2
        assert mean == pytest.approx(expected)
    for key in ("views", "markdown", "json"):
        assert Path(report["files"][key]).is_file()
    table = Path(report["files"]["markdown"]).read_text()
    assert "+ generated views" in table and "averaging gain" in table
    assert json.loads(Path(report["files"]["json"]).read_text())["task"] == "tiny"
    again = run_view_evaluation(tiny_task(), seeds=[0, 1], out=None, progress=False)
    assert again["accuracy"] == report["accuracy"]
    assert task.generator.observed_view == 0  # restored after grouping by view


@pytest.mark.reliability
def test_bad_input_gets_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seeds must not be empty"):
        run_view_evaluation(tiny_task(), seeds=[], progress=False)
    with pytest.raises(FileNotFoundError, match="gdaload train-multiview"):
        multiview_task(generator_path=tmp_path)
    with pytest.raises(ValueError, match=r"valid tasks are \['digits', 'multiview'\]"):
        evaluate("imagenet", out=None)
    with pytest.raises(ValueError, match=r"\['ratios'\] do not apply"):
        evaluate("multiview", out=None, ratios=(1.0,))


def test_built_in_multiview_task_runs_with_the_shipped_generator(tmp_path: Path) -> None:
    report = evaluate(
        "multiview",
        out=tmp_path,
        quick=True,
        progress=False,
        seeds=(0,),
        epochs=1,
        task_options={"shots": 1, "test_per_class": 1, "steps": 2},
    )
    assert report["settings"]["generated_views"] == 3 and report["settings"]["epochs"] == 1
    assert (tmp_path / "multiview_views.png").is_file()
    assert (tmp_path / "multiview_report.md").read_text().count("|") > 10
