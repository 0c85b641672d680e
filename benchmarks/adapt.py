"""Adapting a pretrained text-to-image model to classes it never saw, from 10 shots.

The stand-in pretrained model is the shipped ``digits-text2image`` asset: a small
Stable-Diffusion-architecture pipeline (CLIP text encoder, cross-attention UNet,
AutoencoderKL) that ``gdaload pretrain-text2image --digits 0-4`` trained on the
generator pool of the digits 0-4 only, with captions such as "a handwritten three".
The task is the digits it never saw, 5-9, with 10 labelled images per class drawn by
the seed (``digits_splits(shots=10, seed=s)`` restricted to 5-9), scored on their fixed
test images. Real images are the 8x8 digits as RGB (grayscale repeated: what an RGB
image folder gives); the classifier is the quickstart's CNN behind a channel mean.

Arms (every arm trains the same classifier from the same initial weights on the same
real batches in the same order, 40 epochs, Adam 1e-3, 20 real images per batch):

* ``real only``;
* ``unadapted``: GDA (m_G/m_S = 2, a fixed synthetic set, as ``gdaload evaluate``) from
  the stand-in prompted with the plain class names ("a photo of a five");
* ``textual inversion``: ``gdaload adapt --method textual-inversion`` on the 50 shots
  (one token per class, initialised from the class name), then GDA from its prompts;
* ``LoRA``: ``gdaload adapt --method lora --rank 4`` on the 50 shots, then GDA;
* ``SDEdit (best)``: the adapter of the two with the higher coherence on this seed
  (no test image is read to choose), making variations of the real training images
  (DA-Fusion's recipe: strength 0.5, every synthetic sample a variation of a real image
  of its class, through ``loader.hard_examples(all indices, share=1.0)``).

Coherence is the share of generated samples that a reference classifier, trained on
the generator pool of the digits 5-9 (images no arm trains or tests on), assigns to
the class they were made for. Adaptation seconds are wall-clock seconds of ``adapt``.
Means with 95% CIs over seeds (Student t) and gains paired by seed. Settings are the
constants below, fixed before the first run.

Run: OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/adapt.py --seeds 5
Pictures of seed 0's samples: ... benchmarks/adapt.py --pictures benchmarks/results/adapt
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gdaload import DiffusionGenerator, GenerativeLoader
from gdaload.bench.adapters import FixedEpoch
from gdaload.bench.arms import ArmResults, SeedRun
from gdaload.bench.assets import DIGITS_TEXT2IMAGE
from gdaload.bench.classifier import digits_cnn, fit_classifier, predict
from gdaload.bench.stats import mean_ci, paired_gain
from gdaload.bench.tasks import Task
from gdaload.datasets.digits import digits_splits, digits_subset
from gdaload.metrics import coherence
from gdaload.metrics.plots import sample_grid
from gdaload.seeding import Stream, derive_seed
from gdaload.train import adapt
from gdaload.train.text2image import DIGIT_WORDS

NEW_DIGITS = [5, 6, 7, 8, 9]
NAMES = [DIGIT_WORDS[d] for d in NEW_DIGITS]
SHOTS = 10
RATIO = 2.0
SAMPLER, STEPS, GUIDANCE = "dpm-solver++", 20, 3.0
ADAPT_SETTINGS: dict[str, dict[str, Any]] = {
    "textual inversion": {"method": "textual-inversion", "steps": 500, "lr": 5e-3},
    "LoRA": {"method": "lora", "rank": 4, "steps": 500, "lr": 1e-3},
}
ADAPT_BATCH = 10
SDEDIT_STRENGTH = 0.5
COHERENCE_SAMPLES = 250  # per arm and seed, classes in turn
EPOCHS, BATCH_SIZE, LR = 40, 20, 1e-3


class ChannelMean(nn.Module):
    """RGB to one channel, the mean (grayscale repeated stays itself)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1, keepdim=True)


def classifier() -> nn.Module:
    return nn.Sequential(ChannelMean(), digits_cnn(len(NEW_DIGITS)))


def rgb(data: TensorDataset) -> TensorDataset:
    x, y = data.tensors
    return TensorDataset(x.repeat(1, 3, 1, 1), y)


def new_digits(seed: int) -> tuple[TensorDataset, TensorDataset]:
    splits = digits_splits(shots=SHOTS, seed=seed)
    return rgb(digits_subset(splits.train, NEW_DIGITS)), rgb(digits_subset(splits.test, NEW_DIGITS))


def reference_classifier() -> nn.Module:
    """The coherence judge: the same CNN on the pool of the digits 5-9 (disjoint from
    every arm's training and test images, and never seen by the stand-in)."""
    pool = rgb(digits_subset(digits_splits().generator_pool, NEW_DIGITS))
    batches = DataLoader(
        pool, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    return fit_classifier(classifier, batches, epochs=40, seed=0).eval()


def generator(model: Path, **kwargs: Any) -> DiffusionGenerator:
    return DiffusionGenerator.from_pretrained(
        model,
        sampler=SAMPLER,
        steps=STEPS,
        guidance_scale=GUIDANCE,
        device="cpu",
        **kwargs,
    )


def arm_coherence(
    judge: nn.Module, gen: DiffusionGenerator, seed: int, train: TensorDataset | None = None
) -> float:
    """Coherence of ``COHERENCE_SAMPLES`` samples, classes in turn, seeds from a stream
    of their own; with ``train``, SDEdit variations of its images (see :func:`sources_for`)."""
    labels = torch.arange(COHERENCE_SAMPLES) % len(NEW_DIGITS)
    seeds = [derive_seed(seed, Stream.BENCH_QUALITY, i) for i in range(COHERENCE_SAMPLES)]
    if train is None:
        images = gen.generate(labels, seeds)
    else:
        source = sources_for(train, labels)
        images = gen.generate(labels, seeds, source=source, strength=SDEDIT_STRENGTH)
    return coherence(judge, images, labels)


def sources_for(train: TensorDataset, labels: torch.Tensor) -> torch.Tensor:
    """A real training image of each label, in turn through the class's images."""
    x, y = train.tensors
    by_class = [x[y == c] for c in range(len(NEW_DIGITS))]
    seen = [0] * len(NEW_DIGITS)
    picked = []
    for label in labels.tolist():
        images = by_class[label]
        picked.append(images[seen[label] % len(images)])
        seen[label] += 1
    return torch.stack(picked)


def adapt_arm(
    model: Path,
    train: TensorDataset,
    out: Path,
    seed: int,
    settings: dict[str, Any],
    args: argparse.Namespace,
) -> Any:
    """``adapt`` with an arm's settings on one seed's training images."""
    if args.adapt_steps is not None:
        settings = {**settings, "steps": args.adapt_steps}
    return adapt(
        model,
        train,
        out,
        class_names=NAMES,
        batch_size=ADAPT_BATCH,
        seed=seed,
        cpu=True,
        progress=False,
        **settings,
    )


def pictures(model: Path, folder: Path, args: argparse.Namespace) -> None:
    """Seed 0's real images beside 8 samples per class of each generative arm, one PNG
    per arm (the adapters are made again, as the benchmark makes them)."""
    train, _ = new_digits(0)
    x, y = train.tensors
    labels = torch.arange(8 * len(NEW_DIGITS)) % len(NEW_DIGITS)
    seeds = [derive_seed(0, Stream.BENCH_PICTURE, i) for i in range(len(labels))]
    gens = {"unadapted": generator(model, prompts=[[f"a photo of a {n}"] for n in NAMES])}
    work = Path(tempfile.mkdtemp(prefix="gdaload-adapt-"))
    for arm, settings in ADAPT_SETTINGS.items():
        result = adapt_arm(model, train, work / arm, 0, settings, args)
        gens[arm] = generator(model, adapter=result.folder)
    samples = {arm: gen.generate(labels, seeds) for arm, gen in gens.items()}
    samples["SDEdit (textual inversion)"] = gens["textual inversion"].generate(
        labels, seeds, source=sources_for(train, labels), strength=SDEDIT_STRENGTH
    )
    folder.mkdir(parents=True, exist_ok=True)
    for arm, images in samples.items():
        path = folder / f"samples-{arm.replace(' ', '-').replace('(', '').replace(')', '')}.png"
        sample_grid(x, y, images, labels, path, class_names=NAMES, title=f"real | {arm}")
        print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/adapt.json")
    parser.add_argument("--model", default=str(DIGITS_TEXT2IMAGE), help="stand-in pipeline")
    parser.add_argument("--adapt-steps", type=int, default=None, help="smoke runs only")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="smoke runs only")
    parser.add_argument(
        "--pictures", default=None, help="only draw seed 0's samples of each arm into this folder"
    )
    args = parser.parse_args()
    model = Path(args.model)
    if args.pictures is not None:
        pictures(model, Path(args.pictures), args)
        return
    started = time.perf_counter()

    judge = reference_classifier()
    _, test = new_digits(0)
    judge_accuracy = float((predict(judge, test.tensors[0]) == test.tensors[1]).float().mean())
    print(f"reference classifier: {100 * judge_accuracy:.2f}% on the test images of 5-9")

    unadapted = generator(
        model, prompts=[[f"a photo of a {name}"] for name in NAMES], class_names=NAMES
    )
    task = Task(
        name="digits 5-9",
        splits=new_digits,
        generator=unadapted,
        classifier=classifier,
        num_classes=len(NEW_DIGITS),
        class_names=NAMES,
        epochs=args.epochs,
        batch_size=BATCH_SIZE,
        lr=LR,
        description="digits 5-9 (never seen by the stand-in), 10 shots per class",
    )
    results = ArmResults()
    coherences: dict[str, list[float]] = {}
    adapt_seconds: dict[str, list[float]] = {}
    best_arm: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="gdaload-adapt-"))
    for seed in range(args.seeds):
        run = SeedRun(task, seed, results, generator=unadapted)
        run.record("real only", run.real_batches())
        run.record("unadapted", run.gda_batches(RATIO, unadapted), ratio=RATIO)
        coherences.setdefault("unadapted", []).append(arm_coherence(judge, unadapted, seed))
        adapted: dict[str, DiffusionGenerator] = {}
        for arm, settings in ADAPT_SETTINGS.items():
            result = adapt_arm(model, run.train, work / f"{arm}-{seed}", seed, settings, args)
            adapt_seconds.setdefault(arm, []).append(result.seconds)
            gen = generator(model, adapter=result.folder)
            adapted[arm] = gen
            coherences.setdefault(arm, []).append(arm_coherence(judge, gen, seed))
            run.record(arm, run.gda_batches(RATIO, gen), ratio=RATIO)
        best = max(adapted, key=lambda arm: coherences[arm][-1])
        best_arm.append(best)
        loader = GenerativeLoader(
            run.real_batches(), adapted[best], ratio=RATIO, seed=seed, return_mask=True
        )
        loader.hard_examples(list(range(len(run.train))), share=1.0, strength=SDEDIT_STRENGTH)
        run.record("SDEdit (best)", FixedEpoch(loader), ratio=RATIO)
        coherences.setdefault("SDEdit (best)", []).append(
            arm_coherence(judge, adapted[best], seed, run.train)
        )
        accuracy = {arm: f"{100 * v[-1]:.2f}" for arm, v in results.accuracy.items()}
        print(f"seed {seed}: accuracy {accuracy}, best adapter {best}", flush=True)

    arms = list(results.accuracy)
    table = {
        arm: {
            "accuracy": mean_ci([100 * v for v in results.accuracy[arm]]),
            "macro_f1": mean_ci([100 * v for v in results.macro_f1[arm]]),
            "gain_over_real": paired_gain(
                [100 * v for v in results.accuracy[arm]],
                [100 * v for v in results.accuracy["real only"]],
            ),
            "gain_over_unadapted": paired_gain(
                [100 * v for v in results.accuracy[arm]],
                [100 * v for v in results.accuracy["unadapted"]],
            ),
            "coherence": mean_ci([100 * v for v in coherences[arm]]) if arm in coherences else None,
            "adapt_seconds": mean_ci(adapt_seconds[arm]) if arm in adapt_seconds else None,
        }
        for arm in arms
    }
    print("\n| arm | accuracy | gain over real only | gain over unadapted | coherence |")
    print("|---|---|---|---|---|")
    for arm, row in table.items():
        cells = [
            f"{m:.2f} ± {h:.2f}"
            for m, h in (row["accuracy"], row["gain_over_real"], row["gain_over_unadapted"])
        ]
        co = row["coherence"]
        cells.append(f"{co[0]:.1f} ± {co[1]:.1f}" if co else "")
        print(f"| {arm} | " + " | ".join(cells) + " |")
    report = {
        "benchmark": "adapt",
        "settings": {
            "new_digits": NEW_DIGITS,
            "shots": SHOTS,
            "ratio": RATIO,
            "sampler": SAMPLER,
            "steps": STEPS,
            "guidance_scale": GUIDANCE,
            "adapt": ADAPT_SETTINGS,
            "adapt_batch_size": ADAPT_BATCH,
            "sdedit_strength": SDEDIT_STRENGTH,
            "coherence_samples": COHERENCE_SAMPLES,
            "epochs": args.epochs,
            "model": model.name,
            "batch_size": BATCH_SIZE,
            "lr": LR,
            "seeds": args.seeds,
        },
        "reference_classifier_accuracy": judge_accuracy,
        "table": table,
        "per_seed": {
            "accuracy": results.accuracy,
            "macro_f1": results.macro_f1,
            "coherence": coherences,
            "adapt_seconds": adapt_seconds,
            "best_adapter": best_arm,
        },
        "seconds": time.perf_counter() - started,
        "platform": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "device": "cpu",
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
