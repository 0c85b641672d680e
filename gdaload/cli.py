"""The ``gdaload`` command: ``quickstart``, ``train-generator``, ``train-multiview`` and
``evaluate``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from gdaload.generators.samplers import SAMPLERS

__all__ = ["main"]


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
    from gdaload.train.generator import train_generator

    if args.data == "digits":
        from gdaload.datasets.digits import DIGIT_CLASSES, digits_splits

        dataset, names = digits_splits().generator_pool, DIGIT_CLASSES
    else:
        dataset, names = args.data, None
    out = train_generator(
        dataset,
        args.output,
        class_names=names,
        image_size=args.image_size,
        channels=args.channels,
        widths=args.widths,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        label_dropout=args.label_dropout,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        resume=not args.no_resume,
        cpu=args.cpu,
    )
    print(f"saved to {out}; load it with DiffusionGenerator.from_pretrained({str(out)!r})")


def _train_multiview(args: argparse.Namespace) -> None:
    from gdaload.datasets.multiview import MultiViewShapes
    from gdaload.train.multiview import train_multiview

    dataset = MultiViewShapes(args.instances_per_class, seed=args.data_seed, size=args.image_size)
    out = train_multiview(
        dataset,
        args.output,
        detail_channels=args.detail_channels,
        ae_widths=args.ae_widths,
        ae_steps=args.ae_steps,
        ae_batch_size=args.ae_batch_size,
        ae_lr=args.ae_lr,
        widths=args.widths,
        layers_per_block=args.layers_per_block,
        attention=not args.no_attention,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        p_uncond=args.p_uncond,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        resume=not args.no_resume,
        cpu=args.cpu,
    )
    print(f"saved to {out}; load it with MultiViewDiffusion.from_pretrained({str(out)!r})")


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
    t.add_argument("--image-size", type=int, default=32, help="for image folders")
    t.add_argument("--channels", type=int, default=3, choices=(1, 3), help="for image folders")
    t.add_argument("--widths", type=int, nargs="+", default=[32, 64], help="UNet level widths")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--label-dropout", type=float, default=0.1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    t.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")
    t.set_defaults(func=_train_generator)

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
    m.add_argument(
        "--detail-channels",
        type=int,
        default=3,
        help="learned latent channels per view, beside its thumbnail",
    )
    m.add_argument(
        "--ae-widths",
        type=int,
        nargs="+",
        default=[16, 32],
        help="autoencoder level widths; each level halves the latent side",
    )
    m.add_argument("--ae-steps", type=int, default=1000)
    m.add_argument("--ae-batch-size", type=int, default=64, help="views per autoencoder batch")
    m.add_argument("--ae-lr", type=float, default=2e-3)
    m.add_argument("--widths", type=int, nargs="+", default=[48, 96], help="UNet level widths")
    m.add_argument("--layers-per-block", type=int, default=1)
    m.add_argument(
        "--no-attention", action="store_true", help="no self-attention at the UNet's coarsest level"
    )
    m.add_argument("--steps", type=int, default=3000, help="diffusion training steps")
    m.add_argument("--batch-size", type=int, default=64, help="objects per diffusion batch")
    m.add_argument("--lr", type=float, default=2e-3)
    m.add_argument(
        "--p-uncond",
        type=float,
        default=0.2,
        help="probability that a training object has no conditioning view",
    )
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--checkpoint-every", type=int, default=500)
    m.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    m.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")
    m.set_defaults(func=_train_multiview)

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
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    args.func(args)


if __name__ == "__main__":
    main()
