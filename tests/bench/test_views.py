"""The view benchmark: the 2x2 table end to end, its batches, views and errors."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_multiview
from torch import nn

from gdaload.bench.evaluate import evaluate
from gdaload.bench.views import (
    ARMS,
    ViewBatches,
    ViewSet,
    ViewTask,
    generate_novel_views,
    multiview_task,
    run_view_evaluation,
)
from gdaload.metrics.plots import view_grid


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


def test_view_batches_append_each_images_generated_views_after_the_real_batch() -> None:
    data = view_set(5, 0)
    novel = torch.stack([data.images + k for k in (10, 20, 30)], dim=1)  # (5, 3, C, H, W)
    batches = list(ViewBatches(data, novel, batch_size=2, seed=0))
    assert len(batches) == 3 == len(ViewBatches(data, novel, 2, 0))
    seen = []
    for x, y, mask in batches:
        real = int((~mask).sum())
        assert mask.tolist() == [False] * real + [True] * 3 * real
        assert torch.equal(y[real:], y[:real].repeat_interleave(3))
        for i in range(real):
            assert torch.equal(x[real + 3 * i], x[i] + 10) and torch.equal(
                x[real + 3 * i + 2], x[i] + 30
            )
        seen += y[:real].tolist()
    assert sorted(seen) == sorted(data.labels.tolist())  # every real image once
    order = [b[1].tolist() for b in ViewBatches(data, None, 2, 0)]
    assert order == [b[1][~b[2]].tolist() for b in batches]  # same order with and without


def test_novel_views_are_generated_from_each_images_own_view() -> None:
    gen = tiny_multiview(steps=2)
    data = view_set(6, 3)
    seeds = list(range(6))
    views = generate_novel_views(gen, data.images, data.views, seeds)
    assert views.shape == (6, 3, 3, 8, 8) and gen.observed_view == 0
    for i in range(6):
        gen.observed_view = int(data.views[i])
        torch.testing.assert_close(views[i], gen.novel_views(data.images[i : i + 1], [i])[0])
    gen.observed_view = 0


def test_bad_input_gets_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="N labels and N view"):
        ViewSet(torch.rand(3, 3, 8, 8), torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="seeds must not be empty"):
        run_view_evaluation(tiny_task(), seeds=[], progress=False)
    with pytest.raises(FileNotFoundError, match="gdaload train-multiview"):
        multiview_task(generator_path=tmp_path)
    with pytest.raises(ValueError, match=r"valid tasks are \['digits', 'multiview'\]"):
        evaluate("imagenet", out=None)
    with pytest.raises(ValueError, match=r"\['ratios'\] do not apply"):
        evaluate("multiview", out=None, ratios=(1.0,))
    with pytest.raises(ValueError, match=r"generated must be \(N=2, K, C, H, W\)"):
        view_grid(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), [0, 1], tmp_path / "v.png")


def test_view_grid_writes_a_png(tmp_path: Path) -> None:
    images = torch.rand(2, 3, 8, 8)
    path = view_grid(
        images,
        images[:, None].expand(2, 3, 3, 8, 8),
        [0, 2],
        tmp_path / "views.png",
        view_names=["front", "back", "left", "right"],
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
