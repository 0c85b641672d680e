"""``SyntheticSpec``: what :class:`~gdaload.GenerativeLoader` and
:class:`~gdaload.GenerativeDataset` share about their synthetic samples.

Both wrappers take a generator, a ratio m_G/m_S, a seed, a class policy, the real labels
and an optional store, check them the same way, and keep the same epoch state; the spec
is that part, written once. How the synthetic samples reach the training loop (appended
to batches, or indices after the real ones) stays in the wrappers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from gdaload.cache.store import SampleStore
from gdaload.data.feedback import FeedbackHistory, check_feedback, history_from_state
from gdaload.data.hard import HardExamples, hand_over, hard_from_state
from gdaload.data.plan import SyntheticPlan
from gdaload.data.policies import CLASS_POLICIES, as_int_labels, check_ratio, real_class_counts
from gdaload.generators.base import Generator, refuse_multiview
from gdaload.generators.stored import StoredSamples
from gdaload.seeding import SeedPlan, SharedEpoch
from gdaload.seeding.refresh import check_refresh

__all__ = [
    "MODES",
    "LabelSource",
    "SpecAttributes",
    "StoreLike",
    "SyntheticSpec",
    "check_not_empty",
    "open_store",
]

#: How synthetic samples join the real ones: appended to the batch (it grows), or in
#: place of real rows (its size stays).
MODES = ("add", "replace")

#: The real labels: given, read on demand (a function called once the cheap checks have
#: passed, so that a slow read never hides a typo), or ``None`` (``uniform`` only).
LabelSource = Sequence[int] | np.ndarray | torch.Tensor | Callable[[], Any] | None

#: A :class:`~gdaload.cache.SampleStore`, a folder for one, or ``None``.
StoreLike = str | os.PathLike | SampleStore | None


def check_not_empty(real: Any, owner: str) -> None:
    """Raise a ValueError when the real data ``real`` is known to be empty.

    The synthetic count (m_G/m_S times the real one) and the class policy both follow
    the real samples, so wrapping no real sample is a mistake upstream (a wrong path,
    split or filter); without this check it surfaces later as an unrelated error about
    label dtypes or class policies, or as an epoch with no batch.

    Args:
        real: A dataset, or a sequence of batches; one without ``len()`` passes.
        owner: The wrapper, for the message.

    Raises:
        ValueError: If ``len(real) == 0``.

    Example:
        >>> check_not_empty([(0, 1)], "GenerativeDataset")
        >>> check_not_empty([], "GenerativeDataset")
        Traceback (most recent call last):
        ...
        ValueError: GenerativeDataset got an empty real dataset (list of length 0)...
    """
    try:
        size = len(real)
    except TypeError:
        return  # an iterable dataset or loader: its length is not known up front
    if size == 0:
        raise ValueError(
            f"{owner} got an empty real dataset ({type(real).__name__} of length 0); "
            "the number of synthetic samples and their classes follow the real samples. "
            "Check that the dataset was built as intended (its path, split or filter) "
            "before wrapping it; for mostly synthetic data, wrap a small real set with a "
            "large ratio"
        )


def open_store(store: StoreLike, generator: Generator) -> SampleStore | None:
    """The store of ``generator``'s samples: opened from a folder, or checked to hold
    this generator's config.

    Raises:
        TypeError: If ``store`` is neither a folder, a :class:`SampleStore` nor ``None``.
        ValueError: If a given store holds samples of another generator config.
    """
    if isinstance(store, (str, os.PathLike)):
        return SampleStore.for_generator(store, generator)
    if store is not None and not isinstance(store, SampleStore):
        raise TypeError(f"store must be a folder path or a SampleStore, got {type(store).__name__}")
    if store is not None and store.config_hash != generator.config_hash():
        raise ValueError(
            f"the store holds samples of generator config {store.config_hash}, but this "
            f"generator's config is {generator.config_hash()}; open one with "
            "SampleStore.for_generator(folder, generator) or pass the folder"
        )
    return store


class SyntheticSpec:
    """The synthetic samples of a run: generator, ratio, seed plan, class policy, real
    class counts, store, and the current epoch.

    Arguments are checked in this order: generator kind, class policy, ratio, seed, real
    labels, store; the first bad one raises, naming the fix. The state (epoch and seed)
    is what :meth:`state_dict` saves; the rest comes from the constructor's arguments.

    Args:
        owner: The wrapper's name, for messages (``"GenerativeLoader"``).
        generator: A class-conditional :class:`~gdaload.Generator` (multi-view ones are
            refused: they need a source view).
        ratio: Synthetic samples per real sample, m_G/m_S (finite, >= 0).
        seed: Base seed of the :class:`~gdaload.SeedPlan`.
        class_policy: ``match``, ``uniform`` or ``balance``.
        labels: The real labels, or a function returning them (or ``None`` when they
            cannot be known, which only ``uniform`` accepts).
        store: A :class:`~gdaload.cache.SampleStore` or a folder for one.
        refresh: Fraction of synthetic positions given fresh samples each epoch; the
            others serve their previous epoch's sample again, read from ``store`` (which
            ``refresh < 1`` needs). Labels then stay fixed per position.
        mode: ``"add"`` or ``"replace"`` (see :attr:`per_row`).

    Raises:
        GeneratorKindError: If ``generator`` is not a class-conditional generator.
        ValueError: On an unknown mode or class policy, a bad ratio or seed, real labels the
            generator cannot produce, missing labels for a policy that needs them, a
            store of another generator config, or ``refresh`` outside [0, 1] or below 1
            without a store (a :class:`~gdaload.StoredSamples` generator is one).
        TypeError: If ``store`` is neither a folder nor a :class:`SampleStore`.

    Example:
        >>> spec = SyntheticSpec("GenerativeLoader", generator, ratio=0.5,
        ...                      labels=[0, 1, 1, 2])  # doctest: +SKIP
        >>> spec.synthetic_count(4), spec.state_dict()  # doctest: +SKIP
        (2, {'epoch': 0, 'seed': 0, 'feedback': [], 'hard_examples': []})
        >>> spec.synthetic_plan().seeds(spec.epoch, [0, 1])  # doctest: +SKIP
        [4317..., 1290...]
    """

    def __init__(
        self,
        owner: str,
        generator: Generator,
        ratio: float = 1.0,
        seed: int = 0,
        *,
        class_policy: str = "match",
        labels: LabelSource = None,
        store: StoreLike = None,
        refresh: float = 1.0,
        mode: str = "add",
    ) -> None:
        refuse_multiview(generator, owner)
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid ones are {list(MODES)}")
        self.mode = mode
        if class_policy not in CLASS_POLICIES:
            raise ValueError(
                f"unknown class_policy {class_policy!r}; valid ones are {list(CLASS_POLICIES)}"
            )
        self.generator = generator
        self.ratio = check_ratio(ratio)
        self.plan = SeedPlan(seed)
        self.class_policy = class_policy
        self.class_counts = self._class_counts(labels)
        self.store = open_store(store, generator)
        self.refresh = check_refresh(refresh)
        # A StoredSamples reads carried-over samples from its own store: nothing to keep.
        if self.refresh < 1.0 and self.store is None and not isinstance(generator, StoredSamples):
            raise ValueError(
                f"refresh={refresh!r} carries samples over from earlier epochs, which must "
                "be kept somewhere to save their generation: pass store='folder' (or a "
                "SampleStore). Without one every carried-over sample would be generated "
                "again, costing as much as refresh=1"
            )
        if self.refresh < 1.0 and class_policy == "feedback":
            raise ValueError(
                "class_policy='feedback' changes the class counts every epoch, but "
                f"refresh={refresh!r} keeps carried-over samples' labels for good; use "
                "refresh=1 with the feedback policy, or another class policy"
            )
        self.feedback: FeedbackHistory = ()
        self.hard: tuple[HardExamples, ...] = ()
        # Shared with the copies DataLoader workers hold, persistent ones included.
        self._epoch = SharedEpoch()

    def _class_counts(self, labels: LabelSource) -> np.ndarray | None:
        #: One label per real sample (``None``: unknown): the classes of hard examples.
        self.real_labels: np.ndarray | None = None
        given = not callable(labels)
        if callable(labels):
            labels = labels()
        if labels is None:
            if self.class_policy != "uniform":
                raise ValueError(
                    f"class_policy={self.class_policy!r} needs the real labels' frequencies; "
                    "pass labels=[...] or use class_policy='uniform'"
                )
            return None
        source = "the labels= given" if given else "the dataset's labels"
        real = as_int_labels(labels, source)
        self.real_labels = real
        return real_class_counts(real, self.generator.num_classes)

    @property
    def per_row(self) -> float:
        """Synthetic samples per row of the real data: ``ratio`` when they are added,
        ``ratio / (1 + ratio)`` when they replace real rows (then synthetic : real rows
        served is ``ratio``)."""
        return self.ratio if self.mode == "add" else self.ratio / (1.0 + self.ratio)

    def synthetic_count(self, real: int) -> int:
        """Synthetic samples that go with ``real`` rows of real data:
        ``round(per_row * real)``, halves rounded up."""
        return math.floor(self.per_row * real + 0.5)

    def synthetic_plan(self, rank: int = 0, world: int = 1) -> SyntheticPlan:
        """Label and seed of every synthetic position, for ``rank`` of ``world``."""
        counts = None if self.class_counts is None else tuple(int(c) for c in self.class_counts)
        return SyntheticPlan(
            self.plan.seed,
            self.class_policy,
            counts,
            self.per_row,
            self.generator.num_classes,
            rank,
            world,
            self.refresh,
            self.feedback,
            self.hard,
        )

    def add_feedback(self, values: object, epoch: int, kind: str = "recall") -> None:
        """Record per-class feedback for ``epoch`` (see :mod:`gdaload.data.feedback`).

        Raises:
            ValueError: If the class policy is not ``feedback``, on bad values, or if
                ``epoch`` already has feedback or comes before the last one given.
        """
        if self.class_policy != "feedback":
            raise ValueError(
                f"feedback() steers class_policy='feedback', but this wrapper has "
                f"class_policy={self.class_policy!r}; build it with class_policy='feedback'"
            )
        errors = check_feedback(values, self.generator.num_classes, kind)
        if self.feedback and epoch <= self.feedback[-1][0]:
            raise ValueError(
                f"epoch {epoch} is already planned: feedback was given for epoch "
                f"{self.feedback[-1][0]}. Hand feedback over once per epoch, after the "
                "epoch's training and before the next one starts"
            )
        self.feedback = (*self.feedback, (int(epoch), errors))

    def add_hard_examples(
        self, indices: Any, scores: Any, top: Any, share: Any, strength: Any, epoch: int
    ) -> None:
        """Record hard examples for ``epoch`` on (see :mod:`gdaload.data.hard`).

        Raises:
            ValueError: As :func:`gdaload.data.hard.hand_over`.
        """
        self.hard = hand_over(self, indices, scores, top, share, strength, epoch)

    # ------------------------------------------------------------------ epoch state
    def synthetic_class_counts(
        self, total: int, epoch: int | None = None, rank: int = 0, world: int = 1
    ) -> np.ndarray:
        """Per-class counts of the first ``total`` synthetic positions of ``epoch``
        (default: the current one) for ``rank`` of ``world``, read from the plan alone:
        nothing is generated and no loader is advanced.

        Raises:
            ValueError: If ``epoch`` is negative.
        """
        epoch = self.epoch if epoch is None else int(epoch)
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        labels = self.synthetic_plan(rank, world).labels(epoch, range(total)).numpy()
        return np.bincount(labels, minlength=self.generator.num_classes)

    @property
    def epoch(self) -> int:
        """The epoch whose synthetic samples are served (seen by DataLoader workers too,
        also persistent ones)."""
        return self._epoch.get()

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self._epoch.set(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Use the synthetic samples of ``epoch``.

        Raises:
            ValueError: If ``epoch`` is negative.
        """
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch": ..., "seed": ..., "feedback": ..., "hard_examples": ...}``: what a
        resumed run needs to continue (``feedback``: ``[[epoch, [error per class]], ...]``,
        empty unless the class policy is ``feedback``; ``hard_examples``: ``[[epoch,
        [indices], share, strength], ...]``)."""
        history = [[epoch, list(errors)] for epoch, errors in self.feedback]
        hard = [entry.as_state() for entry in self.hard]
        return {
            "epoch": self.epoch,
            "seed": self.plan.seed,
            "feedback": history,
            "hard_examples": hard,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (the seed plan, the epoch and the feedback;
        a state without feedback, as written before it existed, has none)."""
        self.plan = SeedPlan(state["seed"])
        self.set_epoch(state["epoch"])
        self.feedback = history_from_state(state.get("feedback", []), self.generator.num_classes)
        labels = self.real_labels
        num_real = 0 if labels is None else len(labels)
        self.hard = hard_from_state(state.get("hard_examples", []), labels, num_real)

    def __repr__(self) -> str:
        return (
            f"SyntheticSpec(ratio={self.ratio}, policy={self.class_policy}, "
            f"seed={self.plan.seed}, epoch={self.epoch}, generator={self.generator!r})"
        )


class SpecAttributes:
    """The spec's settings as read-only attributes of a wrapper that holds ``spec``, and
    its epoch as a settable one (checked like :meth:`SyntheticSpec.set_epoch`).

    Example:
        >>> class Wrapper(SpecAttributes):
        ...     def __init__(self, generator):
        ...         self.spec = SyntheticSpec("Wrapper", generator, class_policy="uniform")
        >>> wrapper = Wrapper(generator)  # doctest: +SKIP
        >>> wrapper.ratio, wrapper.epoch  # doctest: +SKIP
        (1.0, 0)
    """

    spec: SyntheticSpec

    @property
    def generator(self) -> Generator:
        return self.spec.generator

    @property
    def ratio(self) -> float:
        return self.spec.ratio

    @property
    def plan(self) -> SeedPlan:
        """The seed plan (replaced by ``load_state_dict``)."""
        return self.spec.plan

    @property
    def class_policy(self) -> str:
        return self.spec.class_policy

    @property
    def class_counts(self) -> np.ndarray | None:
        """Real samples per class (``None``: unknown, ``uniform`` policy)."""
        return self.spec.class_counts

    @property
    def store(self) -> SampleStore | None:
        return self.spec.store

    @property
    def refresh(self) -> float:
        """Fraction of synthetic samples made fresh each epoch."""
        return self.spec.refresh

    @property
    def mode(self) -> str:
        """``"add"`` (batches grow) or ``"replace"`` (synthetic rows take real rows' places)."""
        return self.spec.mode

    @property
    def epoch(self) -> int:
        """The epoch whose synthetic samples are served."""
        return self.spec.epoch

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self.spec.set_epoch(epoch)
