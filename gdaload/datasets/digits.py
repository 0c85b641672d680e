"""scikit-learn's handwritten digits as a few-shot task (no download: it ships with sklearn).

1,797 grayscale 8x8 images of 10 digits. A fixed partition (independent of the
experiment seed) holds out a test set and a *generator pool* used only to train the
diffusion model that stands in for a pretrained one; each experiment seed then draws its
few labelled training images per class from the remaining *reservoir*, so the classifier
never sees an image the generator was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from gdaload.seeding import Stream, derive_rng

__all__ = ["DIGIT_CLASSES", "DigitsSplits", "digits_splits", "digits_subset"]

DIGIT_CLASSES = [str(d) for d in range(10)]
#: Seed of the fixed partition; the shipped generator was trained on its pool.
PARTITION_SEED = 0


@dataclass
class DigitsSplits:
    """Datasets of ``(image (1, 8, 8) float in [0, 1], label)`` pairs.

    Attributes:
        train: The few-shot training images of one experiment seed.
        generator_pool: Images kept for training the generator only.
        test: The held-out test images.

    Example:
        >>> splits = digits_splits(shots=5, seed=1)
        >>> len(splits.train), len(splits.test) + len(splits.generator_pool) > 1000
        (50, True)
    """

    train: TensorDataset
    generator_pool: TensorDataset
    test: TensorDataset


def _as_dataset(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    x = torch.from_numpy(images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))


def digits_splits(
    shots: int = 10, seed: int = 0, test_fraction: float = 0.3, pool_fraction: float = 0.5
) -> DigitsSplits:
    """Split the digits into a few-shot train set, a generator pool and a test set.

    Args:
        shots: Labelled training images per class, drawn from the reservoir by ``seed``.
        seed: Experiment seed; the test set and the generator pool do not depend on it.
        test_fraction: Share of each class held out for testing.
        pool_fraction: Share of each class reserved for training the generator.

    Example:
        >>> splits = digits_splits(shots=10, seed=0)
        >>> len(splits.train), splits.train[0][0].shape
        (100, torch.Size([1, 8, 8]))
    """
    from sklearn.datasets import load_digits

    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    if not (0 < test_fraction < 1 and 0 < pool_fraction < 1 and test_fraction + pool_fraction < 1):
        raise ValueError("test_fraction and pool_fraction must be in (0, 1) with a sum below 1")
    data = load_digits()
    images, labels = data.images, data.target
    # Indices as drawn (NumPy integers), per class in turn.
    test_idx: list[np.int64] = []
    pool_idx: list[np.int64] = []
    train_idx: list[np.int64] = []
    partition = derive_rng(PARTITION_SEED)
    draw = derive_rng(seed, Stream.SPLIT_DRAW)
    for c in range(10):
        idx = partition.permutation(np.flatnonzero(labels == c))
        n_test, n_pool = round(len(idx) * test_fraction), round(len(idx) * pool_fraction)
        test_idx.extend(idx[:n_test])
        pool_idx.extend(idx[n_test : n_test + n_pool])
        reservoir = idx[n_test + n_pool :]
        if shots > len(reservoir):
            raise ValueError(
                f"class {c} has only {len(reservoir)} images for few-shot training; "
                f"ask for shots <= {len(reservoir)}"
            )
        train_idx.extend(draw.choice(reservoir, size=shots, replace=False))
    return DigitsSplits(
        *(
            _as_dataset(images[i], labels[i])
            for i in (np.array(train_idx), np.array(pool_idx), np.array(test_idx))
        )
    )


def digits_subset(data: TensorDataset, digits: list[int] | tuple[int, ...]) -> TensorDataset:
    """The items of ``data`` whose digit is in ``digits``, relabelled ``0..len(digits) - 1``
    in the order given (``digits_subset(test, [5, 6])`` makes 5 label 0).

    Adapting a model pretrained on some digits to the others needs both sides as tasks
    of their own.

    Raises:
        ValueError: If ``digits`` is empty, repeats a digit, or names one ``data`` lacks.

    Example:
        >>> test = digits_splits().test
        >>> fives_and_sixes = digits_subset(test, [5, 6])
        >>> sorted(set(fives_and_sixes.tensors[1].tolist()))
        [0, 1]
    """
    images, labels = data.tensors
    if not digits or len(set(digits)) != len(digits):
        raise ValueError(f"digits must be distinct and at least one, got {list(digits)}")
    missing = [d for d in digits if not bool((labels == d).any())]
    if missing:
        raise ValueError(f"the data has no image of the digits {missing}")
    relabel = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long)
    relabel[torch.as_tensor(list(digits))] = torch.arange(len(digits))
    keep = relabel[labels] >= 0
    return TensorDataset(images[keep], relabel[labels[keep]])
