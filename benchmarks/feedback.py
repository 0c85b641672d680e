"""Feedback class policy, adaptive ratio and quality-aware GenMix on imbalanced digits.

Split (per seed ``s``): ``digits_splits(shots=15, seed=s)`` draws 15 images per class
from the reservoir; the first 10 of each class train (the first 2 for the two minority
classes ``s % 10`` and ``(s + 5) % 10``, so across 5 seeds every class is a minority
once), the last 5 of each class are a validation set that only the feedback arms read,
and the fixed test set of the quickstart scores every arm. Every arm trains the
quickstart's CNN from the same initial weights on the same real batches in the same
order (Adam, lr 1e-3, ``--batch-size`` real images per batch, ``--epochs`` epochs), with
fresh synthetic samples each epoch.

Arms:

* real only; GDA with ``class_policy="match"``; GDA with ``"balance"``;
* ``feedback``: after each epoch the per-class recall on the validation set is handed
  to ``loader.feedback``;
* feedback + hard-example variations: the same, and after each epoch the ``--hard-top``
  training images the classifier is least confident on in their true class (the
  misclassified ones first, as their confidence is lowest) are handed to
  ``loader.hard_examples`` (``share`` 0.5, ``strength`` 0.5): half of each class's
  synthetic positions become SDEdit variations of that class's hard examples;
* adaptive ratio: ``balance`` with :class:`~gdaload.AdaptiveRatio` (start ``--ratio``,
  halved on a plateau of validation accuracy, off for the last ``--off-last`` epochs);
* for the shipped (strong) generator and a weak one (``gdaload train-generator`` on the
  generator pool for ``--weak-steps`` steps, built into ``--weak-cache`` when missing):
  GDA (``balance``), paper GenMix (Beta(0.3, 1), real-synthetic) and quality-aware GenMix,
  whose quality score is the confidence of the seed's real-only classifier in a
  synthetic row's intended class. The three arms of a generator share its samples.

Columns: test accuracy, macro-F1, worst-class sensitivity, mean sensitivity of the two
minority classes; means with 95% CIs over seeds and gains paired by seed.

Run: OMP_NUM_THREADS=1 python benchmarks/feedback.py --seeds 5 --out benchmarks/results/feedback
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gdaload import AdaptiveRatio, DiffusionGenerator, GenerativeLoader, GenMix
from gdaload.bench.adapters import dataset_tensors
from gdaload.bench.assets import DIGITS_GENERATOR
from gdaload.bench.classifier import digits_cnn, predict
from gdaload.bench.memo import MemoGenerator
from gdaload.bench.stats import mean_ci, paired_gain
from gdaload.datasets.digits import DIGIT_CLASSES, digits_splits
from gdaload.generators.base import ImageConditionedGenerator
from gdaload.metrics import classification_report
from gdaload.seeding import Stream, derive_seed

SHOTS, VAL_SHOTS = 10, 5


def imbalanced_split(seed: int, minority_shots: int) -> dict[str, Any]:
    data = digits_splits(shots=SHOTS + VAL_SHOTS, seed=seed)
    x, y = dataset_tensors(data.train)
    minority = (seed % 10, (seed + 5) % 10)
    train, val = [], []
    for c in range(10):
        idx = torch.nonzero(y == c).flatten()
        keep = minority_shots if c in minority else SHOTS
        train.append(idx[:keep])
        val.append(idx[SHOTS:])
    tr, va = torch.cat(train), torch.cat(val)
    test_x, test_y = dataset_tensors(data.test)
    return {
        "train": TensorDataset(x[tr], y[tr]),
        "val": (x[va], y[va]),
        "test": (test_x, test_y),
        "minority": minority,
    }


def real_batches(train: TensorDataset, seed: int, batch_size: int) -> DataLoader:
    order = torch.Generator().manual_seed(derive_seed(seed, Stream.TRAIN_LOADER))
    return DataLoader(train, batch_size=batch_size, shuffle=True, generator=order)


def fit(
    batches: Iterable[Any],
    epochs: int,
    seed: int,
    mix: GenMix | None = None,
    quality: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    after_epoch: Callable[[nn.Module], None] | None = None,
    classifier: Callable[[], nn.Module] = digits_cnn,
) -> nn.Module:
    """The training loop of every arm; ``after_epoch`` hands validation feedback over."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = classifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        set_epoch = getattr(batches, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        model.train()
        for x, y, *mask in batches:
            target: torch.Tensor = y
            if mix is not None:
                extra = {} if quality is None else {"quality": quality(x, y)}
                x, target = mix(x, y, *mask, **extra)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), target).backward()
            opt.step()
        if after_epoch is not None:
            after_epoch(model)
    return model


def confidence_of(model: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Quality score: ``model``'s softmax probability of each row's intended class."""

    def quality(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.inference_mode():
            return model(x).softmax(1)[torch.arange(len(y)), y]

    return quality


class MemoVariations(MemoGenerator, ImageConditionedGenerator):
    """The memo of a generator that also makes (unremembered) image-conditioned samples,
    so the hard-example arm shares its plain samples with the other arms."""

    def generate(  # type: ignore[override]
        self, labels: Any, seeds: Any, *, source: torch.Tensor | None = None, strength: Any = 0.5
    ) -> torch.Tensor:
        if source is None:
            return super().generate(labels, seeds)
        return self.inner.generate(labels, seeds, source=source, strength=strength)  # type: ignore[call-arg]


class Results:
    """Per-seed test metrics and seconds of every arm."""

    def __init__(self, num_classes: int = 10) -> None:
        self.num_classes = num_classes
        self.metrics: dict[str, dict[str, list[float]]] = {}
        self.seconds: dict[str, float] = {}

    def add(self, arm: str, model: nn.Module, test: tuple, minority: tuple, start: float) -> None:
        preds = predict(model, test[0])
        report = classification_report(preds, test[1], self.num_classes)
        sens = report.sensitivity.double()
        row = {
            "accuracy": report.accuracy,
            "macro_f1": report.macro_f1,
            "worst_sensitivity": float(sens.min()),
            "minority_sensitivity": float(sens[list(minority)].mean()),
        }
        for key, value in row.items():
            self.metrics.setdefault(arm, {}).setdefault(key, []).append(float(value))
        self.seconds[arm] = self.seconds.get(arm, 0.0) + time.perf_counter() - start


def weak_generator(folder: Path, steps: int) -> Path:
    """The weak generator: an early checkpoint of the shipped recipe, built once."""
    if not (folder / "model_index.json").exists():
        from gdaload.train import train_generator
        from gdaload.train.config import GeneratorTrainingConfig

        pool = digits_splits().generator_pool
        config = GeneratorTrainingConfig(steps=steps, class_names=tuple(DIGIT_CLASSES), cpu=True)
        train_generator(pool, folder, config)
    return folder


def run_seed(
    args: argparse.Namespace,
    seed: int,
    split: dict[str, Any],
    generators: dict[str, DiffusionGenerator],
    results: Results,
    schedules: dict[str, list[float]],
    coherence: dict[str, list[float]],
    classifier: Callable[[], nn.Module] = digits_cnn,
) -> None:
    """Every arm of one seed on ``split`` (the keys of :func:`imbalanced_split`'s result).

    The classes are ``results.num_classes``; ``generators`` maps ``"strong"`` and
    ``"weak"`` to class-conditional generators of them, and ``classifier`` builds the
    untrained classifier of every arm.
    """
    num_classes = results.num_classes
    test, minority = split["test"], split["minority"]
    val_x, val_y = split["val"]
    gens = {name: MemoVariations(g) for name, g in generators.items()}

    def loader(policy: str, gen: str = "strong") -> GenerativeLoader:
        return GenerativeLoader(
            real_batches(split["train"], seed, args.batch_size),
            gens[gen],
            ratio=args.ratio,
            seed=seed,
            class_policy=policy,
            return_mask=True,
        )

    def arm(name: str, batches: Any, **kw: Any) -> nn.Module:
        start = time.perf_counter()
        model = fit(batches, args.epochs, seed, classifier=classifier, **kw)
        results.add(name, model, test, minority, start)
        return model

    real_model = arm("real only", real_batches(split["train"], seed, args.batch_size))
    arm("GDA, match", loader("match"))
    arm("GDA, balance", loader("balance"))

    fb = loader("feedback")

    def hand_recall(model: nn.Module) -> None:
        report = classification_report(predict(model, val_x), val_y, num_classes)
        fb.feedback(report.sensitivity.tolist())

    arm("feedback policy", fb, after_epoch=hand_recall)

    hard = loader("feedback")
    train_x, train_y = split["train"].tensors

    def hand_recall_and_hard(model: nn.Module) -> None:
        report = classification_report(predict(model, val_x), val_y, num_classes)
        hard.feedback(report.sensitivity.tolist())
        confidence = confidence_of(model)(train_x, train_y)
        hard.hard_examples(scores=1 - confidence, top=args.hard_top)

    arm("feedback + hard-example variations", hard, after_epoch=hand_recall_and_hard)

    ad = loader("balance")
    control = AdaptiveRatio(start=args.ratio, epochs=args.epochs, off_last=args.off_last)

    def hand_accuracy(model: nn.Module) -> None:
        acc = float((predict(model, val_x) == val_y).float().mean())
        ad.set_ratio(control.update(acc))

    arm("adaptive ratio (balance)", ad, after_epoch=hand_accuracy)
    schedules[f"seed {seed}"] = [control.ratio(e) for e in range(args.epochs)]

    quality = confidence_of(real_model)
    for gen in ("strong", "weak"):
        if gen == "weak":
            arm(f"GDA, {gen} generator", loader("balance", gen))
        arm(
            f"GenMix, {gen} generator",
            loader("balance", gen),
            mix=GenMix(num_classes, alpha=args.alpha, beta="paper", seed=seed),
        )
        arm(
            f"quality-aware GenMix, {gen} generator",
            loader("balance", gen),
            mix=GenMix(num_classes, alpha=args.alpha, beta="paper", seed=seed),
            quality=quality,
        )
        # Ten samples of each class (100 for the digits).
        labels = torch.arange(10 * num_classes) % num_classes
        seeds = [derive_seed(seed, Stream.BENCH_QUALITY, i) for i in range(len(labels))]
        images = generators[gen].generate(labels, seeds)
        coherence[gen].append(float((predict(real_model, images) == labels).float().mean()))
    accs = ", ".join(f"{k} {v['accuracy'][-1]:.3f}" for k, v in results.metrics.items())
    print(f"seed {seed}: {accs}", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    load: dict[str, Any] = {"sampler": args.sampler, "steps": args.steps, "device": "cpu"}
    generators = {
        "strong": DiffusionGenerator.from_pretrained(Path(DIGITS_GENERATOR), **load),
        "weak": DiffusionGenerator.from_pretrained(
            weak_generator(Path(args.weak_cache), args.weak_steps), **load
        ),
    }
    results = Results()
    schedules: dict[str, list[float]] = {}
    coherence: dict[str, list[float]] = {"strong": [], "weak": []}
    for seed in range(args.seeds):
        split = imbalanced_split(seed, args.minority_shots)
        run_seed(args, seed, split, generators, results, schedules, coherence)
    # The strong generator's GDA arm is the balance arm (same loader, same samples).
    results.metrics["GDA, strong generator"] = results.metrics["GDA, balance"]
    return summarise(args, results, schedules, coherence)


#: Arguments that are no setting of the protocol (where files go).
UNRECORDED = ("weak_cache", "generator_cache", "out")

PAIRS = [
    ("feedback policy", "GDA, balance"),
    ("feedback + hard-example variations", "GDA, balance"),
    ("feedback + hard-example variations", "feedback policy"),
    ("adaptive ratio (balance)", "GDA, balance"),
    ("GDA, balance", "GDA, match"),
]


def summarise(
    args: argparse.Namespace,
    results: Results,
    schedules: dict[str, list[float]],
    coherence: dict[str, list[float]],
) -> dict[str, Any]:
    m = results.metrics
    summary = {arm: {key: mean_ci(v) for key, v in values.items()} for arm, values in m.items()}
    gains = {
        arm: {key: paired_gain(v, m["real only"][key]) for key, v in values.items()}
        for arm, values in m.items()
        if arm != "real only"
    }
    pairs: dict[str, dict[str, tuple[float, float]]] = {}
    for a, b in PAIRS:
        pairs[f"{a} - {b}"] = {k: paired_gain(m[a][k], m[b][k]) for k in m[a]}
    goals: dict[str, Any] = {}
    for gen in ("strong", "weak"):
        gda, mix = f"GDA, {gen} generator", f"GenMix, {gen} generator"
        better = max((gda, mix), key=lambda arm: float(np.mean(m[arm]["accuracy"])))
        qa = f"quality-aware GenMix, {gen} generator"
        pairs[f"{mix} - {gda}"] = {k: paired_gain(m[mix][k], m[gda][k]) for k in m[mix]}
        for other in (gda, mix):
            pairs[f"{qa} - {other}"] = {k: paired_gain(m[qa][k], m[other][k]) for k in m[qa]}
        gain, half = pairs[f"{qa} - {better}"]["accuracy"]
        goals[f"quality-aware GenMix not below the better of GDA and GenMix ({gen})"] = {
            "better": better,
            "gain": gain,
            "half_width": half,
            "met": bool(gain + half >= 0),
        }
    for arm, name in (
        ("feedback policy", "feedback"),
        ("feedback + hard-example variations", "feedback + hard examples"),
    ):
        acc = pairs[f"{arm} - GDA, balance"]["accuracy"]
        worst = pairs[f"{arm} - GDA, balance"]["worst_sensitivity"]
        goals[f"{name} matches balance on accuracy"] = {
            "gain": acc[0],
            "half_width": acc[1],
            "met": bool(acc[0] + acc[1] >= 0),
        }
        goals[f"{name} beats balance on worst-class sensitivity"] = {
            "gain": worst[0],
            "half_width": worst[1],
            "met": bool(worst[0] - worst[1] > 0),
        }
    return {
        # Where generators are cached and the report written are not settings of the
        # protocol.
        "settings": {k: v for k, v in vars(args).items() if k not in UNRECORDED},
        "per_seed": m,
        "mean_ci95": summary,
        "gain_vs_real_only_ci95": gains,
        "paired_differences_ci95": pairs,
        "goals": goals,
        "adaptive_ratio_schedules": schedules,
        "generator_coherence_by_real_only_classifier": {
            k: mean_ci(v) for k, v in coherence.items()
        },
        "seconds": results.seconds,
    }


def pct(pair: tuple[float, float], sign: bool = False) -> str:
    mean, half = pair
    return f"{100 * mean:{'+' if sign else ''}.2f} ± {100 * half:.2f}"


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    coh = report["generator_coherence_by_real_only_classifier"]
    header = (
        f"Imbalanced digits: {SHOTS} images per class, {s['minority_shots']} for two "
        f"minority classes; {s['seeds']} seeds; m_G/m_S = {s['ratio']}, {s['epochs']} epochs, "
        f"{s['sampler']} {s['steps']} steps; weak generator: {s['weak_steps']} training steps. "
        f"Coherence (real-only classifier agrees with the intended class): strong "
        f"{pct(coh['strong'])}, weak {pct(coh['weak'])}. Mean ± 95% CI; gains paired by seed."
    )
    return tables(report, header)


def tables(report: dict[str, Any], header: str) -> str:
    """``header``, the table of arms, the table of paired differences and the goals."""
    lines = [
        header,
        "",
        "| arm | accuracy | gain | macro-F1 | worst-class sensitivity | minority sensitivity "
        "| minority gain |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, row in report["mean_ci95"].items():
        if arm == "GDA, strong generator":
            continue
        g = report["gain_vs_real_only_ci95"].get(arm)
        lines.append(
            f"| {arm} | {pct(row['accuracy'])} | {pct(g['accuracy'], True) if g else ''} | "
            f"{pct(row['macro_f1'])} | {pct(row['worst_sensitivity'])} | "
            f"{pct(row['minority_sensitivity'])} | "
            f"{pct(g['minority_sensitivity'], True) if g else ''} |"
        )
    lines += ["", "| paired difference | accuracy | macro-F1 | worst-class sensitivity |"]
    lines.append("|---|---|---|---|")
    for name, row in report["paired_differences_ci95"].items():
        lines.append(
            f"| {name} | {pct(row['accuracy'], True)} | {pct(row['macro_f1'], True)} | "
            f"{pct(row['worst_sensitivity'], True)} |"
        )
    lines += ["", "Goals:"]
    for name, goal in report["goals"].items():
        verdict = "met" if goal["met"] else "not met"
        lines.append(f"- {name}: {verdict} ({pct((goal['gain'], goal['half_width']), True)})")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--minority-shots", type=int, default=2)
    p.add_argument("--ratio", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--off-last", type=int, default=3)
    p.add_argument("--alpha", type=float, default=0.3)
    p.add_argument("--sampler", default="dpm-solver++")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--weak-steps", type=int, default=300)
    p.add_argument("--hard-top", type=int, default=10)
    p.add_argument(
        "--weak-cache", default=str(Path(tempfile.gettempdir()) / "gdaload-bench-weak-digits")
    )
    p.add_argument("--out", default="benchmarks/results/feedback")
    args = p.parse_args()
    start = time.perf_counter()
    report = run(args)
    report["total_seconds"] = time.perf_counter() - start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
