"""The feedback benchmark of ``benchmarks/feedback.py`` on imbalanced MultiViewShapes views.

The same arms, training loop, metrics and summaries as the digits benchmark (its
``run_seed``, ``summarise`` and ``tables``), on single views of MultiViewShapes objects
(16 classes, rendered at 16x16, ``SIZE``, the smallest the renderer allows, to keep the
run CPU-cheap).

Generators (built once into ``--generator-cache`` when missing, their settings are in the
report): ``GenerativeLoader`` takes class-conditional single-image generators, not the
shipped multi-view one, so a class-conditional generator of single views is trained with
the library's trainer (:func:`gdaload.train.train_generator`, the shipped digits recipe:
UNet widths (32, 64), batch 64, lr 1e-3, EMA 0.999, seed 0) on all four views, as separate
images, of ``POOL_PER_CLASS`` objects per class that no arm trains, validates or tests on
(``MultiViewShapes(seed=derive_seed(DATA_SEED, 2))``). The strong generator is trained for
``--strong-steps`` steps; the weak one is the same run stopped after ``--weak-steps``.

Split (per seed ``s``): ``SHOTS + VAL_SHOTS`` objects per class
(``MultiViewShapes(seed=derive_seed(DATA_SEED, s, 1))``, the training objects of the
view benchmark, ``gdaload.bench.views``), each seen from one view drawn per object (the
paper's single-view setting, drawn as the view benchmark draws it). The first
``SHOTS`` of each class train (the first ``--minority-shots`` for the two minority classes
``s % 16`` and ``(s + 8) % 16``), the last ``VAL_SHOTS`` are a validation set that only the
feedback and adaptive-ratio arms read. Every arm is tested on one view of each of
``TEST_PER_CLASS`` fixed test objects per class (``MultiViewShapes(seed=DATA_SEED,
split="test")``, views drawn as the view benchmark does). The classifier is a small CNN for
16x16 views (:func:`small_view_cnn`); the rest of the protocol is that of
``benchmarks/feedback.py``: every arm trains from the same initial weights on the same real
batches in the same order (Adam, lr 1e-3, ``--batch-size`` real images per batch,
``--epochs`` epochs, 20 by default against the digits' 30, to fit a CPU budget) with fresh
synthetic samples each epoch.

Arms: real only; GDA ``match``; GDA ``balance``; ``feedback`` (per-class validation recall
handed to ``loader.feedback`` after each epoch); feedback + hard-example variations
(``loader.hard_examples(scores=1 - confidence, top=--hard-top)``); adaptive ratio
(``balance`` with :class:`~gdaload.AdaptiveRatio`); and for the strong and the weak
generator GDA (``balance``), paper GenMix and quality-aware GenMix (quality: the seed's
real-only classifier's confidence in a synthetic row's intended class).

Columns: test accuracy, macro-F1, worst-class sensitivity, mean sensitivity of the two
minority classes; means with 95% CIs over seeds and gains paired by seed. The report is
rewritten after every seed, so a cut-off run leaves the seeds it finished
(``seeds_completed``).

Run: OMP_NUM_THREADS=1 python benchmarks/feedback_multiview.py --seeds 5
(and, for the README's longer-trained strong generator, the same with
``--strong-steps 2000 --generator-cache DIR``
``--out benchmarks/results/feedback_multiview-strong2000``)

Generator check (``--reference-only``, no arms): a classifier trained on the pool itself
(20 epochs, batch 64) reads the intended class of 40 samples per class of each generator;
written to ``benchmarks/results/feedback_multiview-reference.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from feedback import Results, fit, pct, real_batches, run_seed, summarise, tables
from torch import nn
from torch.utils.data import ConcatDataset, TensorDataset

from gdaload import DiffusionGenerator
from gdaload.bench.classifier import predict
from gdaload.datasets.multiview import CLASSES, VIEW_NAMES, MultiViewShapes
from gdaload.seeding import Stream, derive_rng, derive_seed

SIZE = 16
DATA_SEED = 0
POOL_PER_CLASS = 50
SHOTS, VAL_SHOTS, TEST_PER_CLASS = 6, 4, 64
NUM_CLASSES = len(CLASSES)
SECONDS_FILE = "training_seconds.txt"


def small_view_cnn(num_classes: int = NUM_CLASSES) -> nn.Module:
    """A two-level CNN for 16x16 RGB views (``view_cnn`` is built for 32x32).

    Args:
        num_classes: Outputs of the last layer.

    Returns:
        An untrained ``nn.Sequential`` mapping ``(B, 3, 16, 16)`` to logits.
    """
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 16, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def single_views(objects: MultiViewShapes, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One view of each object, drawn per object as ``gdaload.bench.views`` draws it.

    Args:
        objects: The objects, all four views.
        seed: Seeds the views (with the split, so train and test draws differ).

    Returns:
        ``(images (N, 3, H, W), labels (N,))`` in the dataset's (class-major) order.
    """
    stacks = torch.stack([objects[i][0] for i in range(len(objects))])
    flag = int(objects.split == "test")
    views = derive_rng(seed, Stream.BENCH_VIEW, flag).integers(len(VIEW_NAMES), size=len(stacks))
    images = stacks[torch.arange(len(stacks)), torch.from_numpy(views)]
    return images, torch.tensor(objects.targets)


def imbalanced_split(seed: int, minority_shots: int) -> dict[str, Any]:
    """The training, validation and test views of ``seed`` and its two minority classes."""
    objects = MultiViewShapes(SHOTS + VAL_SHOTS, seed=derive_seed(DATA_SEED, seed, 1), size=SIZE)
    x, y = single_views(objects, seed)
    minority = (seed % NUM_CLASSES, (seed + NUM_CLASSES // 2) % NUM_CLASSES)
    train, val = [], []
    for c in range(NUM_CLASSES):
        idx = torch.nonzero(y == c).flatten()
        keep = minority_shots if c in minority else SHOTS
        train.append(idx[:keep])
        val.append(idx[SHOTS:])
    tr, va = torch.cat(train), torch.cat(val)
    test = MultiViewShapes(TEST_PER_CLASS, seed=DATA_SEED, split="test", size=SIZE)
    return {
        "train": TensorDataset(x[tr], y[tr]),
        "val": (x[va], y[va]),
        "test": single_views(test, DATA_SEED),
        "minority": minority,
    }


def generator_pool() -> ConcatDataset:
    """All four views, as separate images, of objects no arm trains, validates or tests on."""
    objects = MultiViewShapes(POOL_PER_CLASS, seed=derive_seed(DATA_SEED, 2), size=SIZE)
    return ConcatDataset([objects.single_view(v) for v in range(len(VIEW_NAMES))])


def build_generators(cache: Path, strong_steps: int, weak_steps: int) -> dict[str, Path]:
    """The strong and weak generators, trained once into ``cache``.

    The weak one is the same run stopped after ``weak_steps``: the strong run resumes
    from its last checkpoint, which the trainer guarantees ends with the weights of a
    run straight through, so the weak steps are not paid twice.
    """
    from gdaload.train import train_generator
    from gdaload.train.config import GeneratorTrainingConfig

    folders = {"weak": cache / "weak", "strong": cache / "strong"}
    pool = generator_pool()
    for name, steps in (("weak", weak_steps), ("strong", strong_steps)):
        folder = folders[name]
        if (folder / "model_index.json").exists():
            continue
        if name == "strong" and not (folder / "checkpoints").exists():
            shutil.copytree(folders["weak"] / "checkpoints", folder / "checkpoints")
        config = GeneratorTrainingConfig(
            steps=steps,
            class_names=tuple(CLASSES),
            checkpoint_every=weak_steps,
            cpu=True,
            progress=False,
        )
        start = time.perf_counter()
        train_generator(pool, folder, config)
        # Kept beside the model, so a report built from the cache still says what it cost.
        (folder / SECONDS_FILE).write_text(f"{time.perf_counter() - start}\n")
    return folders


def generator_settings(folders: dict[str, Path]) -> dict[str, Any]:
    """What the trainer recorded of each generator, and the data it saw."""
    return {
        "pool": {
            "dataset": "MultiViewShapes",
            "seed": derive_seed(DATA_SEED, 2),
            "objects_per_class": POOL_PER_CLASS,
            "views": list(VIEW_NAMES),
            "images": POOL_PER_CLASS * NUM_CLASSES * len(VIEW_NAMES),
            "size": SIZE,
        },
        **{
            name: {
                **json.loads((folder / "gdaload.json").read_text())["training"],
                # The strong run's seconds exclude the weak steps it resumed from.
                "training_seconds": float((folder / SECONDS_FILE).read_text()),
            }
            for name, folder in folders.items()
        },
    }


def reference_coherence(
    folders: dict[str, Path], args: argparse.Namespace, per_class: int = 40
) -> dict[str, Any]:
    """How often a classifier trained on the generators' own training views (the pool)
    reads the intended class in their samples: a check of the generators that, unlike
    the arms' coherence column, does not rest on a classifier of a few shots.

    Args:
        folders: The generators.
        args: The sampler settings (``sampler``, ``steps``).
        per_class: Samples of each class and generator.

    Returns:
        The reference classifier's settings and its accuracy on the fixed test views,
        and per generator the share of samples it gives their intended class.
    """
    pool = generator_pool()
    x = torch.stack([pool[i][0] for i in range(len(pool))])
    y = torch.tensor([pool[i][1] for i in range(len(pool))])
    epochs, batch_size = 20, 64
    model = fit(
        real_batches(TensorDataset(x, y), DATA_SEED, batch_size),
        epochs,
        DATA_SEED,
        classifier=small_view_cnn,
    )
    test = MultiViewShapes(TEST_PER_CLASS, seed=DATA_SEED, split="test", size=SIZE)
    test_x, test_y = single_views(test, DATA_SEED)
    out: dict[str, Any] = {
        "classifier": {
            "trained_on": "the generator pool",
            "epochs": epochs,
            "batch_size": batch_size,
        },
        "test_accuracy": float((predict(model, test_x) == test_y).float().mean()),
        "samples_per_class": per_class,
    }
    labels = torch.arange(per_class * NUM_CLASSES) % NUM_CLASSES
    seeds = [derive_seed(DATA_SEED, Stream.BENCH_QUALITY, i) for i in range(len(labels))]
    load: dict[str, Any] = {"sampler": args.sampler, "steps": args.steps, "device": "cpu"}
    for name, folder in folders.items():
        images = DiffusionGenerator.from_pretrained(folder, **load).generate(labels, seeds)
        out[f"coherence_{name}"] = float((predict(model, images) == labels).float().mean())
    return out


def markdown(report: dict[str, Any]) -> str:
    s, g = report["settings"], report["generators"]
    coh = report["generator_coherence_by_real_only_classifier"]
    header = (
        f"Imbalanced MultiViewShapes single views ({SIZE}x{SIZE}, 16 classes, one view per "
        f"object): {SHOTS} objects per class, {s['minority_shots']} for two minority classes, "
        f"{VAL_SHOTS} validation objects per class, {TEST_PER_CLASS} test objects per class; "
        f"{len(report['seeds_completed'])} seeds; m_G/m_S = {s['ratio']}, {s['epochs']} "
        f"epochs, {s['sampler']} {s['steps']} steps; generators trained on "
        f"{g['pool']['images']} views of other objects for {g['strong']['steps']} (strong) and "
        f"{g['weak']['steps']} (weak) steps. Coherence (real-only classifier agrees with the "
        f"intended class): strong {pct(coh['strong'])}, weak {pct(coh['weak'])}. "
        "Mean ± 95% CI; gains paired by seed."
    )
    return tables(report, header)


def write(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--minority-shots", type=int, default=2)
    p.add_argument("--ratio", type=float, default=1.0)
    # 20, not the digits' 30: sampling 16x16 RGB views costs several times an 8x8 digit.
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--off-last", type=int, default=3)
    p.add_argument("--alpha", type=float, default=0.3)
    p.add_argument("--sampler", default="dpm-solver++")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--strong-steps", type=int, default=1000)
    p.add_argument("--weak-steps", type=int, default=300)
    p.add_argument("--hard-top", type=int, default=10)
    p.add_argument(
        "--generator-cache",
        default=str(Path(tempfile.gettempdir()) / "gdaload-bench-multiview-generators"),
    )
    p.add_argument("--out", default="benchmarks/results/feedback_multiview")
    p.add_argument(
        "--reference-only",
        action="store_true",
        help="only check the generators with a classifier trained on their pool "
        "(written to OUT-reference.json); no arms",
    )
    args = p.parse_args()
    start = time.perf_counter()
    folders = build_generators(Path(args.generator_cache), args.strong_steps, args.weak_steps)
    if args.reference_only:
        check = reference_coherence(folders, args)
        check["seconds"] = time.perf_counter() - start
        out = Path(f"{args.out}-reference.json")
        out.write_text(json.dumps(check, indent=2) + "\n")
        print(json.dumps(check, indent=2))
        return
    load: dict[str, Any] = {"sampler": args.sampler, "steps": args.steps, "device": "cpu"}
    generators = {
        name: DiffusionGenerator.from_pretrained(folder, **load) for name, folder in folders.items()
    }
    results = Results(NUM_CLASSES)
    schedules: dict[str, list[float]] = {}
    coherence: dict[str, list[float]] = {"strong": [], "weak": []}
    for seed in range(args.seeds):
        split = imbalanced_split(seed, args.minority_shots)
        run_seed(
            args, seed, split, generators, results, schedules, coherence, classifier=small_view_cnn
        )
        # The strong generator's GDA arm is the balance arm (same loader, same samples).
        results.metrics["GDA, strong generator"] = results.metrics["GDA, balance"]
        report = summarise(args, results, schedules, coherence)
        report["seeds_completed"] = list(range(seed + 1))
        report["generators"] = generator_settings(folders)
        report["total_seconds"] = time.perf_counter() - start
        report["platform"] = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
        }
        write(Path(args.out), report)
    print(markdown(report))


if __name__ == "__main__":
    main()
