import json
from pathlib import Path

import pytest

from gdaload import DiffusionGenerator
from gdaload.bench.evaluate import mean_ci
from gdaload.bench.quickstart import DIGITS_GENERATOR, run_quickstart
from gdaload.cli import build_parser


def test_shipped_digits_generator_loads() -> None:
    gen = DiffusionGenerator.from_pretrained(DIGITS_GENERATOR, steps=2, device="cpu")
    assert gen.num_classes == 10 and gen.image_shape == (1, 8, 8)
    assert gen.class_names == [str(d) for d in range(10)]


def test_quickstart_runs_end_to_end_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "quickstart.json"
    report = run_quickstart(seeds=[0], ratio=0.5, epochs=1, steps=2, json_path=out)
    assert set(report["accuracy"]) == {"real only", "GDA"}
    assert all(0 <= acc <= 1 for accs in report["accuracy"].values() for acc in accs)
    assert json.loads(out.read_text())["ratio"] == 0.5


def test_mean_ci() -> None:
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(2.4841, abs=1e-3)


def test_cli_parses_both_commands() -> None:
    args = build_parser().parse_args(["quickstart", "--seeds", "2", "--sampler", "ddim"])
    assert args.seeds == 2 and args.sampler == "ddim"
    args = build_parser().parse_args(["train-generator", "--data", "digits", "--output", "x"])
    assert args.steps == 2000 and args.widths == [32, 64]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["quickstart", "--sampler", "fast"])
