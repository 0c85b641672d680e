"""Quickstart: few-shot digits, a small classifier trained with and without GDA.

The diffusion model (shipped in ``gdaload/assets/digits-generator``, made by
``gdaload train-generator``) was trained on a pool of digits disjoint from the few-shot
training images and from the test set; it stands in for a pretrained model. For each
seed, the same CNN is trained for the same number of optimiser steps on the 100 real
images alone and through :class:`~gdaload.GenerativeLoader`, then both are tested.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gdaload.data.loader import GenerativeLoader
from gdaload.datasets.digits import digits_splits
from gdaload.generators.diffusion import DiffusionGenerator
from gdaload.seeding import derive_seed

__all__ = [
    "DIGITS_GENERATOR",
    "accuracy",
    "digits_cnn",
    "mean_ci",
    "run_quickstart",
    "train_classifier",
]

logger = logging.getLogger(__name__)

DIGITS_GENERATOR = resources.files("gdaload") / "assets" / "digits-generator"


def digits_cnn(num_classes: int = 10) -> nn.Module:
    """A small CNN for 8x8 grayscale digits."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(), nn.Linear(128, num_classes),
    )


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of the mean."""
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) < 2:
        return float(arr.mean()), float("nan")
    half = stats.t.ppf((1 + confidence) / 2, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr))
    return float(arr.mean()), float(half)


def accuracy(model: nn.Module, data: TensorDataset) -> float:
    """Top-1 accuracy of ``model`` on a ``TensorDataset`` of ``(images, labels)``."""
    model.eval()
    x, y = data.tensors
    with torch.inference_mode():
        return float((model(x).argmax(1) == y).float().mean())


def train_classifier(
    batches: Iterable[Any],
    epochs: int,
    seed: int,
    lr: float = 1e-3,
    mix: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> nn.Module:
    """Train :func:`digits_cnn` with Adam on ``(x, y)`` or ``(x, y, synthetic_mask)`` batches.

    Args:
        batches: Re-iterable batches; ``set_epoch`` is called each epoch when present.
        epochs: Passes over ``batches``.
        seed: Seeds the weights.
        lr: Adam's learning rate.
        mix: Optional batch transform ``mix(x, y[, mask]) -> (x, soft_y)`` such as
            :class:`~gdaload.GenMix`; the loss is then cross-entropy with soft targets.
    """
    # fork_rng keeps the caller's global RNG untouched while the weights are initialised.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = digits_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        model.train()
        for hook in (batches, mix):
            if hasattr(hook, "set_epoch"):
                hook.set_epoch(epoch)
        for x, y, *mask in batches:
            target = y
            if mix is not None:
                x, target = mix(x, y, *mask)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), target).backward()
            opt.step()
    return model


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
) -> dict[str, Any]:
    """Train the digits classifier with and without GDA for each seed and print a table.

    Returns:
        A dict with per-seed accuracies, means with 95% confidence intervals and the
        settings, also written to ``json_path`` when given.
    """
    generator = DiffusionGenerator.from_pretrained(
        Path(generator_path or DIGITS_GENERATOR), sampler=sampler, steps=steps,
        guidance_scale=guidance_scale, device="cpu",
    )
    results: dict[str, list[float]] = {"real only": [], "GDA": []}
    timing = {"real only": 0.0, "GDA": 0.0}
    for seed in seeds:
        splits = digits_splits(shots=shots, seed=seed)

        def real_loader() -> DataLoader:
            # Both arms see the real images in the same order.
            shuffle = torch.Generator().manual_seed(derive_seed(seed, 2))
            return DataLoader(splits.train, batch_size=batch_size, shuffle=True, generator=shuffle)

        start = time.perf_counter()
        results["real only"].append(accuracy(train_classifier(real_loader(), epochs, seed, lr), splits.test))
        timing["real only"] += time.perf_counter() - start
        start = time.perf_counter()
        gda = GenerativeLoader(real_loader(), generator, ratio=ratio, seed=seed)
        results["GDA"].append(accuracy(train_classifier(gda, epochs, seed, lr), splits.test))
        timing["GDA"] += time.perf_counter() - start
        print(f"seed {seed}: real only {results['real only'][-1]:.4f}  GDA {results['GDA'][-1]:.4f}",
              flush=True)
    gains = np.subtract(results["GDA"], results["real only"])
    summary = {name: mean_ci(accs) for name, accs in results.items()}
    summary["GDA - real only"] = mean_ci(gains)
    print(f"\nDigits, {shots} labelled images per class, {len(seeds)} seeds, test set of "
          f"{len(splits.test)} images; GDA ratio m_G/m_S = {ratio}, {sampler} {steps} steps\n")
    print("| method | test accuracy (mean ± 95% CI) | seconds |")
    print("|---|---|---|")
    for name in results:
        mean, half = summary[name]
        print(f"| {name} | {100 * mean:.2f} ± {100 * half:.2f} | {timing[name]:.1f} |")
    mean, half = summary["GDA - real only"]
    print(f"| GDA - real only (paired) | {100 * mean:+.2f} ± {100 * half:.2f} | |")
    report = {
        "task": "digits", "shots": shots, "seeds": list(seeds), "ratio": ratio, "epochs": epochs,
        "sampler": sampler, "steps": steps, "guidance_scale": guidance_scale,
        "accuracy": results, "mean_ci95": summary, "seconds": timing,
    }
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2))
    return report
