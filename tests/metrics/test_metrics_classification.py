import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score

from gdaload.metrics import (
    ClassificationReport,
    classification_report,
    confusion_matrix,
    per_class_metrics,
)

# Rows are true classes, columns predictions; 28 samples.
CONFUSION = torch.tensor([[5, 2, 1], [1, 6, 3], [0, 2, 8]])
# By hand, one-vs-rest:
#   class 0: TP 5, FN 3, FP 1, TN 19
#   class 1: TP 6, FN 4, FP 4, TN 14
#   class 2: TP 8, FN 2, FP 4, TN 14
SENSITIVITY = [5 / 8, 6 / 10, 8 / 10]
SPECIFICITY = [19 / 20, 14 / 18, 14 / 18]
PRECISION = [5 / 6, 6 / 10, 8 / 12]
F1 = [10 / 14, 12 / 20, 16 / 22]


def predictions_for(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    labels, preds = [], []
    for true, row in enumerate(confusion.tolist()):
        for pred, count in enumerate(row):
            labels += [true] * count
            preds += [pred] * count
    return torch.tensor(preds), torch.tensor(labels)


def as_double(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_per_class_metrics_of_a_hand_made_confusion_matrix():
    metrics = per_class_metrics(CONFUSION)
    torch.testing.assert_close(metrics["sensitivity"], as_double(SENSITIVITY))
    torch.testing.assert_close(metrics["specificity"], as_double(SPECIFICITY))
    torch.testing.assert_close(metrics["precision"], as_double(PRECISION))
    torch.testing.assert_close(metrics["f1"], as_double(F1))
    torch.testing.assert_close(metrics["support"], as_double([8, 10, 10]))


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    preds, labels = predictions_for(CONFUSION)
    assert torch.equal(confusion_matrix(preds, labels, 3), CONFUSION)
    scores = torch.nn.functional.one_hot(preds, 3).float()  # argmax of scores
    assert torch.equal(confusion_matrix(scores, labels, 3), CONFUSION)


def test_report_matches_hand_values_and_scikit_learn():
    preds, labels = predictions_for(CONFUSION)
    report = classification_report(preds, labels, 3, class_names=["a", "b", "c"])
    assert report.accuracy == pytest.approx(19 / 28)
    assert report.macro_f1 == pytest.approx(sum(F1) / 3)
    assert report.macro_f1 == pytest.approx(f1_score(labels, preds, average="macro"))
    sk_precision = precision_score(labels, preds, average=None)
    sk_recall = recall_score(labels, preds, average=None)
    torch.testing.assert_close(report.precision, torch.from_numpy(sk_precision))
    torch.testing.assert_close(report.sensitivity, torch.from_numpy(sk_recall))
    row = report.rows()[2]
    assert row["class"] == "c" and row["support"] == 10
    assert row["specificity"] == pytest.approx(14 / 18)
    text = str(report)
    assert "sensitivity" in text and "0.7778" in text and "macro F1 0.6805" in text


def test_undefined_ratios_are_zero():
    # Class 2 never occurs and is never predicted.
    report = ClassificationReport.from_confusion(torch.tensor([[2, 0, 0], [1, 1, 0], [0, 0, 0]]))
    assert report.sensitivity[2] == 0 and report.precision[2] == 0 and report.f1[2] == 0
    assert report.specificity[2] == 1


@pytest.mark.reliability
def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="label 3 at sample 1 is outside"):
        confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        confusion_matrix([0, 1], [0, 1, 2], 3)
    with pytest.raises(ValueError, match="integer class indices"):
        confusion_matrix(torch.tensor([0.0, 1.0]), [0, 1], 2)
    with pytest.raises(ValueError, match="square"):
        per_class_metrics(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="empty"):
        ClassificationReport.from_confusion(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        ClassificationReport.from_confusion(CONFUSION, class_names=["a", "b"])
