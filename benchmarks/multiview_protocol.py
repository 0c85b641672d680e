"""The DiMViDA protocol on the shipped multi-view dataset (MultiViewShapes).

1. Train (or load) a :class:`gdaload.MultiViewDiffusion` on all four views of the
   training objects.
2. Generator quality as the number of observed views grows from 1 to 3: PSNR and SSIM
   of the generated views against the true missing views, and coherence (the paper's
   equation 7): the share of generated views that a per-view reference classifier,
   trained on real views, assigns to the class of the object they were generated for.
   The same classifier's accuracy on the real missing views is reported beside it: single
   views of this dataset are ambiguous by design, so even real views do not reach 100%.
3. The 2x2 table: a small CNN trained on single views (of other objects than the
   generator's, few per class, as the paper's classifiers train on their own partition),
   or on single views plus the three views generated from each, evaluated on single
   views, or by averaging its softmax over the real view and three generated views
   (:class:`gdaload.GenerativeTTA`).

The single view is, by default, the paper's setting: each object contributes one random
view (its index known to the generator), so every classifier sees all viewpoints.
``--view NAME`` fixes it instead; a single-view classifier then never sees the other
viewpoints, so averaging it over generated views of them is expected to hurt. Generated
views add no information that the observed view lacks: from the front, three classes
of a family render identical pixels, from the right two (module documentation of
:mod:`gdaload.datasets.multiview`), so a perfect classifier of one view reaches
50%, 100%, 100% and 75% from the front, back, left and right. The gains averaging can
bring come from classifiers far below that ceiling: the views a generator draws show
the knob face on where the observed view shows only a bump.

Run ``python benchmarks/multiview_protocol.py`` (add ``--generator FOLDER`` to reuse a
trained model). Results go to ``results.md`` and ``results.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from gdaload.bench.classifier import view_cnn
from gdaload.bench.novel_views import ViewSet, generate_novel_views, tta_accuracy
from gdaload.bench.stats import mean_ci
from gdaload.datasets.multiview import (
    CLASSES,
    VIEW_NAMES,
    MultiViewShapes,
    lookalikes,
    render_instance,
)
from gdaload.generators.multiview.generator import MultiViewDiffusion
from gdaload.seeding import Stream, derive_rng, derive_seed
from gdaload.train.multiview import train_multiview


def view_ceiling(view: int) -> float:
    """Accuracy of a perfect classifier that sees only ``view``: it can only guess among
    the classes that look alike from there."""
    return sum(1 / len(lookalikes(c, view)) for c in range(len(CLASSES))) / len(CLASSES)


def ideal_views(
    labels: torch.Tensor, views: torch.Tensor, instance_seeds: Sequence[int], seed: int
) -> torch.Tensor:
    """What a perfect novel-view generator could draw: each object re-rendered with a
    class picked at random among those its observed view cannot tell apart (the same
    instance seed, so body, colours, light and camera are the object's own)."""
    rng = derive_rng(seed, Stream.PROTOCOL_IDEAL)
    return torch.stack(
        [
            render_instance(int(rng.choice(lookalikes(int(c), int(v)))), int(s))
            for c, v, s in zip(labels, views, instance_seeds, strict=True)
        ]
    )


def small_cnn(num_classes: int, seed: int) -> nn.Module:
    """A three-level CNN for 32x32 RGB images, initialised from ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return view_cnn(num_classes)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    seed: int,
    batch_size: int = 64,
    lr: float = 2e-3,
) -> nn.Module:
    """Adam on random batches (drawn from ``seed``), a fixed number of steps."""
    model = small_cnn(int(labels.max()) + 1, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    rng = torch.Generator().manual_seed(derive_seed(seed, Stream.PROTOCOL_TRAIN))
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(images), (batch_size,), generator=rng)
        loss = F.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [0, 1]."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (11-tap Gaussian window, sigma 1.5, no padding)."""
    return kornia.metrics.ssim(a, b, 11, padding="valid").flatten(1).mean(1)


def family(labels: torch.Tensor) -> torch.Tensor:
    """Body family of class indices (``CLASSES`` is family-major, one plain class and
    three featured ones per family)."""
    return labels // 4


def generation_quality(
    gen: MultiViewDiffusion,
    objects: torch.Tensor,
    labels: torch.Tensor,
    judge: nn.Module,
    seed: int,
) -> list[dict[str, float]]:
    """PSNR, SSIM and coherence of the generated views for 1..V-1 observed views.

    Each object observes a random subset of the given size (drawn from its index and
    the seed) and the other views are generated once.
    """
    n, v = objects.shape[:2]
    rows = []
    for k in range(1, v):
        mask = torch.zeros(n, v, dtype=torch.bool)
        for i in range(n):
            mask[i, derive_rng(seed, Stream.PROTOCOL_MASK, k, i).permutation(v)[:k]] = True
        seeds = [derive_seed(seed, Stream.PROTOCOL_QUALITY, k, i) for i in range(n)]
        generated = gen.generate_views(objects, mask, seeds).cpu()
        fake, real = generated[~mask], objects[~mask]
        owner = labels[:, None].expand(n, v)[~mask]
        judged_fake, judged_real = predict(judge, fake).argmax(1), predict(judge, real).argmax(1)
        rows.append(
            {
                "observed_views": k,
                "psnr": float(psnr(fake, real).mean()),
                "ssim": float(ssim(fake, real).mean()),
                "coherence": float((judged_fake == owner).double().mean()),
                "coherence_real_views": float((judged_real == owner).double().mean()),
                # The family shows in every view, so unlike the class it is never ambiguous.
                "family_coherence": float((family(judged_fake) == family(owner)).double().mean()),
                "family_coherence_real_views": float(
                    (family(judged_real) == family(owner)).double().mean()
                ),
            }
        )
    return rows


def observed_views(view: str, n: int, seed: int, stream: int) -> torch.Tensor:
    """The observed view of each object: the named one, or ``random`` (the paper's
    setting), one drawn per object from ``(seed, stream)``."""
    if view != "random":
        return torch.full((n,), VIEW_NAMES.index(view), dtype=torch.long)
    return torch.from_numpy(derive_rng(seed, stream).integers(len(VIEW_NAMES), size=n))


def averaged_over(model: nn.Module, objects: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy when the softmax is averaged over all ``V`` views of each object."""
    probs = predict(model, objects.flatten(0, 1)).softmax(-1).view(*objects.shape[:2], -1).mean(1)
    return float((probs.argmax(1) == labels).double().mean())


def stack(dataset: MultiViewShapes) -> tuple[torch.Tensor, torch.Tensor]:
    objects = torch.stack([dataset[i][0] for i in range(len(dataset))])
    return objects, torch.tensor(dataset.targets)


def summarise(values: Sequence[float]) -> dict[str, Any]:
    mean, half = mean_ci(values)
    return {"mean": mean, "ci95": half, "values": list(values)}


def fmt(summary: dict[str, Any], scale: float = 100.0, digits: int = 1, sign: bool = False) -> str:
    mean, half = summary["mean"] * scale, summary["ci95"] * scale
    text = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    return text if math.isnan(half) else f"{text} ± {half:.{digits}f}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = MultiViewShapes(args.train_per_class, seed=args.data_seed)
    # The classifiers' objects are other instances than the generator's, as in the paper
    # (whose generator and classifier train on disjoint partitions).
    labelled = MultiViewShapes(args.classifier_per_class, seed=args.data_seed + 1)
    test = MultiViewShapes(args.test_per_class, seed=args.data_seed, split="test")
    train_objects, train_labels = stack(train)
    clf_objects, clf_labels = stack(labelled)
    test_objects, test_labels = stack(test)
    folder = args.generator
    if folder is None:
        folder = train_multiview(
            train,
            args.workdir,
            detail_channels=args.detail_channels,
            ae_widths=args.ae_widths,
            ae_steps=args.ae_steps,
            widths=args.widths,
            attention=not args.no_attention,
            steps=args.diffusion_steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.generator_seed,
            checkpoint_every=max(args.diffusion_steps, args.ae_steps),
            progress=not args.quiet,
        )
    timings["generator_training_s"] = time.perf_counter() - started
    gen = MultiViewDiffusion.from_pretrained(
        folder, sampler=args.sampler, steps=args.sampler_steps, device="cpu"
    )
    with torch.inference_mode():
        recon = gen.autoencoder.decode(gen.autoencoder.encode(test_objects.flatten(0, 1)))
    autoencoder_psnr = float(psnr(recon, test_objects.flatten(0, 1)).mean())

    # The coherence judge: one classifier for every view, trained on all real views.
    tick = time.perf_counter()
    judge = train_classifier(
        train_objects.flatten(0, 1),
        train_labels.repeat_interleave(4),
        args.judge_steps,
        seed=10_000,
    )
    timings["judge_training_s"] = time.perf_counter() - tick

    quality: list[list[dict[str, float]]] = []
    cells: dict[str, list[float]] = {
        k: []
        for k in (
            "single/single",
            "single/averaged",
            "augmented/single",
            "augmented/averaged",
            "single/ideal_views",
            "single/real_views",
        )
    }
    train_views = observed_views(
        args.view, len(clf_objects), args.data_seed, Stream.PROTOCOL_TRAIN_VIEWS
    )
    test_views = observed_views(
        args.view, len(test_objects), args.data_seed, Stream.PROTOCOL_TEST_VIEWS
    )
    train_single = clf_objects[torch.arange(len(clf_objects)), train_views]
    test_single = test_objects[torch.arange(len(test_objects)), test_views]
    for seed in range(args.seeds):
        tick = time.perf_counter()
        quality.append(generation_quality(gen, test_objects, test_labels, judge, seed))
        timings[f"quality_seed{seed}_s"] = time.perf_counter() - tick

        tick = time.perf_counter()
        seeds = [derive_seed(seed, Stream.PROTOCOL_NOVEL, i) for i in range(len(train_single))]
        novel = generate_novel_views(gen, train_single, train_views, seeds)
        augmented_images = torch.cat([train_single, novel.flatten(0, 1)])
        augmented_labels = torch.cat([clf_labels, clf_labels.repeat_interleave(novel.shape[1])])
        models = {
            "single": train_classifier(train_single, clf_labels, args.classifier_steps, seed),
            "augmented": train_classifier(
                augmented_images, augmented_labels, args.classifier_steps, seed
            ),
        }
        test_set, views_cache = ViewSet(test_single, test_labels, test_views), {}
        for name, model in models.items():
            single, averaged = tta_accuracy(model, gen, test_set, seed, views_cache)
            cells[f"{name}/single"].append(single)
            cells[f"{name}/averaged"].append(averaged)
        # References for the single-view classifier: the observed view with the views a
        # perfect generator could draw (they hold no more than the observed view), and
        # all four real views (they also show what the observed view hides).
        ideal = ideal_views(test_labels, test_views, test.instance_seeds, seed)
        cells["single/ideal_views"].append(averaged_over(models["single"], ideal, test_labels))
        cells["single/real_views"].append(
            averaged_over(models["single"], test_objects, test_labels)
        )
        timings[f"classification_seed{seed}_s"] = time.perf_counter() - tick
        if not args.quiet:
            scores = ", ".join(f"{k} {v[-1]:.3f}" for k, v in cells.items())
            print(f"seed {seed}: {scores}", flush=True)

    quality_summary = [
        {
            "observed_views": k + 1,
            **{
                m: summarise([q[k][m] for q in quality])
                for m in (
                    "psnr",
                    "ssim",
                    "coherence",
                    "coherence_real_views",
                    "family_coherence",
                    "family_coherence_real_views",
                )
            },
        }
        for k in range(len(quality[0]))
    ]
    timings["total_s"] = time.perf_counter() - started
    ceiling = sum(view_ceiling(v) for v in test_views.tolist()) / len(test_views)
    return {
        "settings": vars(args) | {"generator": str(folder)},
        "autoencoder_psnr": autoencoder_psnr,
        "single_view_ceiling": ceiling,
        "quality": quality_summary,
        "classification": {k: summarise(v) for k, v in cells.items()},
        # Paired by seed: the same classifier and test views with and without averaging.
        "averaging_gain": {
            name: summarise(
                [
                    a - b
                    for a, b in zip(cells[f"{name}/averaged"], cells[f"{name}/single"], strict=True)
                ]
            )
            for name in ("single", "augmented")
        },
        "timings": timings,
    }


def markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    c = results["classification"]
    g = results["averaging_gain"]
    lines = [
        f"## DiMViDA protocol on MultiViewShapes ({s['seeds']} seeds, mean ± 95% CI)",
        "",
        (
            f"Generator trained on all views of {s['train_per_class']} objects per class "
            f"(16 classes); classifiers on one view of {s['classifier_per_class']} other objects "
            f"per class; test: {s['test_per_class']} objects per class. "
            f"Sampler {s['sampler']}, {s['sampler_steps']} steps. "
            f"Autoencoder reconstruction PSNR {results['autoencoder_psnr']:.1f} dB."
        ),
        "",
        "### Generated views against the true missing views",
        "",
        (
            "| observed views | PSNR (dB) | SSIM | coherence (%) "
            "| same judge on the real views (%) | family coherence (%) | on the real views (%) |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["quality"]:
        lines.append(
            f"| {row['observed_views']} | {fmt(row['psnr'], 1, 2)} | "
            f"{fmt(row['ssim'], 1, 3)} | {fmt(row['coherence'])} | "
            f"{fmt(row['coherence_real_views'])} | {fmt(row['family_coherence'])} | "
            f"{fmt(row['family_coherence_real_views'])} |"
        )
    lines += [
        "",
        (
            f"### Classification accuracy (%), single view = {s['view']} "
            f"(ceiling {100 * results['single_view_ceiling']:.0f}%)"
        ),
        "",
        (
            "| classifier trained on | test: single view | test: averaged over generated views "
            "| averaging gain (paired) |"
        ),
        "|---|---|---|---|",
        (
            f"| single views | {fmt(c['single/single'])} | {fmt(c['single/averaged'])} "
            f"| {fmt(g['single'], sign=True)} |"
        ),
        (
            f"| single + generated views | {fmt(c['augmented/single'])} | "
            f"{fmt(c['augmented/averaged'])} | {fmt(g['augmented'], sign=True)} |"
        ),
        "",
        (
            "References for the classifier trained on single views, averaged over the observed "
            "view and the 3 views an *ideal* generator could draw: "
            f"{fmt(c['single/ideal_views'])}%; "
            f"over the four *real* views (which also show what the observed view hides): "
            f"{fmt(c['single/real_views'])}%."
        ),
        f"Total time {results['timings']['total_s'] / 60:.1f} min.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out",
        default="benchmarks/results/multiview_protocol",
        help="folder for results.md and results.json",
    )
    p.add_argument("--generator", default=None, help="a trained MultiViewDiffusion folder to reuse")
    p.add_argument(
        "--workdir",
        default="runs/multiview_protocol/generator",
        help="where the generator is trained (and resumed) without --generator",
    )
    p.add_argument(
        "--view",
        default="random",
        choices=(*VIEW_NAMES, "random"),
        help="the single observed view, or 'random': one random view per object",
    )
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument(
        "--classifier-per-class",
        type=int,
        default=20,
        help="objects per class whose single view trains the classifiers",
    )
    p.add_argument("--test-per-class", type=int, default=64)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--generator-seed", type=int, default=0)
    p.add_argument("--detail-channels", type=int, default=3)
    p.add_argument("--ae-widths", type=int, nargs="+", default=[16, 32])
    p.add_argument("--ae-steps", type=int, default=1000)
    p.add_argument("--widths", type=int, nargs="+", default=[48, 96], help="UNet level widths")
    p.add_argument(
        "--no-attention", action="store_true", help="no self-attention at the UNet's coarsest level"
    )
    p.add_argument("--diffusion-steps", type=int, default=30000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--sampler", default="dpm-solver++")
    p.add_argument("--sampler-steps", type=int, default=20)
    p.add_argument("--judge-steps", type=int, default=1500)
    p.add_argument("--classifier-steps", type=int, default=800)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    results = run(args)
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = markdown(results)
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
