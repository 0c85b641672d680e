import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from gdaload.bench.evaluate import EvalSettings, evaluate, run_evaluation
from gdaload.bench.tasks import Task
from gdaload.cli import build_parser

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds {constant}, which is not valid JSON")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def assert_files(files: dict[str, str]) -> None:
    assert set(files) == {"samples", "tsne", "accuracy_vs_ratio", "markdown", "json"}
    for key in ("samples", "tsne", "accuracy_vs_ratio"):
        assert Path(files[key]).read_bytes().startswith(PNG_SIGNATURE)
    assert "| arm |" in Path(files["markdown"]).read_text()


@pytest.mark.reliability
def test_evaluate_lists_the_valid_tasks() -> None:
    with pytest.raises(ValueError, match="valid tasks are"):
        evaluate("cifar", out=None)


def own_task(seed_generator) -> Task:
    """A user's own data, generator and classifier plugged in: 3 classes of 1x4x4 images."""

    def splits(seed: int) -> tuple[TensorDataset, TensorDataset]:
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(24) % 3
        x = torch.rand(24, 1, 4, 4, generator=g)
        x[:, 0, 0, 0] = y / 2  # the class, as the generator writes it
        return TensorDataset(x[:12], y[:12]), TensorDataset(x[12:], y[12:])

    return Task(
        name="own",
        splits=splits,
        generator=seed_generator,
        num_classes=3,
        epochs=1,
        batch_size=6,
        classifier=lambda: nn.Sequential(
            nn.Flatten(), nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 3)
        ),
    )


def test_own_task_runs_every_arm_and_writes_strict_json(tmp_path: Path, seed_generator) -> None:
    settings = EvalSettings(
        seeds=(0,), ratios=(0.5, 1.0), ratio=1.0, candidates=2, quality_samples=12, tsne_points=6
    )
    report = run_evaluation(own_task(seed_generator), settings, out=tmp_path, progress=False)
    assert list(report["accuracy"]) == [
        "real only",
        "mixup (real-real)",
        "GDA m_G/m_S=0.5",
        "GDA m_G/m_S=1",
        "GenMix m_G/m_S=1",
        "GDA + TopK m_G/m_S=1",
    ]  # no classic augmentation: augment=None
    assert report["best_ratio"] in (0.5, 1.0)
    assert {"FID", "KID", "precision", "recall", "coherence"} <= set(report["generated_quality"])
    assert_files(report["files"])
    saved = strict_json(tmp_path / "own_report.json")
    assert saved["mean_ci95"]["real only"][1] is None  # one seed: no interval
    with pytest.raises(ValueError, match="valid ones"):
        run_evaluation(own_task(seed_generator), EvalSettings(selection="best"), progress=False)


def test_evaluate_digits_end_to_end(tmp_path: Path) -> None:
    report = evaluate(
        "digits",
        out=tmp_path,
        quick=True,
        progress=False,
        epochs=1,
        ratios=(1.0,),
        ratio=1.0,
        quality_samples=140,
        tsne_points=30,
        task_options={"steps": 2},
    )
    names = list(report["accuracy"])
    assert names[:3] == ["real only", "classic augmentation", "mixup (real-real)"]
    assert all(len(v) == 2 and 0 <= min(v) <= max(v) <= 1 for v in report["accuracy"].values())
    assert_files(report["files"])
    saved = strict_json(tmp_path / "digits_report.json")
    assert saved["settings"]["seeds"] == [0, 1] and saved["settings"]["epochs"] == 1
    assert saved["generated_quality"]["FID"][0] > 0


def test_cli_parses_evaluate() -> None:
    args = build_parser().parse_args(["evaluate", "--quick", "--seeds", "3", "--ratios", "1", "2"])
    assert args.quick and args.seeds == 3 and args.ratios == [1.0, 2.0] and args.task == "digits"
    assert args.epochs is None and args.func.__name__ == "_evaluate"
