"""GenMix and synthetic-sample selection on the quickstart's few-shot digits.

Arms, each trained with the same CNN, optimiser and number of steps per seed:

* real only; real-real mixup (Beta(α, α));
* GDA: ``GenerativeLoader`` with m_G/m_S = ``--ratio``;
* GenMix: GDA batches mixed real-with-synthetic (λ ~ Beta(α, 1), α = 0.3 as in the paper);
* GDA with each selection stage wrapped around the generator (``--candidates`` per sample):
  TopK (confidence of the real-only classifier of the same seed in the intended class),
  RealismScore and ClusterSelect (on that classifier's penultimate features, fitted on the
  few-shot real images), ClipFilter (a tiny open_clip model with random weights, since no
  pretrained CLIP weights can be loaded offline: a functional check, not a quality claim).

The synthetic samples of an arm are those of epoch 0 of its seed plan, reused each epoch,
so that all arms of a seed share the generated candidates through an in-memory cache
(the quickstart, by contrast, draws fresh samples each epoch). The arms run through
``gdaload.bench.arms`` (``SeedRun``), the protocol behind ``gdaload evaluate``.

Run: python benchmarks/genmix_selection.py --seeds 5 --out benchmarks/results/genmix_selection
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch

from gdaload import GenMix
from gdaload.bench.adapters import dataset_tensors
from gdaload.bench.arms import ArmResults, SeedRun, selection_stage
from gdaload.bench.tasks import digits_task
from gdaload.datasets import DIGIT_CLASSES
from gdaload.select import ClipFilter


def tiny_clip(folder: Path) -> tuple[torch.nn.Module, Any]:
    name = "gdaload-bench-tiny-clip"
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    }
    (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder / f"{name}.json")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = open_clip.create_model_and_transforms(name)[0].eval()
    return model, open_clip.get_tokenizer(name)


def run(args: argparse.Namespace) -> dict[str, Any]:
    task = digits_task(
        shots=args.shots,
        sampler=args.sampler,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
    )
    clip_model, clip_tokenizer = tiny_clip(Path(tempfile.mkdtemp()))
    selections = (("topk", "TopK"), ("realism", "RealismScore"), ("cluster", "ClusterSelect"))
    results = ArmResults()
    for seed in range(args.seeds):
        run = SeedRun(task, seed, results)
        real_model = run.record("real only", run.real_batches())
        run.record(
            "real-real mixup",
            run.real_batches(),
            GenMix(10, alpha=args.alpha, beta="symmetric", pairing="real-real", seed=seed),
        )
        run.record("GDA", run.gda_batches(args.ratio))
        run.record(
            "GenMix",
            run.gda_batches(args.ratio),
            GenMix(10, alpha=args.alpha, beta="paper", seed=seed),
        )
        real_x, real_y = dataset_tensors(run.train)
        stages = {
            f"GDA + {label}": selection_stage(key, real_model, real_x, real_y)
            for key, label in selections
        }
        stages["GDA + ClipFilter (random tiny CLIP)"] = ClipFilter(
            clip_model,
            tokenizer=clip_tokenizer,
            class_names=[f"digit {d}" for d in DIGIT_CLASSES],
            keep=0.5,
        )
        for name, stage in stages.items():
            run.record_selected(name, stage, args.ratio, args.candidates)
        accs = ", ".join(f"{k} {v[-1]:.4f}" for k, v in results.accuracy.items())
        print(f"seed {seed}: {accs} | generated {run.generator.generated}", flush=True)
    return {
        "settings": vars(args),
        "accuracy": results.accuracy,
        "mean_ci95": results.summary(),
        "gain_vs_real_ci95": results.gains(),
        "kept_fraction": results.kept_fraction,
        "seconds": results.seconds,
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        f"Digits, {s['shots']} labelled images per class, {s['seeds']} seeds; "
        f"m_G/m_S = {s['ratio']}, {s['sampler']} {s['steps']} steps, "
        f"{s['candidates']} candidates per sample for selection; "
        "mean ± 95% CI.",
        "",
        "| arm | test accuracy | gain over real only (paired) | kept fraction |",
        "|---|---|---|---|",
    ]
    for name, (mean, half) in report["mean_ci95"].items():
        gain, gain_half = report["gain_vs_real_ci95"][name]
        kept = report["kept_fraction"].get(name)
        kept_txt = f"{np.mean(kept):.2f}" if kept else ""
        gain_txt = "" if name == "real only" else f"{100 * gain:+.2f} ± {100 * gain_half:.2f}"
        lines.append(f"| {name} | {100 * mean:.2f} ± {100 * half:.2f} | {gain_txt} | {kept_txt} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--ratio", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--sampler", default="dpm-solver++")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/genmix_selection")
    args = parser.parse_args()
    report = run(args)
    table = markdown(report)
    print("\n" + table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
