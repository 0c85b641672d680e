"""The classifiers of the benchmarks: small CNNs, their training loop and their tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

__all__ = ["accuracy", "digits_cnn", "fit_classifier", "predict", "view_cnn"]


def digits_cnn(num_classes: int = 10) -> nn.Module:
    """A small CNN for 8x8 grayscale digits.

    Args:
        num_classes: Outputs of the last layer.

    Returns:
        An untrained ``nn.Sequential`` mapping ``(B, 1, 8, 8)`` to logits.
    """
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 16, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def view_cnn(num_classes: int = 16) -> nn.Module:
    """A three-level CNN for 32x32 RGB views.

    Args:
        num_classes: Outputs of the last layer.

    Returns:
        An untrained ``nn.Sequential`` mapping ``(B, 3, 32, 32)`` to logits.
    """
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 16, num_classes),
    )


def fit_classifier(
    classifier: Callable[[], nn.Module],
    batches: Iterable[Any],
    epochs: int,
    seed: int,
    lr: float = 1e-3,
    mix: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train a fresh ``classifier()`` with Adam on ``(x, y)`` or ``(x, y, synthetic)`` batches.

    Args:
        classifier: Builds the model; its weights are drawn under ``seed``.
        batches: Re-iterable batches; ``set_epoch`` is called each epoch when present.
        epochs: Passes over ``batches``.
        seed: Seeds the weights.
        lr: Adam's learning rate.
        mix: Optional batch transform ``mix(x, y[, mask]) -> (x, soft_y)`` such as
            :class:`~gdaload.GenMix`; the loss is then cross-entropy with soft targets.
        device: Where the model trains.

    Returns:
        The trained model, on ``device``.

    Example:
        >>> model = fit_classifier(digits_cnn, loader, epochs=40, seed=0)  # doctest: +SKIP
    """
    # fork_rng keeps the caller's global RNG untouched while the weights are initialised.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = classifier()
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        model.train()
        for hook in (batches, mix):
            set_epoch = getattr(hook, "set_epoch", None)
            if set_epoch is not None:
                set_epoch(epoch)
        for x, y, *mask in batches:
            target = y
            if mix is not None:
                x, target = mix(x, y, *mask)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x.to(device)), target.to(device)).backward()
            opt.step()
    return model


def predict(
    model: nn.Module, images: torch.Tensor, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Predicted classes of ``model`` for ``images``, in order, on the CPU.

    Args:
        model: A classifier returning logits; it is put in eval mode.
        images: ``(N, C, H, W)`` inputs.
        device: Where the model runs.

    Returns:
        ``(N,)`` class indices.
    """
    model.eval()
    with torch.inference_mode():
        # Large chunks: a test set of a few thousand images runs as one batch.
        return torch.cat([model(chunk.to(device)).argmax(1).cpu() for chunk in images.split(4096)])


def accuracy(model: nn.Module, data: TensorDataset) -> float:
    """Top-1 accuracy of ``model`` on a ``TensorDataset`` of ``(images, labels)``.

    Args:
        model: A classifier on the CPU.
        data: The test images and their labels.

    Returns:
        The fraction of images classified correctly.
    """
    x, y = data.tensors
    return float((predict(model, x) == y).float().mean())
