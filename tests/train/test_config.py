"""Trainer configs and the command line built from them: flags, defaults, round trip."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import pytest

import gdaload.train
from gdaload.cli import add_config_options, build_parser, config_from_args, main
from gdaload.train.config import AdaptConfig, GeneratorTrainingConfig, MultiViewTrainingConfig

# The options and defaults of the two commands, as they were written out by hand before
# the configs existed; scripts depend on them.
GENERATOR_OPTIONS = {
    "--data": None,
    "--output": None,
    "--image-size": 32,
    "--channels": 3,
    "--widths": [32, 64],
    "--steps": 2000,
    "--batch-size": 64,
    "--lr": 1e-3,
    "--label-dropout": 0.1,
    "--seed": 0,
    "--checkpoint-every": 500,
    "--no-resume": False,
    "--cpu": False,
}
MULTIVIEW_OPTIONS = {
    "--output": None,
    "--instances-per-class": 100,
    "--data-seed": 0,
    "--image-size": 32,
    "--detail-channels": 3,
    "--ae-widths": [16, 32],
    "--ae-steps": 1000,
    "--ae-batch-size": 64,
    "--ae-lr": 2e-3,
    "--widths": [48, 96],
    "--layers-per-block": 1,
    "--no-attention": False,
    "--steps": 3000,
    "--batch-size": 64,
    "--lr": 2e-3,
    "--p-uncond": 0.2,
    "--seed": 0,
    "--checkpoint-every": 500,
    "--no-resume": False,
    "--cpu": False,
}


def command(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("train-generator", GENERATOR_OPTIONS), ("train-multiview", MULTIVIEW_OPTIONS)],
)
def test_commands_keep_their_options_and_defaults(name: str, expected: dict) -> None:
    actions = [a for a in command(name)._actions if a.dest != "help"]
    assert {a.option_strings[0]: a.default for a in actions} == expected
    assert [a.option_strings[0] for a in actions] == list(expected)  # --help order too
    channels = (
        next(a for a in actions if a.dest == "channels") if "--channels" in expected else None
    )
    assert channels is None or tuple(channels.choices) == (1, 3)


def non_default(field: dataclasses.Field, kind: type) -> Any:
    if field.metadata["choices"]:
        return next(c for c in field.metadata["choices"] if c != field.default)
    if kind is bool:
        return not field.default
    if isinstance(field.default, tuple):
        return (7, 9)
    return field.default + (1 if kind is int else 0.05)


def as_argv(field: dataclasses.Field, value: Any) -> list[str]:
    flag = "--" + field.name.replace("_", "-")
    if isinstance(value, bool):
        return [f"--no-{flag[2:]}"] if field.default else [flag]
    return [flag, *map(str, value if isinstance(value, tuple) else [value])]


@pytest.mark.parametrize("config_type", [GeneratorTrainingConfig, MultiViewTrainingConfig])
def test_every_option_round_trips_into_the_config(config_type: type) -> None:
    parser = argparse.ArgumentParser()
    add_config_options(parser, config_type)
    assert config_from_args(config_type, parser.parse_args([])) == config_type()
    hints = {f.name: type(f.default) for f in dataclasses.fields(config_type)}
    offered = [f for f in dataclasses.fields(config_type) if f.metadata["cli"]]
    changed = {f.name: non_default(f, hints[f.name]) for f in offered}
    argv = [arg for f in offered for arg in as_argv(f, changed[f.name])]
    parsed = config_from_args(config_type, parser.parse_args(argv))
    assert parsed == dataclasses.replace(config_type(), **changed)
    # Settings for Python callers only are not offered.
    hidden = {f.name for f in dataclasses.fields(config_type)} - set(changed)
    assert {"ema_decay", "progress", "class_names"} <= hidden
    assert not any(action.dest in hidden for action in parser._actions)


def test_adapt_options_round_trip_into_its_config() -> None:
    parser = argparse.ArgumentParser()
    add_config_options(parser, AdaptConfig)
    assert config_from_args(AdaptConfig, parser.parse_args([])) == AdaptConfig()
    argv = "--method lora --token-format <gda-{name}> --init-word dog --prompt {token}"
    argv += " --rank 8 --prior-images 3 --prior-prompt a-{name} --prior-loss-weight 0.5"
    argv += " --prior-sampling-steps 9 --resolution 256 --steps 7 --batch-size 2 --lr 1e-4"
    argv += " --seed 3 --checkpoint-every 5 --no-resume --cpu"
    parsed = config_from_args(AdaptConfig, parser.parse_args(argv.split()))
    assert parsed == AdaptConfig(
        method="lora",
        token_format="<gda-{name}>",
        init_word="dog",
        prompt="{token}",
        rank=8,
        prior_images=3,
        prior_prompt="a-{name}",
        prior_loss_weight=0.5,
        prior_sampling_steps=9,
        resolution=256,
        steps=7,
        batch_size=2,
        lr=1e-4,
        seed=3,
        checkpoint_every=5,
        resume=False,
        cpu=True,
    )
    hidden = {"class_names", "progress"}
    assert not any(action.dest in hidden for action in parser._actions)


def test_commands_hand_the_config_to_the_trainers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake(dataset: Any, output: str, config: Any) -> Path:
        calls.append((dataset, output, config))
        return Path(output)

    monkeypatch.setattr(gdaload.train, "train_generator", fake)
    monkeypatch.setattr(gdaload.train, "train_multiview", fake)
    main(["train-generator", "--data", str(tmp_path), "--output", "g", "--steps", "7"])
    main(["train-multiview", "--output", "m", "--instances-per-class", "1", "--image-size", "16"])
    main(["train-multiview", "--output", "m", "--instances-per-class", "1", "--no-attention"])
    main(["train-multiview", "--output", "m", "--instances-per-class", "1", "--no-resume", "--cpu"])
    assert calls[0] == (str(tmp_path), "g", GeneratorTrainingConfig(steps=7))
    dataset, output, config = calls[1]
    assert len(dataset) == 16 and dataset[0][0].shape[-1] == 16
    assert (output, config) == ("m", MultiViewTrainingConfig())
    assert calls[2][2] == MultiViewTrainingConfig(attention=False)
    assert calls[3][2] == MultiViewTrainingConfig(resume=False, cpu=True)


@pytest.mark.reliability
def test_configs_validate_and_merge_options() -> None:
    config = GeneratorTrainingConfig(widths=[16, 16], class_names=["a", "b"])
    assert config.widths == (16, 16) and config.class_names == ("a", "b")
    assert GeneratorTrainingConfig.resolve(config, {"steps": 3}).steps == 3
    assert GeneratorTrainingConfig.resolve(None, {}) == GeneratorTrainingConfig()
    with pytest.raises(TypeError, match="must be a GeneratorTrainingConfig"):
        GeneratorTrainingConfig.resolve(MultiViewTrainingConfig(), {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1, got 0"):
        GeneratorTrainingConfig(checkpoint_every=0)
    with pytest.raises(ValueError, match="layers_per_block must be >= 1"):
        MultiViewTrainingConfig(layers_per_block=0)
    with pytest.raises(ValueError, match=r"p_uncond must be in \[0, 1\)"):
        MultiViewTrainingConfig(p_uncond=-0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"method": "dreambooth"}, "method must be textual-inversion or lora"),
        ({"token_format": "<tok>"}, "token_format must contain"),
        ({"prompt": "a photo of a {name}"}, "must contain '\\{token\\}'"),
        ({"resolution": 0}, "resolution must be >= 1"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"method": "lora", "prior_images": -1}, "prior_images must be >= 0"),
        ({"method": "lora", "prior_loss_weight": 0.0}, "prior_loss_weight must be > 0"),
    ],
)
def test_adapt_config_explains_bad_settings(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AdaptConfig(**options)
