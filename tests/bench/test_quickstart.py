import json
from pathlib import Path

import pytest

from gdaload.bench.quickstart import run_quickstart
from gdaload.cli import build_parser


def test_quickstart_runs_end_to_end_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "quickstart.json"
    report = run_quickstart(seeds=[0], ratio=0.5, epochs=1, steps=2, json_path=out)
    assert set(report["accuracy"]) == {"real only", "GDA"}
    assert all(0 <= acc <= 1 for accs in report["accuracy"].values() for acc in accs)
    assert json.loads(out.read_text())["ratio"] == 0.5
    generation = report["generation_seconds"]
    assert generation["real only"] == 0 < generation["GDA"] <= report["seconds"]["GDA"]


def test_two_short_runs_give_identical_numbers_and_show_progress(capsys) -> None:
    settings = {"seeds": [1], "ratio": 0.5, "epochs": 1, "steps": 2}
    first = run_quickstart(**settings)
    err = capsys.readouterr().err
    assert "quickstart seed 1" in err and "2/2" in err  # one step per arm
    assert "Loading pipeline components" not in err
    again = run_quickstart(**settings, progress=False)
    assert again["accuracy"] == first["accuracy"]  # bit for bit, per arm
    assert "quickstart" not in capsys.readouterr().err


def test_cli_parses_both_commands() -> None:
    args = build_parser().parse_args(["quickstart", "--seeds", "2", "--sampler", "ddim"])
    assert args.seeds == 2 and args.sampler == "ddim"
    args = build_parser().parse_args(["train-generator", "--data", "digits", "--output", "x"])
    assert args.steps == 2000 and args.widths == [32, 64]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["quickstart", "--sampler", "fast"])
