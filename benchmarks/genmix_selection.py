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
(the quickstart, by contrast, draws fresh samples each epoch).

Run: python benchmarks/genmix_selection.py --seeds 5 --out benchmarks/results/genmix_selection
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from torch.utils.data import DataLoader

from gdaload import DiffusionGenerator, GenerativeLoader, GenMix
from gdaload.datasets import DIGIT_CLASSES, digits_splits
from gdaload.generators.base import Generator
from gdaload.metrics import penultimate
from gdaload.quickstart import DIGITS_GENERATOR, accuracy, mean_ci, train_classifier
from gdaload.seeding import derive_seed
from gdaload.select import ClipFilter, ClusterSelect, RealismScore, SelectedGenerator, TopK


class MemoGenerator(Generator):
    """Caches images by (label, seed) so that arms of one seed share generated candidates."""

    def __init__(self, inner: Generator) -> None:
        self.inner, self.num_classes, self.image_shape = inner, inner.num_classes, inner.image_shape
        self.cache: dict[tuple[int, int], torch.Tensor] = {}
        self.generated = 0

    def generate(self, labels: Any, seeds: Any) -> torch.Tensor:
        keys = list(zip(torch.as_tensor(labels).tolist(), [int(s) for s in seeds]))
        missing = [k for k in dict.fromkeys(keys) if k not in self.cache]
        if missing:
            images = self.inner.generate([k[0] for k in missing], [k[1] for k in missing])
            self.cache.update(zip(missing, images))
            self.generated += len(missing)
        return torch.stack([self.cache[k] for k in keys])

    @property
    def config(self) -> dict[str, Any]:
        return self.inner.config


class FixedEpoch:
    """A GenerativeLoader that serves the synthetic samples of epoch 0 every epoch."""

    def __init__(self, loader: GenerativeLoader) -> None:
        self.loader = loader

    def __iter__(self):
        self.loader.set_epoch(0)
        return iter(self.loader)


def tiny_clip(folder: Path) -> tuple[torch.nn.Module, Any]:
    name = "gdaload-bench-tiny-clip"
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder / f"{name}.json")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = open_clip.create_model_and_transforms(name)[0].eval()
    return model, open_clip.get_tokenizer(name)


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = DiffusionGenerator.from_pretrained(DIGITS_GENERATOR, sampler=args.sampler, steps=args.steps,
                                              device="cpu")
    clip_model, clip_tokenizer = tiny_clip(Path(tempfile.mkdtemp()))
    results: dict[str, list[float]] = {}
    kept: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    for seed in range(args.seeds):
        splits = digits_splits(shots=args.shots, seed=seed)
        memo = MemoGenerator(base)

        def loader() -> DataLoader:
            shuffle = torch.Generator().manual_seed(derive_seed(seed, 2))
            return DataLoader(splits.train, batch_size=args.batch_size, shuffle=True, generator=shuffle)

        def gda(generator: Generator) -> FixedEpoch:
            return FixedEpoch(GenerativeLoader(loader(), generator, ratio=args.ratio, seed=seed,
                                               return_mask=True))

        def record(name: str, batches: Any, mix: Any = None) -> torch.nn.Module:
            start = time.perf_counter()
            model = train_classifier(batches, args.epochs, seed, mix=mix)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            results.setdefault(name, []).append(accuracy(model, splits.test))
            return model

        real_model = record("real only", loader())
        record("real-real mixup", loader(), GenMix(10, alpha=args.alpha, beta="symmetric",
                                                   pairing="real-real", seed=seed))
        record("GDA", gda(memo))
        record("GenMix", gda(memo), GenMix(10, alpha=args.alpha, beta="paper", seed=seed))
        features = penultimate(real_model)
        real_x, real_y = splits.train.tensors
        stages = {
            "GDA + TopK": TopK(real_model),
            "GDA + RealismScore": RealismScore(features, k=3).fit(real_x, real_y),
            "GDA + ClusterSelect": ClusterSelect(features, n_clusters=2, keep=0.5).fit(real_x, real_y),
            "GDA + ClipFilter (random tiny CLIP)": ClipFilter(
                clip_model, tokenizer=clip_tokenizer, class_names=[f"digit {d}" for d in DIGIT_CLASSES],
                keep=0.5),
        }
        for name, stage in stages.items():
            selected = SelectedGenerator(memo, [stage], candidates=args.candidates, on_empty="best")
            record(name, gda(selected))
            report = selected.selection_report()["total"]
            kept.setdefault(name, []).append(report["kept_fraction"])
        print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in results.items())
              + f" | generated {memo.generated}", flush=True)
    summary = {name: mean_ci(accs) for name, accs in results.items()}
    baseline = np.asarray(results["real only"])
    gains = {name: mean_ci(np.asarray(accs) - baseline) for name, accs in results.items()}
    return {"settings": vars(args), "accuracy": results, "mean_ci95": summary,
            "gain_vs_real_ci95": gains, "kept_fraction": kept, "seconds": seconds}


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [f"Digits, {s['shots']} labelled images per class, {s['seeds']} seeds; m_G/m_S = {s['ratio']}, "
             f"{s['sampler']} {s['steps']} steps, {s['candidates']} candidates per sample for selection; "
             "mean ± 95% CI.", "",
             "| arm | test accuracy | gain over real only (paired) | kept fraction |", "|---|---|---|---|"]
    for name, (mean, half) in report["mean_ci95"].items():
        gain, gain_half = report["gain_vs_real_ci95"][name]
        kept = report["kept_fraction"].get(name)
        kept_txt = f"{np.mean(kept):.2f}" if kept else ""
        gain_txt = "" if name == "real only" else f"{100 * gain:+.2f} ± {100 * gain_half:.2f}"
        lines.append(f"| {name} | {100 * mean:.2f} ± {100 * half:.2f} | {gain_txt} | {kept_txt} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
