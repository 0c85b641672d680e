"""Quickstart: few-shot digits, a small classifier trained with and without GDA.

The diffusion model (shipped in ``gdaload/assets/digits-generator``, made by
``gdaload train-generator``) was trained on a pool of digits disjoint from the few-shot
training images and from the test set; it stands in for a pretrained model. For each
seed, the same CNN is trained for the same number of optimiser steps on the 100 real
images alone and through :class:`~gdaload.GenerativeLoader`, then both are tested.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from gdaload.bench.assets import DIGITS_GENERATOR
from gdaload.bench.classifier import accuracy, digits_cnn, fit_classifier
from gdaload.bench.stats import mean_ci, paired_gain
from gdaload.data.loader import GenerativeLoader
from gdaload.datasets.digits import digits_splits
from gdaload.generators.diffusion import DiffusionGenerator
from gdaload.seeding import Stream, derive_seed

__all__ = ["run_quickstart"]


def _real_loader(train: Dataset, batch_size: int, seed: int) -> DataLoader:
    """The real training images, shuffled by ``seed``: both arms see them in the same order."""
    shuffle = torch.Generator().manual_seed(derive_seed(seed, Stream.TRAIN_LOADER))
    return DataLoader(train, batch_size=batch_size, shuffle=True, generator=shuffle)


def run_quickstart(
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    *,
    generator_path: str | Path | None = None,
    ratio: float = 2.0,
    shots: int = 10,
    epochs: int = 40,
    batch_size: int = 20,
    sampler: str = "dpm-solver++",
    steps: int = 10,
    guidance_scale: float = 1.0,
    lr: float = 1e-3,
    json_path: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the digits classifier with and without GDA for each seed and print a table.

    Args:
        seeds: Experiment seeds (split, order of the images, weights, seed plan).
        generator_path: Another digits generator (default: the shipped one).
        ratio: m_G/m_S, synthetic samples per real one.
        shots: Labelled training images per class.
        epochs: Training epochs of both arms.
        batch_size: Real images per batch.
        sampler: Sampler of the generator (see :data:`~gdaload.SAMPLERS`).
        steps: Sampling steps per image.
        guidance_scale: Classifier-free guidance scale.
        lr: Adam learning rate.
        json_path: Where to write the returned dict as JSON (``None``: nowhere).
        progress: Show a progress bar over seeds and arms (on stderr).

    Returns:
        A dict with per-seed accuracies, means with 95% confidence intervals and the
        settings, also written to ``json_path`` when given.

    Example:
        >>> report = run_quickstart(seeds=[0], epochs=1, steps=2)  # doctest: +SKIP
        >>> sorted(report["accuracy"])  # doctest: +SKIP
        ['GDA', 'real only']
    """
    generator = DiffusionGenerator.from_pretrained(
        Path(generator_path or DIGITS_GENERATOR),
        sampler=sampler,
        steps=steps,
        guidance_scale=guidance_scale,
        device="cpu",
    )
    results: dict[str, list[float]] = {"real only": [], "GDA": []}
    timing = {"real only": 0.0, "GDA": 0.0}
    generation = {"real only": 0.0, "GDA": 0.0}  # seconds inside generator.generate
    seeds = list(seeds)
    # One step per arm and seed; the description says which is running, since a GDA arm
    # takes minutes on a busy CPU.
    bar = tqdm(total=2 * len(seeds), desc="quickstart", unit="arm", disable=not progress)
    for seed in seeds:
        splits = digits_splits(shots=shots, seed=seed)
        bar.set_description(f"quickstart seed {seed}: real only")
        start = time.perf_counter()
        real_model = fit_classifier(
            digits_cnn, _real_loader(splits.train, batch_size, seed), epochs, seed, lr
        )
        results["real only"].append(accuracy(real_model, splits.test))
        timing["real only"] += time.perf_counter() - start
        bar.update()
        bar.set_description(f"quickstart seed {seed}: GDA")
        start = time.perf_counter()
        gda = GenerativeLoader(
            _real_loader(splits.train, batch_size, seed), generator, ratio=ratio, seed=seed
        )
        results["GDA"].append(
            accuracy(fit_classifier(digits_cnn, gda, epochs, seed, lr), splits.test)
        )
        timing["GDA"] += time.perf_counter() - start
        generation["GDA"] += gda.stats()["generation_seconds"]
        bar.update()
        bar.write(
            f"seed {seed}: real only {results['real only'][-1]:.4f}  GDA {results['GDA'][-1]:.4f}"
        )
    bar.close()
    summary = {name: mean_ci(accs) for name, accs in results.items()}
    summary["GDA - real only"] = paired_gain(results["GDA"], results["real only"])
    print(
        f"\nDigits, {shots} labelled images per class, {len(seeds)} seeds, test set of "
        f"{len(splits.test)} images; GDA ratio m_G/m_S = {ratio}, {sampler} {steps} steps\n"
    )
    print("| method | test accuracy (mean ± 95% CI) | seconds | of which generating |")
    print("|---|---|---|---|")
    for name in results:
        mean, half = summary[name]
        print(
            f"| {name} | {100 * mean:.2f} ± {100 * half:.2f} | {timing[name]:.1f} "
            f"| {generation[name]:.1f} |"
        )
    mean, half = summary["GDA - real only"]
    print(f"| GDA - real only (paired) | {100 * mean:+.2f} ± {100 * half:.2f} | | |")
    report = {
        "task": "digits",
        "shots": shots,
        "seeds": list(seeds),
        "ratio": ratio,
        "epochs": epochs,
        "sampler": sampler,
        "steps": steps,
        "guidance_scale": guidance_scale,
        "accuracy": results,
        "mean_ci95": summary,
        "seconds": timing,
        "generation_seconds": generation,
    }
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2))
    return report
