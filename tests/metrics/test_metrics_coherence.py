import math

import pytest
import torch
from torch import nn

from gdaload.metrics import coherence, per_class_coherence


class BrightestChannel(nn.Module):
    """Hand-made classifier: the logit of class c is the mean of channel c."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def one_hot_images(classes: list[int], num_classes: int = 3) -> torch.Tensor:
    images = torch.zeros(len(classes), num_classes, 4, 4)
    images[torch.arange(len(classes)), torch.tensor(classes)] = 1.0
    return images


# The classifier sees these classes; the generator was asked for INTENDED.
SEEN = [0, 0, 1, 2, 2, 1, 0, 2]
INTENDED = [0, 1, 1, 2, 0, 1, 0, 2]  # samples 1 and 4 are off-class


def test_coherence_is_the_share_classified_as_intended():
    images = one_hot_images(SEEN)
    assert coherence(BrightestChannel(), images, INTENDED, batch_size=3) == pytest.approx(6 / 8)
    assert coherence(BrightestChannel(), images, torch.tensor(SEEN)) == 1.0


def test_per_class_coherence():
    per_class = per_class_coherence(BrightestChannel(), one_hot_images(SEEN), INTENDED)
    torch.testing.assert_close(per_class, torch.tensor([2 / 3, 2 / 3, 1.0], dtype=torch.float64))
    padded = per_class_coherence(BrightestChannel(), one_hot_images(SEEN), INTENDED, num_classes=4)
    assert math.isnan(padded[3])


def test_labels_can_come_with_the_batches():
    images, labels = one_hot_images(SEEN), torch.tensor(INTENDED)
    batches = [(images[:5], labels[:5]), (images[5:], labels[5:])]
    assert coherence(BrightestChannel(), batches) == pytest.approx(6 / 8)


def test_single_logit_is_a_binary_classifier():
    images = torch.tensor([2.0, -1.0, 0.5, -3.0]).view(4, 1, 1, 1)
    logit = nn.Flatten(0)  # (B,) output: positive means class 1
    assert coherence(logit, images, [1, 0, 0, 0]) == pytest.approx(3 / 4)


@pytest.mark.reliability
def test_bad_labels_are_rejected():
    images = one_hot_images(SEEN)
    with pytest.raises(ValueError, match="7 intended labels for 8 images"):
        coherence(BrightestChannel(), images, INTENDED[:7])
    with pytest.raises(ValueError, match="label 3 at sample 0 is outside"):
        coherence(BrightestChannel(), images, [3] + INTENDED[1:])
    with pytest.raises(ValueError, match="integer class indices"):
        coherence(BrightestChannel(), images, torch.zeros(8))
    with pytest.raises(ValueError, match="labels were not given"):
        coherence(BrightestChannel(), images)
    with pytest.raises(ValueError, match="num_classes=2 is smaller"):
        per_class_coherence(BrightestChannel(), images, INTENDED, num_classes=2)


@pytest.mark.reliability
def test_non_finite_logits_are_rejected():
    images = one_hot_images(SEEN)
    images[6] = float("nan")
    with pytest.raises(ValueError, match="non-finite.*sample 6"):
        coherence(BrightestChannel(), images, INTENDED, batch_size=4)
