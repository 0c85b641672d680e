"""Hard-example variations: image-conditioned samples of the training images the model fails on.

After an epoch the training loop hands over the real samples the model gets wrong or is
least sure of (``loader.hard_examples(indices)``, or ``scores=`` one difficulty per real
sample and ``top=``), for the *next* epoch. Their variations (SDEdit: the source image
noised to ``strength`` and denoised under its own class) then take synthetic positions:

* The class policy still fixes every class's synthetic count. Of class ``c``'s
  positions in the epoch's plan (in plan order, which is random), the first
  ``round(share * n_c)`` become variations when some hard example has class ``c``; they
  cycle through that class's hard examples in the order given (hardest first when chosen
  by ``scores``). A variation keeps its source's label, so labels, class counts and the
  ratio are exactly those of the plan without hard examples; only how some positions
  are made changes. A class with no synthetic position under the policy (a majority
  class under ``balance``) gets no variations.
* The hard examples handed over for an epoch apply from that epoch on, until the next
  hand-over (an empty list stops the variations).
* Which position varies which real sample is a pure function of the seed, the epoch,
  the feedback and the hard examples handed over, so resumed runs and ranks holding the
  same hand-overs serve the same samples. A variation's seed is its position's seed.

Variations are not written to or read from a sample store: their image depends on the
source image, which the store's key (label, seed) does not hold. Under the thread
engine's ``dry_policy="reuse"`` a variation position whose sample is late may be served
another generated sample of its class, as any position may.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gdaload.generators.base import ImageConditionedGenerator, require_kind

__all__ = [
    "HARD_SHARE",
    "HARD_STRENGTH",
    "HardExamples",
    "active",
    "DatasetImages",
    "check_hard_indices",
    "hard_from_state",
    "hand_over",
    "hardest",
    "make_hand_over",
    "variation_sources",
]

#: Default share of a class's synthetic positions given to its hard examples' variations.
HARD_SHARE = 0.5
#: Default SDEdit strength: how far a variation may move from its source image.
HARD_STRENGTH = 0.5


@dataclass(frozen=True)
class HardExamples:
    """One hand-over: the real samples whose variations epochs from ``epoch`` on serve.

    Attributes:
        epoch: The first epoch they apply to.
        indices: Real-dataset indices, hardest first.
        labels: Their class labels (same order).
        share: Share of a class's synthetic positions given to variations.
        strength: SDEdit strength of the variations.

    Example:
        >>> HardExamples(1, (4, 0), (1, 0), 0.5, 0.5).as_state()
        [1, [4, 0], 0.5, 0.5]
    """

    epoch: int
    indices: tuple[int, ...]
    labels: tuple[int, ...]
    share: float = HARD_SHARE
    strength: float = HARD_STRENGTH

    def as_state(self) -> list[Any]:
        """``[epoch, [indices...], share, strength]`` (the labels come from the data)."""
        return [self.epoch, list(self.indices), self.share, self.strength]


def _fraction(value: Any, name: str, low_open: bool) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not math.isfinite(out) or out > 1 or out < 0 or (low_open and out == 0):
        bound = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be a finite number in {bound}, got {value!r}")
    return out


def check_hard_indices(indices: Any, num_real: int) -> tuple[int, ...]:
    """Real-dataset indices of hard examples, checked.

    Args:
        indices: A 1-D sequence, array or tensor of integer indices into the real data.
        num_real: Real samples in the data.

    Raises:
        ValueError: On floats or booleans, another shape, an index outside
            ``[0, num_real)``, or an index given twice; the message says how to fix it.

    Example:
        >>> check_hard_indices([3, 0], 5)
        (3, 0)
    """
    arr = np.asarray(indices.tolist() if hasattr(indices, "tolist") else indices)
    if arr.size == 0:
        return ()
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"hard examples must be a 1-D sequence of integer indices into the real data; "
            f"got shape {arr.shape} and dtype {arr.dtype}. For a boolean mask of wrong "
            "predictions pass np.flatnonzero(mask) (or torch.nonzero(mask).flatten()); for "
            "per-sample difficulties pass scores= and top="
        )
    bad = arr[(arr < 0) | (arr >= num_real)]
    if bad.size:
        raise ValueError(
            f"hard example index {int(bad[0])} is out of range: the real data has {num_real} "
            f"samples (indices 0..{num_real - 1}); pass indices of the wrapped dataset, not "
            "of a batch or of another split"
        )
    values, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"hard example index {int(values[counts > 1][0])} is given more than once; pass "
            "each index once (e.g. through np.unique after gathering them from all ranks). "
            "A harder example does not get more variations: they are shared out evenly"
        )
    return tuple(int(i) for i in arr)


def hardest(scores: Any, top: Any, num_real: int) -> tuple[int, ...]:
    """Indices of the ``top`` highest scores, hardest first (ties: lower index first).

    Args:
        scores: One difficulty per real sample, higher is harder (e.g. the loss, or
            ``1 - `` the confidence in the true class).
        top: How many to take (an integer in ``[0, num_real]``).
        num_real: Real samples in the data.

    Raises:
        ValueError: On scores of another length or not finite, or a bad ``top``.

    Example:
        >>> hardest([0.1, 0.9, 0.5, 0.9], 2, 4)
        (1, 3)
    """
    arr = np.asarray(scores.tolist() if hasattr(scores, "tolist") else scores, dtype=np.float64)
    if arr.shape != (num_real,):
        raise ValueError(
            f"scores need one value per real sample: shape ({num_real},), got {arr.shape}; "
            "score the whole training set in dataset order (e.g. with shuffle=False)"
        )
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"score of real sample {int(bad[0])} is {float(arr[bad[0]])!r}; every score must "
            "be a finite number (a NaN loss means the model diverged: fix that first)"
        )
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 0 <= top <= num_real:
        raise ValueError(
            f"top must be an integer in [0, {num_real}] (how many hardest samples to vary), "
            f"got {top!r}"
        )
    order = np.lexsort((np.arange(num_real), -arr))
    return tuple(int(i) for i in order[: int(top)])


def make_hand_over(
    epoch: int,
    indices: tuple[int, ...],
    real_labels: np.ndarray,
    share: Any,
    strength: Any,
) -> HardExamples:
    """A checked :class:`HardExamples` with each index's label."""
    return HardExamples(
        int(epoch),
        indices,
        tuple(int(real_labels[i]) for i in indices),
        _fraction(share, "share", low_open=True),
        _fraction(strength, "strength", low_open=True),
    )


def hand_over(
    spec: Any, indices: Any, scores: Any, top: Any, share: Any, strength: Any, epoch: int
) -> tuple[HardExamples, ...]:
    """``spec``'s hard-example history with a hand-over for ``epoch`` on added.

    Args:
        spec: The :class:`~gdaload.data.SyntheticSpec` of the wrapper.
        indices: Real-dataset indices (see :func:`check_hard_indices`), or ``None``.
        scores: One difficulty per real sample (see :func:`hardest`), or ``None``;
            exactly one of ``indices`` and ``scores``.
        top: With ``scores``: how many of the hardest to vary.
        share: Share of each class's synthetic positions given to variations, in (0, 1].
        strength: SDEdit strength, in (0, 1].
        epoch: The first epoch the hand-over applies to.

    Raises:
        ValueError: On bad indices, scores, ``top``, ``share`` or ``strength``, on a
            generator that cannot vary images, without real labels, with
            ``refresh < 1``, or if ``epoch`` already has hard examples.
    """
    require_kind(
        spec.generator,
        ImageConditionedGenerator,
        "hard_examples()",
        "Hard-example variations are image-conditioned: use gdaload.DiffusionGenerator",
    )
    labels = spec.real_labels
    if labels is None:
        raise ValueError(
            "hard examples need the real labels (a variation keeps its source's class); "
            "pass labels=[...] to the wrapper"
        )
    if spec.refresh < 1.0:
        raise ValueError(
            f"refresh={spec.refresh!r} carries samples over through the store, which does "
            "not keep variations (their image depends on the source image); use refresh=1 "
            "with hard examples"
        )
    if (indices is None) == (scores is None):
        raise ValueError(
            "pass either indices (the real samples to vary) or scores= with top= (one "
            "difficulty per real sample; the top hardest are varied), not both or neither"
        )
    if scores is not None:
        chosen = hardest(scores, top, len(labels))
    elif top is not None:
        raise ValueError("top= picks among scores=; with indices, pass only the ones to vary")
    else:
        chosen = check_hard_indices(indices, len(labels))
    history: tuple[HardExamples, ...] = spec.hard
    if history and epoch <= history[-1].epoch:
        raise ValueError(
            f"epoch {epoch} is already planned: hard examples were given for epoch "
            f"{history[-1].epoch}. Hand them over once per epoch, after the epoch's training "
            "and before the next one starts"
        )
    return (*history, make_hand_over(epoch, chosen, labels, share, strength))


def active(history: tuple[HardExamples, ...], epoch: int) -> HardExamples | None:
    """The hand-over that applies to ``epoch`` (the last one for it or before it)."""
    found = None
    for entry in history:
        if entry.epoch > epoch:
            break
        found = entry
    return found if found is not None and found.indices else None


def variation_sources(labels: Sequence[int] | np.ndarray, entry: HardExamples) -> np.ndarray:
    """Source index of every position of a plan's label order (-1: a plain sample).

    Args:
        labels: The epoch's planned labels, in position order.
        entry: The hand-over that applies.

    Example:
        >>> variation_sources((0, 1, 0, 0, 1), HardExamples(0, (7,), (0,), 0.5)).tolist()
        [7, -1, 7, -1, -1]
    """
    plan = np.asarray(labels, dtype=np.int64)
    out = np.full(len(plan), -1, dtype=np.int64)
    by_class: dict[int, list[int]] = {}
    for index, label in zip(entry.indices, entry.labels, strict=True):
        by_class.setdefault(label, []).append(index)
    for label, sources in by_class.items():
        positions = np.flatnonzero(plan == label)
        count = min(len(positions), math.floor(entry.share * len(positions) + 0.5))
        out[positions[:count]] = np.resize(np.asarray(sources, dtype=np.int64), count)
    return out


class DatasetImages:
    """A reader of real images by index: ``dataset[i][0]`` stacked (picklable, so it
    travels to DataLoader workers with its dataset).

    The default source of variations. The images must be float tensors in [0, 1] of the
    generator's shape, read without random transforms (the thread engine reads them in
    its own thread, and a variation must not depend on when it was made); otherwise pass
    the wrapper a ``source_images=`` reader of the untransformed images.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> read = DatasetImages(TensorDataset(torch.zeros(3, 1, 4, 4), torch.zeros(3)))
        >>> read([2, 0]).shape
        torch.Size([2, 1, 4, 4])
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self, indices: list[int]) -> torch.Tensor:
        name = type(self.dataset).__name__
        items = [self.dataset[i] for i in indices]
        if not all(isinstance(item, (tuple, list)) and item for item in items):
            raise ValueError(
                f"cannot read source images from {name}: its items are not (image, label) "
                "pairs; pass source_images= to the wrapper"
            )
        images = [item[0] for item in items]
        if not all(isinstance(image, torch.Tensor) for image in images):
            raise ValueError(
                f"the images of {name} are not tensors; pass source_images= (indices -> "
                "(N, C, H, W) floats in [0, 1]) to the wrapper"
            )
        return torch.stack(images)


def hard_from_state(
    value: Any, real_labels: np.ndarray | None, num_real: int
) -> tuple[HardExamples, ...]:
    """Read the ``"hard_examples"`` entry of a saved state
    (``[[epoch, [indices...], share, strength], ...]``).

    Raises:
        ValueError: If it is not such a list with increasing epochs and valid indices,
            or it holds hard examples but the real labels are unknown.
    """
    out: list[HardExamples] = []
    try:
        entries = [(int(e), list(i), s, t) for e, i, s, t in value]
    except (TypeError, ValueError):
        raise ValueError(
            "the state's 'hard_examples' must be a list of [epoch, [indices], share, "
            "strength]; pass a dict made by state_dict()"
        ) from None
    for epoch, indices, share, strength in entries:
        if epoch < 0 or (out and epoch <= out[-1].epoch):
            raise ValueError(
                f"the state's hard-example epochs must increase from 0, got {epoch} after "
                f"{out[-1].epoch if out else None}"
            )
        checked = check_hard_indices(indices, num_real)
        if checked and real_labels is None:
            raise ValueError("the state holds hard examples but the real labels are unknown")
        labels = real_labels if real_labels is not None else np.zeros(0, dtype=np.int64)
        out.append(make_hand_over(epoch, checked, labels, share, strength))
    return tuple(out)
