"""The ``gdaload`` command: ``quickstart`` and ``train-generator``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from gdaload.generators.samplers import SAMPLERS

__all__ = ["main"]


def _quickstart(args: argparse.Namespace) -> None:
    from gdaload.quickstart import run_quickstart

    run_quickstart(
        seeds=range(args.seeds), generator_path=args.generator, ratio=args.ratio, shots=args.shots,
        epochs=args.epochs, sampler=args.sampler, steps=args.steps,
        guidance_scale=args.guidance_scale, json_path=args.json,
    )


def _train_generator(args: argparse.Namespace) -> None:
    from gdaload.generators.training import train_generator

    if args.data == "digits":
        from gdaload.datasets.digits import DIGIT_CLASSES, digits_splits

        dataset, names = digits_splits().generator_pool, DIGIT_CLASSES
    else:
        dataset, names = args.data, None
    out = train_generator(
        dataset, args.output, class_names=names, image_size=args.image_size,
        channels=args.channels, widths=args.widths, steps=args.steps, batch_size=args.batch_size,
        lr=args.lr, label_dropout=args.label_dropout, seed=args.seed,
        checkpoint_every=args.checkpoint_every, resume=not args.no_resume, cpu=args.cpu,
    )
    print(f"saved to {out}; load it with DiffusionGenerator.from_pretrained({str(out)!r})")


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
    t.add_argument("--data", required=True,
                   help="'digits' (the quickstart's generator pool) or an image folder with "
                        "one sub-folder per class")
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
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    args.func(args)


if __name__ == "__main__":
    main()
