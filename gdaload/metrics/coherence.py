"""Class coherence of generated samples.

Coherence is the share of generated images that a reference classifier assigns to the
class they were generated for (equation 7 of the DiMViDA paper):
``coherence = (1/N) Σ_i 1[argmax f(x_i) = y_i]``. Low coherence flags a generator that
ignores its conditioning or drifts into other classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gdaload.metrics.features import ImageSource, _extract

__all__ = ["coherence", "per_class_coherence"]


def coherence(
    classifier: nn.Module,
    images: ImageSource,
    intended_labels: torch.Tensor | Sequence[int] | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> float:
    """Share of generated samples classified as their intended class.

    Args:
        classifier: Reference classifier returning ``(B, C)`` logits, or ``(B, 1)``/``(B,)``
            logits of a binary classifier (positive means class 1).
        images: Generated images: a tensor, ``Dataset`` or iterable of batches.
        intended_labels: ``(N,)`` class each image was generated for. If ``None``, the
            batches must be ``(images, labels)`` pairs and their labels are used.
        batch_size: Batch size for tensors and datasets.
        device: Where the classifier runs (default: its own device).

    Returns:
        Coherence in ``[0, 1]``.

    Raises:
        ValueError: If the labels do not match the images in number, are out of range for
            the classifier, or the classifier outputs non-finite values.

    Example:
        >>> clf = nn.Flatten()  # two-channel 1x1 images whose pixels act as logits
        >>> images = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [1.0, 0.0]]).view(4, 2, 1, 1)
        >>> coherence(clf, images, [0, 1, 0, 1])
        0.75
    """
    hits, _, _ = _hits(classifier, images, intended_labels, batch_size, device)
    return float(hits.double().mean())


def per_class_coherence(
    classifier: nn.Module,
    images: ImageSource,
    intended_labels: torch.Tensor | Sequence[int] | None = None,
    num_classes: int | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Coherence computed separately for each intended class.

    Args:
        classifier: See :func:`coherence`.
        images: See :func:`coherence`.
        intended_labels: See :func:`coherence`.
        num_classes: Length of the result; defaults to the classifier's number of classes.
        batch_size: Batch size for tensors and datasets.
        device: Where the classifier runs.

    Returns:
        ``(num_classes,)`` float64 tensor; ``nan`` for classes with no generated samples.

    Raises:
        ValueError: As :func:`coherence`.

    Example:
        >>> clf = nn.Flatten()  # two-channel 1x1 images whose pixels act as logits
        >>> images = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [1.0, 0.0]]).view(4, 2, 1, 1)
        >>> per_class_coherence(clf, images, [0, 1, 0, 1]).tolist()
        [1.0, 0.5]
    """
    hits, labels, n_out = _hits(classifier, images, intended_labels, batch_size, device)
    n = n_out if num_classes is None else num_classes
    if n < n_out:
        raise ValueError(f"num_classes={n} is smaller than the classifier's {n_out} classes")
    counts = torch.bincount(labels, minlength=n).double()
    correct = torch.bincount(labels, weights=hits.double(), minlength=n)
    return torch.where(counts > 0, correct / counts.clamp_min(1), torch.nan)


def _hits(
    classifier: nn.Module,
    images: ImageSource,
    intended_labels: torch.Tensor | Sequence[int] | None,
    batch_size: int,
    device: torch.device | str | None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-sample correctness, the labels, and the classifier's number of classes."""
    logits, _, carried = _extract(
        images,
        classifier,
        batch_size=batch_size,
        device=device,
        with_targets=intended_labels is None,
    )
    if intended_labels is None:
        # with_targets was set, so _extract collected the batches' labels (or raised).
        assert carried is not None
        labels = carried
    else:
        labels = torch.as_tensor(intended_labels)
    labels = labels.reshape(-1)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"intended labels must be integer class indices, got {labels.dtype}")
    labels = labels.long().cpu()
    if len(labels) != len(logits):
        raise ValueError(f"got {len(labels)} intended labels for {len(logits)} images")
    if logits.shape[1] == 1:
        # A single logit is a binary classifier: positive means class 1.
        n_classes, preds = 2, (logits[:, 0] > 0).long()
    else:
        n_classes, preds = logits.shape[1], logits.argmax(dim=1)
    bad = (labels < 0) | (labels >= n_classes)
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"intended label {int(labels[index])} at sample {index} is outside the "
            f"classifier's {n_classes} classes"
        )
    return preds == labels, labels, n_classes
