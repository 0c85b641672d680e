"""The ``gdaload`` command: ``quickstart``, ``train-generator``, ``distill``,
``train-segmentation-generator``, ``train-multiview``, ``pretrain-text2image``, ``adapt``,
``generate`` and ``evaluate``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from gdaload.generators.samplers import SAMPLERS
from gdaload.train.config import (
    AdaptConfig,
    DistillConfig,
    GeneratorTrainingConfig,
    MultiViewTrainingConfig,
    SegmentationGeneratorTrainingConfig,
    Text2ImageConfig,
)

__all__ = ["add_config_options", "build_parser", "config_from_args", "main"]

ConfigT = TypeVar("ConfigT")


def add_config_options(parser: argparse.ArgumentParser, config_type: type[Any]) -> None:
    """Add an option for each field of the dataclass ``config_type`` its metadata offers.

    A field ``batch_size`` becomes ``--batch-size``; a tuple field takes one or more
    values; a boolean that defaults to False is a switch, one that defaults to True is
    switched off by ``--no-<name>``. Help text and choices come from the field's
    metadata (see :func:`gdaload.train.config.setting`).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_config_options(parser, GeneratorTrainingConfig)
        >>> parser.parse_args(["--steps", "10", "--no-resume"]).no_resume
        True
    """
    for field, kind in _cli_fields(config_type):
        flag, meta = "--" + field.name.replace("_", "-"), field.metadata
        # ``int | None`` and the like: the option is the type, left out it stays None.
        present = [k for k in typing.get_args(kind) if k is not type(None)]
        if field.default is None and len(present) == 1 and present[0] in (int, float, str):
            kind = present[0]
        if kind is bool:
            # A switch stores True; ``--no-resume`` keeps ``args.no_resume`` as scripts know it.
            name = "--no-" + field.name.replace("_", "-") if field.default else flag
            parser.add_argument(name, action="store_true", help=meta["help"])
        elif typing.get_origin(kind) is tuple and isinstance(field.default, tuple):
            parser.add_argument(
                flag,
                type=typing.get_args(kind)[0],
                nargs="+",
                default=list(field.default),  # what parsing gives, so args compare alike
                choices=meta["choices"],
                help=meta["help"],
            )
        elif kind in (int, float, str):
            parser.add_argument(
                flag, type=kind, default=field.default, choices=meta["choices"], help=meta["help"]
            )
        else:
            raise TypeError(f"{config_type.__name__}.{field.name}: no option for {kind}")


def config_from_args(
    config_type: type[ConfigT], args: argparse.Namespace, **others: Any
) -> ConfigT:
    """The ``config_type`` that :func:`add_config_options`'s options were parsed into.

    Args:
        config_type: The dataclass the options were made from.
        args: The parsed arguments.
        **others: Values of the fields the command line does not offer.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_config_options(parser, GeneratorTrainingConfig)
        >>> config_from_args(GeneratorTrainingConfig, parser.parse_args(["--widths", "8"])).widths
        (8,)
    """
    values = dict(others)
    for field, kind in _cli_fields(config_type):
        if kind is bool and field.default:
            values[field.name] = not getattr(args, "no_" + field.name)
        else:
            values[field.name] = getattr(args, field.name)
    return config_type(**values)


def _cli_fields(config_type: type[Any]) -> list[tuple[dataclasses.Field[Any], Any]]:
    """The fields the command line offers, with their resolved types."""
    hints = typing.get_type_hints(config_type)
    fields = dataclasses.fields(config_type)
    return [(f, hints[f.name]) for f in fields if f.metadata.get("cli", False)]


def _quickstart(args: argparse.Namespace) -> None:
    from gdaload.bench.quickstart import run_quickstart

    run_quickstart(
        seeds=range(args.seeds),
        generator_path=args.generator,
        ratio=args.ratio,
        shots=args.shots,
        epochs=args.epochs,
        sampler=args.sampler,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        json_path=args.json,
    )


def _train_generator(args: argparse.Namespace) -> None:
    from gdaload.train import train_generator

    names: tuple[str, ...] | None = None
    if args.data == "digits":
        from gdaload.datasets.digits import DIGIT_CLASSES, digits_splits

        dataset: Any = digits_splits().generator_pool
        names = tuple(DIGIT_CLASSES)
    else:
        dataset = args.data
    config = config_from_args(GeneratorTrainingConfig, args, class_names=names)
    out = train_generator(dataset, args.output, config)
    print(f"saved to {out}; load it with DiffusionGenerator.from_pretrained({str(out)!r})")


def _distill(args: argparse.Namespace) -> None:
    from gdaload.bench.assets import DIGITS_GENERATOR
    from gdaload.train.distill import distill

    teacher = args.teacher or DIGITS_GENERATOR
    if args.data == "digits":
        from gdaload.datasets.digits import digits_splits

        dataset: Any = digits_splits().generator_pool
    else:
        dataset = args.data
    out = distill(teacher, dataset, args.output, config_from_args(DistillConfig, args))
    print(f"saved to {out}; load it with DiffusionGenerator.from_pretrained({str(out)!r})")


def _train_multiview(args: argparse.Namespace) -> None:
    from gdaload.datasets.multiview import MultiViewShapes
    from gdaload.train import train_multiview

    dataset = MultiViewShapes(args.instances_per_class, seed=args.data_seed, size=args.image_size)
    out = train_multiview(dataset, args.output, config_from_args(MultiViewTrainingConfig, args))
    print(f"saved to {out}; load it with MultiViewDiffusion.from_pretrained({str(out)!r})")


def _train_segmentation_generator(args: argparse.Namespace) -> None:
    from gdaload.datasets.digits import DIGIT_CLASSES
    from gdaload.datasets.segmentation import digit_segmentation_splits
    from gdaload.train.segmentation import train_segmentation_generator

    config = config_from_args(
        SegmentationGeneratorTrainingConfig, args, class_names=tuple(DIGIT_CLASSES)
    )
    pool = digit_segmentation_splits().generator_pool
    out = train_segmentation_generator(pool, args.output, config)
    loader = "MaskDiffusion" if config.kind == "mask" else "JointDiffusion"
    print(f"saved to {out}; load it with {loader}.from_pretrained({str(out)!r})")


def _digit_range(text: str) -> list[int]:
    """``"0-4"`` or ``"0,2,7"`` as a list of digits."""
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-"))
            digits = list(range(first, last + 1))
        else:
            digits = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected digits as FIRST-LAST or a comma-separated list, got {text!r}"
        ) from None
    if not digits or any(not 0 <= d <= 9 for d in digits) or len(set(digits)) != len(digits):
        raise argparse.ArgumentTypeError(f"expected distinct digits 0-9, got {text!r}")
    return digits


def _pretrain_text2image(args: argparse.Namespace) -> None:
    from gdaload.datasets.digits import digits_splits, digits_subset
    from gdaload.train.text2image import DIGIT_WORDS, pretrain_text2image

    digits = args.digits
    pool = digits_subset(digits_splits().generator_pool, digits)
    names = tuple(DIGIT_WORDS[d] for d in digits)
    config = config_from_args(Text2ImageConfig, args, class_names=names)
    out = pretrain_text2image(pool, args.output, config)
    print(
        f"saved to {out} (delete {out / 'checkpoints'} before shipping it); adapt it with "
        f"`gdaload adapt --pipeline {out} ...` or load it with "
        f"DiffusionGenerator.from_pretrained({str(out)!r})"
    )


def _epoch_range(text: str) -> range:
    """``"a:b"`` as ``range(a, b)``; a single ``"b"`` as ``range(b)``."""
    try:
        parts = [int(part) for part in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or parts[0] < 0 or (len(parts) == 2 and parts[1] <= parts[0]):
        raise argparse.ArgumentTypeError(
            f"epochs must be 'a:b' (epochs a to b-1) or 'b' (epochs 0 to b-1), got {text!r}"
        )
    return range(*parts)


def _generate(args: argparse.Namespace) -> None:
    import json
    import os

    import torch

    from gdaload.bench.assets import DIGITS_GENERATOR
    from gdaload.data import GenerativeDataset
    from gdaload.data.bulk import fill_store, process_rank_world
    from gdaload.generators import DiffusionGenerator

    rank, world = process_rank_world()
    device = args.device
    if device is None:
        local = int(os.environ.get("LOCAL_RANK", 0))
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    if args.data == "digits":
        from gdaload.datasets.digits import digits_splits

        real: Any = digits_splits(shots=args.shots, seed=args.data_seed).train
    else:
        from gdaload.datasets.folder import ClassImageFolder

        real = ClassImageFolder(args.data)
    generator = DiffusionGenerator.from_pretrained(
        args.generator or DIGITS_GENERATOR, sampler=args.sampler, steps=args.steps, device=device
    )
    dataset = GenerativeDataset(
        real,
        generator,
        ratio=args.ratio,
        seed=args.seed,
        class_policy=args.class_policy,
        store=args.store,
        refresh=args.refresh,
    )
    report = fill_store(
        dataset, args.epochs, batch_size=args.batch_size, progress=not args.no_progress
    )
    print(
        f"rank {rank}/{world}: {report.generated} generated, {report.skipped} already stored, "
        f"of {report.assigned} assigned ({report.planned} in the job); {report.seconds:.1f} s, "
        f"{report.samples_per_second:.1f} samples/s on {device}"
    )
    if args.json:
        path = args.json.format(rank=rank)
        with open(path, "w") as f:
            json.dump({**report.as_dict(), "device": device}, f, indent=2)


def _adapt(args: argparse.Namespace) -> None:
    from gdaload.train.adapt import adapt

    config = config_from_args(AdaptConfig, args, progress=not args.no_progress)
    result = adapt(args.pipeline, args.images, args.out, config)
    print(
        f"adapted {len(result.adapter.class_names)} classes ({config.method}, tokens "
        f"{', '.join(result.adapter.tokens)}) in {result.seconds:.0f} s; saved to "
        f"{result.folder}; generate with DiffusionGenerator.from_pretrained("
        f"{str(args.pipeline)!r}, adapter={str(result.folder)!r})"
    )


def _evaluate(args: argparse.Namespace) -> None:
    from gdaload.bench.evaluate import evaluate

    task_options = {
        k: v
        for k, v in (
            ("shots", args.shots),
            ("sampler", args.sampler),
            ("steps", args.steps),
            ("generator_path", args.generator),
        )
        if v is not None
    }
    settings = {
        k: v
        for k, v in (
            ("ratios", args.ratios),
            ("ratio", args.ratio),
            ("epochs", args.epochs),
            ("selection", args.selection),
            ("candidates", args.candidates),
        )
        if v is not None
    }
    if args.seeds is not None:
        settings["seeds"] = tuple(range(args.seeds))
    evaluate(
        args.task,
        out=args.out,
        quick=args.quick,
        progress=not args.no_progress,
        task_options=task_options,
        **settings,
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``gdaload`` parser; each command's function is ``args.func``.

    Example:
        >>> args = build_parser().parse_args(["train-generator", "--data", "d", "--output", "x"])
        >>> args.steps, args.widths, args.no_resume
        (2000, [32, 64], False)
    """
    parser = argparse.ArgumentParser(prog="gdaload", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    q = sub.add_parser("quickstart", help="few-shot digits with and without GDA")
    q.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1)")
    q.add_argument("--generator", default=None, help="pipeline folder (default: shipped model)")
    q.add_argument("--ratio", type=float, default=2.0, help="synthetic per real sample, m_G/m_S")
    q.add_argument("--shots", type=int, default=10, help="labelled images per class")
    q.add_argument("--epochs", type=int, default=40)
    q.add_argument("--sampler", choices=sorted(SAMPLERS), default="dpm-solver++")
    q.add_argument("--steps", type=int, default=10, help="sampler steps")
    q.add_argument("--guidance-scale", type=float, default=1.0)
    q.add_argument("--json", default=None, help="also write the results to this JSON file")
    q.set_defaults(func=_quickstart)

    t = sub.add_parser("train-generator", help="train a class-conditional diffusion model")
    t.add_argument(
        "--data",
        required=True,
        help="'digits' (the quickstart's generator pool) or an image folder with "
        "one sub-folder per class",
    )
    t.add_argument("--output", required=True, help="folder to save the pipeline in")
    add_config_options(t, GeneratorTrainingConfig)
    t.set_defaults(func=_train_generator)

    d = sub.add_parser(
        "distill", help="distil a class-conditional generator into a 1-4 step one (LCM)"
    )
    d.add_argument("--teacher", default=None, help="generator folder (default: shipped model)")
    d.add_argument(
        "--data",
        default="digits",
        help="real images: 'digits' (the shipped model's training pool) or an image "
        "folder with one sub-folder per class",
    )
    d.add_argument("--output", required=True, help="folder to save the distilled model in")
    add_config_options(d, DistillConfig)
    d.set_defaults(func=_distill)

    s = sub.add_parser(
        "train-segmentation-generator",
        help="train a mask-conditioned (--kind mask) or joint image-and-mask (--kind joint) "
        "diffusion model on the digits' stroke masks",
    )
    s.add_argument("--output", required=True, help="folder to save the model in")
    add_config_options(s, SegmentationGeneratorTrainingConfig)
    s.set_defaults(func=_train_segmentation_generator)

    m = sub.add_parser(
        "train-multiview", help="train a multi-view diffusion model (DiMViDA) on MultiViewShapes"
    )
    m.add_argument("--output", required=True, help="folder to save the model in")
    m.add_argument(
        "--instances-per-class",
        type=int,
        default=100,
        help="training objects per class of the shipped multi-view dataset",
    )
    m.add_argument("--data-seed", type=int, default=0, help="seed of the rendered dataset")
    m.add_argument("--image-size", type=int, default=32)
    add_config_options(m, MultiViewTrainingConfig)
    m.set_defaults(func=_train_multiview)

    p = sub.add_parser(
        "pretrain-text2image",
        help="pretrain a small Stable-Diffusion-architecture text-to-image model on some "
        "digits (the stand-in for a pretrained model)",
    )
    p.add_argument("--output", required=True, help="folder to save the pipeline in")
    p.add_argument(
        "--digits",
        type=_digit_range,
        default=[0, 1, 2, 3, 4],
        help="digits of the generator pool to train on, e.g. 0-4 (default) or 0,3,8",
    )
    add_config_options(p, Text2ImageConfig)
    p.set_defaults(func=_pretrain_text2image)

    a = sub.add_parser(
        "adapt",
        help="adapt a pretrained Stable Diffusion model to your classes (textual inversion "
        "or LoRA)",
    )
    a.add_argument("--pipeline", required=True, help="local Stable Diffusion pipeline folder")
    a.add_argument("--images", required=True, help="image folder with one sub-folder per class")
    a.add_argument("--out", required=True, help="folder to save the adapter in")
    add_config_options(a, AdaptConfig)
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    a.set_defaults(func=_adapt)

    g = sub.add_parser(
        "generate",
        help="fill a sample store with the synthetic samples of a range of epochs, split "
        "across the processes of a torchrun / accelerate launch job",
    )
    g.add_argument("--store", required=True, help="sample store folder")
    g.add_argument(
        "--epochs", type=_epoch_range, required=True, help="'a:b' (epochs a..b-1) or 'b'"
    )
    g.add_argument(
        "--data",
        default="digits",
        help="the real data whose labels the plan follows: 'digits' (the quickstart's "
        "few-shot split) or an image folder with one sub-folder per class",
    )
    g.add_argument("--shots", type=int, default=10, help="digits: labelled images per class")
    g.add_argument("--data-seed", type=int, default=0, help="digits: seed of the split")
    g.add_argument("--generator", default=None, help="pipeline folder (default: shipped model)")
    g.add_argument("--ratio", type=float, default=2.0, help="synthetic per real sample, m_G/m_S")
    g.add_argument("--seed", type=int, default=0, help="seed of the synthetic plan")
    g.add_argument("--class-policy", default="match", choices=["match", "uniform", "balance"])
    g.add_argument("--refresh", type=float, default=1.0, help="fraction made fresh per epoch")
    g.add_argument("--sampler", choices=sorted(SAMPLERS), default="dpm-solver++")
    g.add_argument("--steps", type=int, default=10, help="sampler steps")
    g.add_argument("--batch-size", type=int, default=64, help="samples per generate call")
    g.add_argument(
        "--device", default=None, help="default: cuda:$LOCAL_RANK when CUDA is there, else cpu"
    )
    g.add_argument(
        "--json", default=None, help="write this process's summary here ('{rank}' is filled in)"
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.set_defaults(func=_generate)

    e = sub.add_parser(
        "evaluate",
        help="benchmark real-only, classic augmentation, mixup, GDA at "
        "several ratios, GenMix and selection (digits), or "
        "test-time averaging over generated views (multiview)",
    )
    e.add_argument("--task", default="digits", help="built-in task: digits or multiview")
    e.add_argument(
        "--generator", default=None, help="the task's generator folder (default: the shipped model)"
    )
    e.add_argument("--out", default="gdaload-evaluate", help="folder for the report and pictures")
    e.add_argument(
        "--quick", action="store_true", help="CI-sized run: 2 seeds, 10 epochs, 2 ratios"
    )
    e.add_argument("--seeds", type=int, default=None, help="number of seeds (0..N-1); default 5")
    e.add_argument(
        "--ratios",
        type=float,
        nargs="+",
        default=None,
        help="m_G/m_S of the GDA curve; default 0.25 0.5 1 2 4",
    )
    e.add_argument("--ratio", type=float, default=None, help="m_G/m_S of GenMix and selection")
    e.add_argument("--epochs", type=int, default=None, help="default: the task's")
    e.add_argument("--selection", default=None, help="topk (default), realism or cluster")
    e.add_argument("--candidates", type=int, default=None, help="candidates per sample")
    e.add_argument("--shots", type=int, default=None, help="labelled images per class")
    e.add_argument("--sampler", choices=sorted(SAMPLERS), default=None)
    e.add_argument("--steps", type=int, default=None, help="sampler steps")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``gdaload`` command with ``argv`` (default: ``sys.argv[1:]``).

    Example:
        >>> main(["train-multiview", "--output", "runs/mv", "--steps", "30000"])  # doctest: +SKIP
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    args.func(args)


if __name__ == "__main__":
    main()
