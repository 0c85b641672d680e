"""The arithmetic of benchmarks/cost_frontier.py: fractions of the fresh arm and the goal."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cost_frontier.py"


@pytest.fixture(scope="module")
def frontier():
    spec = importlib.util.spec_from_file_location("cost_frontier", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _report_inputs(frontier, cheap_gain: list[float], cheap_seconds: list[float]):
    base = [0.80, 0.90, 0.85]
    fresh_gain = [0.10, 0.05, 0.0]  # the last seed: no fresh gain, so no fraction
    accuracy = {arm: list(base) for arm in frontier.ARMS}
    accuracy[frontier.FRESH] = [b + g for b, g in zip(base, fresh_gain, strict=True)]
    cheap = "GDA refresh=0.25"
    accuracy[cheap] = [b + g for b, g in zip(base, cheap_gain, strict=True)]
    seconds = {arm: [0.0] * 3 for arm in frontier.ARMS}
    seconds[frontier.FRESH] = [100.0, 100.0, 100.0]
    seconds[cheap] = cheap_seconds
    for arm in ("GDA refresh=0.5", "GDA fixed set (refresh=0)", "GDA replace (refresh=1)"):
        seconds[arm] = [100.0] * 3
    return accuracy, seconds, cheap


def test_fractions_are_paired_by_seed_and_skip_a_zero_reference(frontier) -> None:
    accuracy, seconds, cheap = _report_inputs(frontier, [0.10, 0.045, 0.02], [20.0, 25.0, 30.0])
    summary = frontier.summarise(accuracy, seconds, seconds)
    frac, half = summary[cheap]["gain_fraction"]
    assert frac == pytest.approx(0.95) and half > 0  # (1.0 + 0.9) / 2; seed 3 left out
    assert summary[cheap]["gain_fraction_of_means"] == pytest.approx(0.165 / 0.15)
    assert summary[cheap]["generation_seconds_fraction"][0] == pytest.approx(0.25)
    assert summary[frontier.FRESH]["gain_fraction"] == [1.0, 0.0]
    assert summary[frontier.BASELINE]["generation_seconds_fraction"][0] == 0.0
    goal = frontier.goal(summary)
    assert goal["met_by"] == [cheap]
    assert goal["arms"][cheap]["met"] and not goal["arms"][cheap]["met_with_ci"]


def test_goal_not_met_when_the_cheap_arm_loses_gain_or_costs_too_much(frontier) -> None:
    accuracy, seconds, cheap = _report_inputs(frontier, [0.08, 0.04, 0.0], [20.0, 30.0, 40.0])
    assert frontier.goal(frontier.summarise(accuracy, seconds, seconds))["met_by"] == []
    accuracy, seconds, cheap = _report_inputs(frontier, [0.10, 0.05, 0.0], [30.0, 31.0, 32.0])
    assert frontier.goal(frontier.summarise(accuracy, seconds, seconds))["met_by"] == []


def test_one_seed_gives_no_interval_and_json_safe_values(frontier) -> None:
    accuracy = {arm: [0.5] for arm in frontier.ARMS}
    accuracy[frontier.FRESH] = [0.5]  # no gain at all
    seconds = {arm: [1.0] for arm in frontier.ARMS}
    summary = frontier.summarise(accuracy, seconds, seconds)
    assert summary[frontier.FRESH]["gain_fraction"] == [None, None]
    assert summary[frontier.FRESH]["accuracy"] == [0.5, None]
    assert summary[frontier.FRESH]["gain_fraction_of_means"] is None
    assert not any(
        isinstance(v, float) and not math.isfinite(v)
        for arm in summary.values()
        for pair in arm.values()
        for v in (pair if isinstance(pair, list) else [pair])
    )


def test_analyse_adds_wall_seconds_and_judges_samples_too(frontier) -> None:
    accuracy, seconds, cheap = _report_inputs(frontier, [0.10, 0.05, 0.0], [90.0, 90.0, 90.0])
    generated = {arm: [s / 4 for s in values] for arm, values in seconds.items()}
    generated[cheap] = [20.0, 20.0, 20.0]  # the fresh arm generated 25 per seed
    per_seed = {
        "accuracy": accuracy,
        "generation_seconds": seconds,
        "generated": generated,
        "wall_seconds": {arm: [1.0, 2.0, 3.0] for arm in frontier.ARMS},
    }
    summary, verdict = frontier.analyse(per_seed)
    assert summary[cheap]["wall_seconds"][0] == pytest.approx(2.0)
    assert verdict["met_by"] == []  # 90% of the fresh arm's seconds
    assert verdict["met_on_samples_by"] == []  # 20 of 25 samples: 80%
    generated[cheap] = [5.0, 5.0, 5.0]  # 20% of 25
    assert frontier.analyse(per_seed)[1]["met_on_samples_by"] == [cheap]
