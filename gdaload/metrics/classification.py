"""Per-class classification metrics for evaluating models trained with augmentation.

Sensitivity (recall), specificity, precision and F1 per class, one-vs-rest, plus
accuracy and macro F1: the columns usually reported when synthetic data is meant to
help minority classes. All of them derive from the confusion matrix, whose rows are true
classes and columns predicted classes (the scikit-learn convention). Ratios with a zero
denominator are reported as 0, as scikit-learn does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "ClassificationReport",
    "classification_report",
    "confusion_matrix",
    "per_class_metrics",
]


def confusion_matrix(
    preds: torch.Tensor | Sequence[int], labels: torch.Tensor | Sequence[int], num_classes: int
) -> torch.Tensor:
    """Count ``(true, predicted)`` pairs.

    Args:
        preds: ``(N,)`` predicted class indices, or ``(N, C)`` scores (argmax is taken).
        labels: ``(N,)`` true class indices.
        num_classes: Number of classes ``C``.

    Returns:
        ``(C, C)`` int64 tensor; entry ``[i, j]`` counts samples of class ``i`` predicted
        as ``j``.

    Raises:
        ValueError: If lengths differ or an index is outside ``[0, num_classes)``.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 0, 1], num_classes=2).tolist()
        [[1, 1], [0, 1]]
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    p = torch.as_tensor(preds).detach().cpu()
    if p.ndim == 2:
        p = p.argmax(dim=1)
    y = torch.as_tensor(labels).detach().cpu().reshape(-1)
    p = p.reshape(-1)
    if len(p) != len(y):
        raise ValueError(f"got {len(p)} predictions for {len(y)} labels")
    for name, t in (("prediction", p), ("label", y)):
        if t.is_floating_point() or t.dtype == torch.bool:
            raise ValueError(f"{name}s must be integer class indices, got {t.dtype}")
        bad = (t < 0) | (t >= num_classes)
        if bool(bad.any()):
            index = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"{name} {int(t[index])} at sample {index} is outside [0, {num_classes})"
            )
    flat = y.long() * num_classes + p.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_metrics(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """One-vs-rest metrics of every class from a confusion matrix.

    Args:
        confusion: ``(C, C)`` counts, rows true and columns predicted.

    Returns:
        float64 tensors of shape ``(C,)`` under ``"sensitivity"`` (recall, TP/(TP+FN)),
        ``"specificity"`` (TN/(TN+FP)), ``"precision"`` (TP/(TP+FP)), ``"f1"``
        (2TP/(2TP+FP+FN)) and ``"support"`` (TP+FN, the true count).

    Raises:
        ValueError: If ``confusion`` is not square or has negative entries.

    Example:
        >>> m = per_class_metrics(torch.tensor([[3, 1], [0, 4]]))
        >>> m["sensitivity"].tolist(), m["specificity"].tolist()
        ([0.75, 1.0], [1.0, 0.75])
    """
    c = torch.as_tensor(confusion).detach().cpu().double()
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion must be a square (C, C) matrix, got {tuple(c.shape)}")
    if bool((c < 0).any()):
        raise ValueError("confusion must hold non-negative counts")
    tp = c.diagonal()
    fn = c.sum(dim=1) - tp
    fp = c.sum(dim=0) - tp
    tn = c.sum() - tp - fn - fp
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "support": tp + fn,
    }


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # The clamp only keeps 0/0 from producing NaN in the branch that is discarded; it
    # must stay tiny because a normalised confusion matrix has fractional counts.
    safe = den.clamp_min(torch.finfo(den.dtype).tiny)
    return torch.where(den > 0, num / safe, torch.zeros_like(num))


@dataclass(frozen=True)
class ClassificationReport:
    """Accuracy, macro F1 and per-class sensitivity, specificity, precision and F1.

    Build it with :meth:`from_confusion` or :func:`classification_report`; ``str(report)``
    gives a table with one row per class.

    Attributes:
        confusion: ``(C, C)`` counts, rows true and columns predicted.
        accuracy: Share of correct predictions.
        macro_f1: Unweighted mean of the per-class F1 scores.
        sensitivity: ``(C,)`` per-class recall.
        specificity: ``(C,)`` per-class true-negative rate.
        precision: ``(C,)`` per-class precision.
        f1: ``(C,)`` per-class F1.
        support: ``(C,)`` number of true samples per class.
        class_names: One name per class.

    Example:
        >>> report = ClassificationReport.from_confusion(
        ...     torch.tensor([[3, 1], [0, 4]]), class_names=["benign", "malignant"]
        ... )
        >>> report.accuracy, report.rows()[1]["sensitivity"]
        (0.875, 1.0)
    """

    confusion: torch.Tensor
    accuracy: float
    macro_f1: float
    sensitivity: torch.Tensor
    specificity: torch.Tensor
    precision: torch.Tensor
    f1: torch.Tensor
    support: torch.Tensor
    class_names: tuple[str, ...]

    @classmethod
    def from_confusion(
        cls, confusion: torch.Tensor, class_names: Sequence[str] | None = None
    ) -> ClassificationReport:
        """Report for a ``(C, C)`` confusion matrix (rows true, columns predicted).

        Raises:
            ValueError: If the matrix is invalid, empty, or ``class_names`` has the wrong
                length.
        """
        metrics = per_class_metrics(confusion)
        c = torch.as_tensor(confusion).detach().cpu()
        total = float(c.sum())
        if total == 0:
            raise ValueError("the confusion matrix is empty (no samples)")
        names = (
            tuple(str(i) for i in range(c.shape[0])) if class_names is None else tuple(class_names)
        )
        if len(names) != c.shape[0]:
            raise ValueError(f"got {len(names)} class names for {c.shape[0]} classes")
        return cls(
            confusion=c,
            accuracy=float(c.diagonal().sum()) / total,
            macro_f1=float(metrics["f1"].mean()),
            sensitivity=metrics["sensitivity"],
            specificity=metrics["specificity"],
            precision=metrics["precision"],
            f1=metrics["f1"],
            support=metrics["support"].long(),
            class_names=names,
        )

    def rows(self) -> list[dict[str, float | int | str]]:
        """One dict per class with its name, sensitivity, specificity, precision, F1, support."""
        return [
            {
                "class": name,
                "sensitivity": float(self.sensitivity[i]),
                "specificity": float(self.specificity[i]),
                "precision": float(self.precision[i]),
                "f1": float(self.f1[i]),
                "support": int(self.support[i]),
            }
            for i, name in enumerate(self.class_names)
        ]

    def __str__(self) -> str:
        width = max(5, *(len(name) for name in self.class_names))
        columns = ("sensitivity", "specificity", "precision", "f1")
        lines = [f"{'class':<{width}}  " + "  ".join(f"{c:>11}" for c in columns) + "  support"]
        for row in self.rows():
            values = "  ".join(f"{row[c]:>11.4f}" for c in columns)
            lines.append(f"{row['class']:<{width}}  {values}  {row['support']:>7}")
        lines.append(f"accuracy {self.accuracy:.4f}  macro F1 {self.macro_f1:.4f}")
        return "\n".join(lines)


def classification_report(
    preds: torch.Tensor | Sequence[int],
    labels: torch.Tensor | Sequence[int],
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> ClassificationReport:
    """:class:`ClassificationReport` from predictions and labels.

    Args:
        preds: ``(N,)`` predicted classes or ``(N, C)`` scores.
        labels: ``(N,)`` true classes.
        num_classes: Number of classes.
        class_names: Optional names, one per class.

    Returns:
        The report.

    Example:
        >>> print(classification_report([0, 1, 1, 1], [0, 0, 1, 1], 2))
        class  sensitivity  specificity    precision           f1  support
        0           0.5000       1.0000       1.0000       0.6667        2
        1           1.0000       0.5000       0.6667       0.8000        2
        accuracy 0.7500  macro F1 0.7333
    """
    return ClassificationReport.from_confusion(
        confusion_matrix(preds, labels, num_classes), class_names
    )
