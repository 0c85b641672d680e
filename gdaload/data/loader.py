"""``GenerativeLoader``: put synthetic samples into the batches of an existing loader.

It wraps the iterable instead of subclassing ``DataLoader``, so it also wraps loaders
that ``accelerate.Accelerator.prepare`` returns (which are rebuilt from their constructor
arguments and would lose a subclass's additions). Generation runs in the main process
(in the loop's thread, or in a background thread with ``engine="thread"``), so CUDA
generators are safe with any number of DataLoader workers.
"""

from __future__ import annotations

import functools
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from gdaload.data.forwarding import LoaderAttributes
from gdaload.data.hard import HARD_SHARE, HARD_STRENGTH, DatasetImages
from gdaload.data.pairs import loader_pair_setup, mask_like, needs_pairs, split_masks, take_pairs
from gdaload.data.plan import SyntheticPlan
from gdaload.data.policies import check_ratio, dataset_labels
from gdaload.data.prefetch import Prefetcher
from gdaload.data.ranges import check_same_scale
from gdaload.data.resume import (
    STATE_VERSION,
    LoaderPosition,
    check_state,
    is_stateful,
    skip_batches,
)
from gdaload.data.spec import SpecAttributes, StoreLike, SyntheticSpec, check_not_empty
from gdaload.data.split import rank_split
from gdaload.engine.base import ENGINES, Engine, EngineStats, SourceImages
from gdaload.engine.pool import check_pool_settings
from gdaload.engine.sync import SyncEngine
from gdaload.engine.threaded import ThreadEngine
from gdaload.generators.base import Generator
from gdaload.generators.masks import PairGenerator
from gdaload.provenance import mark_synthetic_rows
from gdaload.seeding import Stream, derive_rng

__all__ = ["GenerativeLoader"]


Batch = tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _distributed_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _real_per_epoch(loader: Iterable[Any]) -> int | None:
    """Real samples one pass over ``loader`` yields, when that can be known up front."""
    if isinstance(loader, Sequence):
        # Batches that are not (inputs, labels) pairs are reported by the first batch's
        # unpacking, with the fix; here they only mean the count is unknown.
        try:
            return sum(len(batch[1]) for batch in loader)
        except (TypeError, IndexError, KeyError):
            return None
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is None:
        return None
    try:
        # accelerate's batch samplers may have no sampler: then the count is unknown.
        count = len(batch_sampler.sampler)
    except (AttributeError, TypeError):
        return None
    size = getattr(batch_sampler, "batch_size", None)
    if getattr(batch_sampler, "drop_last", False) and size:
        count = count // size * size
    return count


class GenerativeLoader(SpecAttributes, LoaderAttributes):
    """Yield the batches of ``loader`` with synthetic samples appended to each.

    Over an epoch that yields m_S real samples, exactly ``round(ratio * m_S)``
    synthetic samples are added, spread as evenly as the batches allow: after each batch
    the running synthetic count is ``round(ratio * real samples so far)``. With
    ``mode="replace"`` they take real rows' places instead, ``round(ratio / (1 + ratio)
    * rows so far)`` of them, so batches keep their size. Synthetic
    sample ``j`` of epoch ``e`` gets the seed ``SeedPlan(seed).sample_seed(e, j)`` and a
    label from the class policy, so two runs with the same seed see the same samples.
    Under ``torch.distributed`` the plan is global when the sampler tells how the epoch
    is split (a ``DistributedSampler``, or a loader prepared by accelerate): the epoch
    has ``round(ratio * N)`` synthetic samples for the ``N`` real samples across ranks,
    padding excluded, rank ``r`` serves the indices ``j`` with ``j % world == r``, each
    exactly once, spread over its non-padded rows (see :mod:`gdaload.data.split`).
    Otherwise each process plans from its own rows and ranks still take disjoint indices
    (``k * world + rank``).

    With ``engine="thread"`` a background thread generates the upcoming synthetic
    samples (in index order, on the generator's device) into a bounded pool while the
    training loop runs, so an epoch costs about the larger of training and generation
    time instead of their sum. With ``dry_policy="wait"`` the samples are those of the
    default synchronous engine whatever the timing (up to the rounding of batched
    kernels); ``"reuse"`` trades exactness for never stalling (see
    :class:`~gdaload.engine.ThreadEngine`). Use the loader as a context manager, or call
    :meth:`close`, to stop the thread. Generated samples are checked against the
    generator contract in the thread; ``synthetic_transform`` runs in the loop's thread.

    The epoch advances by one after each full pass; :meth:`set_epoch` sets it explicitly
    (and is forwarded to the wrapped loader, e.g. for a ``DistributedSampler``).

    ``len()`` and the attributes training loops read of a loader (``dataset``,
    ``batch_size``, ``sampler``, ``batch_sampler``, ``num_workers``, ``drop_last``) are
    those of the wrapped loader; reach anything else of it as ``.loader.<name>``. The
    synthetic settings (``generator``, ``ratio``, ``plan``, ``class_policy``,
    ``class_counts``, ``store``, ``epoch``) live in :attr:`spec`, a
    :class:`~gdaload.data.SyntheticSpec`, and read as attributes too.

    Args:
        loader: Any iterable of ``(inputs, labels)`` batches with integer labels of shape
            ``(B,)``: a ``DataLoader``, one from ``Accelerator.prepare``, a list...
            With a segmentation generator, batches ``(inputs, masks, labels)`` get
            synthetic (image, mask) rows and are yielded as ``(x, masks, y)`` (see
            :mod:`gdaload.data.pairs`; sync engine only).
        generator: Any :class:`~gdaload.Generator`; it generates on its own device
            (e.g. a second GPU, or the training GPU on a separate CUDA stream).
        ratio: Synthetic samples per real sample, m_G/m_S (finite, >= 0).
        seed: Base seed of the seed plan.
        class_policy: ``match``, ``uniform`` or ``balance``.
        labels: Labels of the real dataset, for the class policy; read from
            ``loader.dataset`` when omitted. ``uniform`` works without them.
        synthetic_transform: Applied to the generated batch ``(N, C, H, W)`` in [0, 1]
            before merging, e.g. the normalisation the real batches get.
        return_mask: Yield ``(inputs, labels, is_synthetic)`` with a boolean mask.
            Either way the yielded inputs and labels tensors are marked with the mask
            (:mod:`gdaload.provenance`), so ``genmix(x, y)`` on them mixes real with
            synthetic rows; tensors made from them (``x.to(device)``) are not marked.
        engine: ``"sync"`` (default: generate each batch's samples when it is asked for)
            or ``"thread"`` (generate ahead in a background thread).
        pool_size: Thread engine: most samples held ready ahead of the loop.
        generation_batch_size: Thread engine: samples per ``generate`` call (default
            ``min(32, pool_size)``).
        dry_policy: Thread engine, when the next sample is not ready: ``"wait"`` for it
            or ``"reuse"`` an already generated one of the same class.
        reuse_limit: Extra times one generated sample may be served under ``"reuse"``.
        warmup: Thread engine: samples to have ready before the first batch (``True``:
            fill the pool), with a progress bar.
        store: A :class:`~gdaload.cache.SampleStore` or a folder for one: generated
            samples are kept on disk and read back instead of generated again.
        refresh: Fraction of synthetic samples made fresh each epoch (default 1: all);
            the others are the previous epoch's samples again, read from ``store``
            (required below 1), so generation per epoch falls by ``1 - refresh``. Which
            positions are refreshed is part of the plan (see
            :mod:`gdaload.seeding.refresh`); labels then stay fixed per position.
        mode: ``"add"`` (default): synthetic samples are appended, so a batch of ``B``
            real rows grows to about ``(1 + ratio) * B``. ``"replace"``: they take the
            places of real rows, chosen at random per batch (keyed by seed, epoch and
            batch), so batches keep their size; an epoch then serves synthetic and real
            rows in the ratio ``ratio`` exactly as in ``add`` mode, and drops the replaced
            real rows for that epoch. With small batches and a large ratio a batch may be
            wholly synthetic; the per-epoch counts still hold.
        progress: Show progress bars (warm-up).
        prefetch: Merge this many next batches in a background thread while the loop
            runs its step (0: in the loop's thread). Batches keep their order and
            content; an error raised while merging one is raised in the loop when that
            batch is due; ``break`` or an error in the loop stops the thread.
            :meth:`state_dict` stays exact: each batch carries the position after it
            (and the wrapped loader's own state read right after fetching it), and the
            loop's batch sets them, so batches merged ahead are merged again on resume.
            :meth:`stats` counts batches when merged.
        source_images: Hard-example variations: reads real images by dataset index as
            ``(N, C, H, W)`` floats in [0, 1] of the generator's shape (default:
            ``loader.dataset[i][0]``, see :class:`gdaload.data.hard.DatasetImages`).

    Raises:
        ValueError: On a wrapped loader over an empty dataset, a bad ratio, seed, class
            policy, engine or pool setting, real labels the generator cannot produce, or
            a store of another generator config (checked at construction, before any
            sample is generated).
        GeneratorKindError: If ``generator`` is a multi-view generator.

    Example:
        >>> loader = DataLoader(real, batch_size=64, shuffle=True, num_workers=4)  # doctest: +SKIP
        >>> gen_loader = GenerativeLoader(loader, generator, ratio=0.5, engine="thread",
        ...                               store="runs/samples", return_mask=True)  # doctest: +SKIP
        >>> with gen_loader:  # doctest: +SKIP
        ...     for x, y, synthetic in gen_loader:
        ...         loss = criterion(model(x), y)
        >>> gen_loader.stats()["wait_seconds"]  # doctest: +SKIP
        0.8
    """

    def __init__(
        self,
        loader: Iterable[Any],
        generator: Generator,
        ratio: float = 1.0,
        seed: int = 0,
        *,
        class_policy: str = "match",
        labels: Sequence[int] | None = None,
        synthetic_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        return_mask: bool = False,
        engine: str | None = None,
        pool_size: int = 128,
        generation_batch_size: int | None = None,
        dry_policy: str = "wait",
        reuse_limit: int = 1,
        warmup: int | bool = 0,
        store: StoreLike = None,
        refresh: float = 1.0,
        mode: str = "add",
        progress: bool = True,
        prefetch: int = 0,
        source_images: SourceImages | None = None,
    ) -> None:
        # A DataLoader's dataset, or a sequence of batches itself.
        check_not_empty(getattr(loader, "dataset", loader), "GenerativeLoader")
        self.loader = loader
        self._configure_engine(
            engine, pool_size, generation_batch_size, dry_policy, reuse_limit, warmup
        )
        # Segmentation (see gdaload.data.pairs): batches (x, masks, y) get synthetic pairs.
        self._pairs: PairGenerator | None = None
        pair_labels = None
        if needs_pairs(generator):
            self._pairs, pair_labels = loader_pair_setup(
                loader, generator, labels, self.engine, "GenerativeLoader"
            )
        self.spec = SyntheticSpec(
            "GenerativeLoader",
            self._pairs or generator,
            ratio,
            seed,
            class_policy=class_policy,
            labels=pair_labels
            if self._pairs is not None
            else labels
            if labels is not None
            else lambda: self._loader_labels(class_policy),
            store=store,
            refresh=refresh,
            mode=mode,
        )
        self.synthetic_transform = synthetic_transform
        self.source_images = source_images
        self._scale_checked = False  # on the first batch holding synthetic samples
        self.return_mask = return_mask
        self.progress = progress
        self._stats = {"real": 0, "synthetic": 0, "batches": 0, "replaced": 0, "carried_over": 0}
        self._iteration_seconds = 0.0
        self._engine_stats = EngineStats()
        self._engine: Engine | None = None
        self._finalizer: weakref.finalize | None = None
        self._real_seen_last: int | None = None
        self._warmed = False
        # Mid-epoch resume: the position being served, and one restored but not yet used.
        self._position: LoaderPosition | None = None
        self._resume: LoaderPosition | None = None
        self._resume_loader_restored = False
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(
                f"prefetch must be a whole number of batches >= 0 (0: merge in the loop's "
                f"thread), got {prefetch!r}"
            )
        self.prefetch = prefetch
        # The wrapped loader's state as of the batch the loop holds (prefetch runs ahead).
        self._held_loader_state: Any = None
        self._mask_store = (
            self.store.masks_for() if self._pairs is not None and self.store is not None else None
        )

    def _configure_engine(
        self,
        engine: str | None,
        pool_size: int,
        batch_size: int | None,
        dry_policy: str,
        reuse_limit: int,
        warmup: int | bool,
    ) -> None:
        self.engine = "sync" if engine is None else engine
        if self.engine not in ENGINES:
            raise ValueError(
                f"unknown engine {engine!r}; valid ones are {list(ENGINES)} (None means 'sync')"
            )
        if batch_size is None:
            batch_size = min(32, pool_size) if isinstance(pool_size, int) and pool_size > 0 else 1
        check_pool_settings(pool_size, batch_size, dry_policy, reuse_limit)
        self.generation_batch_size = batch_size
        self.pool_size, self.dry_policy, self.reuse_limit = pool_size, dry_policy, reuse_limit
        self.warmup = pool_size if warmup is True else int(warmup)
        if self.warmup < 0:
            raise ValueError(
                f"warmup must be >= 0 samples (or True to fill the pool), got {warmup!r}"
            )
        if self.engine == "sync" and (dry_policy != "wait" or self.warmup):
            raise ValueError(
                "dry_policy='reuse' and warmup= need a pool of samples generated "
                "ahead; pass engine='thread'"
            )

    def _loader_labels(self, class_policy: str) -> np.ndarray | None:
        """Labels of ``loader.dataset``; ``None`` when unreadable and not needed."""
        dataset = getattr(self.loader, "dataset", None)
        if dataset is not None:
            try:
                return dataset_labels(dataset)
            except ValueError:
                pass
        if class_policy != "uniform":
            raise ValueError(
                f"class_policy={class_policy!r} needs the real labels' frequencies but "
                f"they cannot be read from {type(self.loader).__name__}; pass labels=[...] "
                "or use class_policy='uniform'"
            )
        return None

    # ------------------------------------------------------------------ loop hooks
    def set_epoch(self, epoch: int) -> None:
        """Use the synthetic samples of ``epoch``; forwarded to the wrapped loader.

        A position restored by :meth:`load_state_dict` is kept when ``epoch`` is its
        epoch (the usual loop calls ``set_epoch`` before iterating) and dropped otherwise.
        """
        self.spec.set_epoch(epoch)
        self._position = None
        if self._resume is not None and self._resume.epoch != self.epoch:
            self._resume = None
        for target in (self.loader, getattr(self.loader, "sampler", None)):
            forward = getattr(target, "set_epoch", None)
            if forward is not None:
                forward(epoch)
                break

    def feedback(self, per_class: Any, kind: str = "recall") -> None:
        """Hand over per-class validation results for the next epoch
        (``class_policy="feedback"``; the rule is in :mod:`gdaload.data.feedback`).

        Call it after an epoch's training, before the next epoch is iterated. Under
        ``torch.distributed`` every rank must hand over the same values (all-reduce them
        first). With the thread engine, samples generated ahead for the next epoch under
        the earlier plan are dropped and generated again, so the served samples equal
        those of the sync engine.

        Args:
            per_class: One value per class, e.g. validation recall.
            kind: ``"recall"`` (higher is better) or ``"error"`` (higher is worse).

        Raises:
            ValueError: If the class policy is not ``feedback``, on values of the wrong
                length, not finite or outside [0, 1], or if the epoch they are for has
                started or already has feedback.

        Example:
            >>> loader.feedback([0.9, 0.4, 1.0])  # doctest: +SKIP
        """
        self._refuse_mid_epoch("Hand feedback over")
        self.spec.add_feedback(per_class, self.epoch, kind)

    def hard_examples(
        self,
        indices: Any = None,
        *,
        scores: Any = None,
        top: int | None = None,
        share: float = HARD_SHARE,
        strength: float = HARD_STRENGTH,
    ) -> None:
        """Hand over the real samples the model fails on: from the next epoch on, part
        of each class's synthetic positions are variations of them (SDEdit from the
        source image, same label; the rule is in :mod:`gdaload.data.hard`).

        Call it after an epoch's training, before the next epoch is iterated; the
        hand-over holds until the next one. Ratio and class counts stay those of the
        class policy. Under ``torch.distributed`` every rank must hand over the same
        indices (gather them first). With the thread engine, samples generated ahead for
        the next epoch under the earlier plan are dropped and generated again, so the
        served samples equal those of the sync engine.

        Args:
            indices: Indices into the real dataset (e.g. the misclassified ones).
            scores: Instead of ``indices``: one difficulty per real sample (higher is
                harder, e.g. ``1 -`` the confidence in the true class), with ``top``.
            top: With ``scores``: how many of the hardest to vary.
            share: Share of a class's synthetic positions given to variations, (0, 1].
            strength: SDEdit strength, (0, 1]: how far a variation may move.

        Raises:
            ValueError: On indices that are not integers, out of range or repeated,
                scores of the wrong length or not finite, a bad ``top``, ``share`` or
                ``strength``, a generator that cannot vary images, or if the epoch they
                are for has started or already has hard examples.

        Example:
            >>> loader.hard_examples(torch.nonzero(preds != labels).flatten())  # doctest: +SKIP
        """
        self._refuse_mid_epoch("Hand hard examples over")
        self.spec.add_hard_examples(indices, scores, top, share, strength, self.epoch)

    def _source_images(self) -> SourceImages:
        # Lazy: the default reader reads nothing until a variation is planned.
        if self.source_images is not None:
            return self.source_images
        return DatasetImages(getattr(self.loader, "dataset", self.loader))

    def set_ratio(self, ratio: float) -> None:
        """Change m_G/m_S from the next epoch on, e.g. to what
        :class:`~gdaload.data.adaptive.AdaptiveRatio` picked from validation feedback.

        The plan of an epoch is built from the ratio when the epoch starts. With the
        thread engine, samples generated ahead under the old ratio are dropped; at
        ratio 0 the generation thread stops until the ratio rises again. A resumed run
        sets the ratio of its epoch before :meth:`load_state_dict`.

        Raises:
            ValueError: On a ratio that is not finite, negative or too large, or while an
                epoch is being iterated.

        Example:
            >>> loader.set_ratio(control.update(val_accuracy))  # doctest: +SKIP
        """
        value = check_ratio(ratio)
        self._refuse_mid_epoch("Change the ratio")
        self.spec.ratio = value
        if value == 0:
            self.close()

    def _refuse_mid_epoch(self, action: str) -> None:
        started = self._position if self._position and self._position.started else self._resume
        if started is not None:
            raise ValueError(
                f"epoch {started.epoch} has started ({started.batches} batches served): its "
                f"plan is fixed. {action} after the epoch's last batch"
            )

    def state_dict(self) -> dict[str, Any]:
        """Where the loop is, for resuming it exactly (see :meth:`load_state_dict`).

        Called between batches (e.g. beside a model checkpoint), the state holds the
        position in the current epoch (batches, real samples and synthetic positions
        served) and, when the wrapped loader keeps its own state (torchdata's
        ``StatefulDataLoader``), that state under ``"loader"``. After a full epoch it is
        the start of the next one. It is this process's position: under
        ``torch.distributed`` save one state per rank. JSON-serialisable when the wrapped
        loader's state is.

        Example:
            >>> loader.state_dict()  # doctest: +SKIP
            {'version': 4, 'kind': 'GenerativeLoader', 'epoch': 3, 'seed': 0, 'feedback': [],
             'hard_examples': [],
             'ratio': 0.5, 'class_policy': 'match', 'mode': 'add', 'rank': 0, 'world': 1,
             'position': {'batches': 12, 'real': 768, 'synthetic': 384}}
        """
        position = self._position or self._resume or LoaderPosition(self.epoch)
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "kind": "GenerativeLoader",
            **self.spec.state_dict(),
            **self._plan_settings(),
            "epoch": position.epoch,
            "position": position.as_dict(),
        }
        if self._held_loader_state is not None:
            state["loader"] = self._held_loader_state
        elif is_stateful(self.loader):
            state["loader"] = self.loader.state_dict()  # type: ignore[attr-defined]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next iteration serves exactly the rest
        of the saved epoch, then the following epochs as the saved run would have.

        Synthetic positions always continue exactly. The real batches continue from the
        wrapped loader's own state when it has one (``StatefulDataLoader``: its state is
        loaded here). A loader without state is iterated from its start with the batches
        already consumed skipped (at the sampler for a ``DataLoader``, so they are not
        loaded); the rest is the saved run's only if the loader repeats its order
        (``shuffle=False``, or a sampler seeded per epoch such as ``DistributedSampler``
        with ``set_epoch``). The wrapped loader is not told the epoch: call
        :meth:`set_epoch` as the loop does.

        Raises:
            TypeError: If ``state`` is not a dict.
            ValueError: On a state of an unknown version or of another wrapper, or one
                saved mid-epoch under another ratio, class policy, mode, rank or world
                size (an epoch boundary may change them).
        """
        state = check_state(state, "GenerativeLoader", self._plan_settings())
        self.spec.load_state_dict(state)
        position = LoaderPosition.from_dict(
            state.get("position", LoaderPosition(0).as_dict()), self.epoch
        )
        self._position = None
        self._resume = position if position.started else None
        self._resume_loader_restored = False
        if "loader" in state and is_stateful(self.loader):
            self.loader.load_state_dict(state["loader"])  # type: ignore[attr-defined]
            self._resume_loader_restored = True
        elif "loader" in state and position.started:
            warnings.warn(
                "the state holds the wrapped loader's own state but the wrapped "
                f"{type(self.loader).__name__} cannot load one; its first "
                f"{position.batches} batches are skipped instead, which repeats the saved "
                "run only if it repeats its order",
                stacklevel=2,
            )

    def _plan_settings(self) -> dict[str, Any]:
        """What a mid-epoch position depends on besides the seed and the epoch."""
        rank, world = self._rank_world()
        return {
            "ratio": self.ratio,
            "class_policy": self.class_policy,
            "mode": self.mode,
            "rank": rank,
            "world": world,
        }

    def stats(self) -> dict[str, float]:
        """Counters since construction.

        ``real``, ``synthetic`` (= ``served``) and ``batches`` served; ``generated``
        images and ``generation_seconds`` spent generating; ``reused`` samples;
        ``dropped`` generated samples never served; ``cache_hits`` / ``cache_misses`` of
        the store; ``wait_seconds`` the training loop waited for synthetic samples;
        ``warmup_seconds``; ``pool_fill`` samples ready now out of ``pool_size``.

        What generation costs: ``generation_seconds_per_sample`` (generation seconds per
        synthetic sample served: falls with a warm store, ``refresh < 1`` and reuse),
        ``carried_over`` samples served again from an earlier epoch (``refresh < 1``),
        ``replaced`` real rows (``mode="replace"``), ``iteration_seconds`` of wall time
        spent iterating (the training loop's own work included) and ``wait_share``, the
        part of it the loop spent waiting for synthetic samples.
        """
        out: dict[str, float] = {**self._stats, **self._engine_stats.as_dict()}
        out["pool_fill"] = self._engine.pool_fill() if self._engine is not None else 0
        out["pool_size"] = self.pool_size if self.engine == "thread" else 0
        served = self._stats["synthetic"]
        out["generation_seconds_per_sample"] = out["generation_seconds"] / served if served else 0.0
        out["iteration_seconds"] = self._iteration_seconds
        out["wait_share"] = (
            out["wait_seconds"] / self._iteration_seconds if self._iteration_seconds else 0.0
        )
        return out

    # ------------------------------------------------------------------ lifecycle
    def _start_engine(self) -> Engine:
        if self._engine is None:
            if self.engine == "thread":
                self._engine = ThreadEngine(
                    self.generator,
                    store=self.store,
                    stats=self._engine_stats,
                    pool_size=self.pool_size,
                    generation_batch_size=self.generation_batch_size,
                    dry_policy=self.dry_policy,
                    reuse_limit=self.reuse_limit,
                    source_images=self._source_images(),
                )
                # Stops the thread if the loader is dropped without close().
                self._finalizer = weakref.finalize(self, self._engine.close)
            else:
                self._engine = SyncEngine(
                    self.generator,
                    store=self.store,
                    stats=self._engine_stats,
                    source_images=self._source_images(),
                )
        return self._engine

    def close(self) -> None:
        """Stop background generation (if any); iterating again restarts it."""
        if self._finalizer is not None:
            self._finalizer()
        elif self._engine is not None:
            self._engine.close()
        self._engine, self._finalizer = None, None

    def __enter__(self) -> GenerativeLoader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_engine"] = state["_finalizer"] = None
        return state

    # ------------------------------------------------------------------ iteration
    def _rank_world(self) -> tuple[int, int]:
        split = rank_split(self.loader)
        return (split.rank, split.world) if split is not None else _distributed_rank_world()

    def _source(self) -> SyntheticPlan:
        return self.spec.synthetic_plan(*self._rank_world())

    def _schedule(self) -> Callable[[int], int]:
        """Synthetic samples served after a given number of the epoch's real rows.

        When the sampler tells how the epoch is split across ranks (padding excluded),
        the plan is global: ``round(ratio * N)`` over the ranks' ``N`` real samples,
        index ``j`` on rank ``j % world``, each rank's share spread over its own rows.
        Otherwise every process plans from its own rows (one process: the same thing).
        """
        split = rank_split(self.loader)
        if split is None:
            return self.spec.synthetic_count
        share = split.synthetic_share(self.spec.synthetic_count(split.total))
        return functools.partial(split.served, share)

    def _expected_synthetic(self) -> int | None:
        split = rank_split(self.loader)
        if split is not None:
            return split.synthetic_share(self.spec.synthetic_count(split.total))
        real = self._real_seen_last
        if real is None:
            real = _real_per_epoch(self.loader)
        return None if real is None else self.spec.synthetic_count(real)

    def synthetic_class_counts(self, epoch: int | None = None) -> np.ndarray:
        """Synthetic samples per class that ``epoch`` (default: the next one iterated)
        serves on this process, from the plan: nothing is generated and neither this
        loader nor the wrapped one advances.

        Raises:
            ValueError: If the real samples per epoch cannot be known before iterating
                (a wrapped iterable without ``len()``); iterate one epoch first.

        Example:
            >>> loader.synthetic_class_counts()  # doctest: +SKIP
            array([8, 6, 6])
        """
        total = self._expected_synthetic()
        if total is None:
            raise ValueError(
                f"the real samples per epoch of the wrapped {type(self.loader).__name__} "
                "cannot be known before iterating it (no sampler or len()); iterate one "
                "epoch first, after which the count of that epoch is used"
            )
        return self.spec.synthetic_class_counts(total, epoch, *self._rank_world())

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.epoch
        start = self._resume if self._resume is not None else LoaderPosition(epoch)
        batches = self._real_batches(start)
        self._resume = None
        engine = self._start_engine() if self.ratio > 0 else None
        source = self._source()
        if engine is not None:
            total = self._expected_synthetic()
            engine.begin_epoch(source, epoch, total, total, start=start.synthetic)
        self._position = start
        real_seen = start.real
        began = time.perf_counter()
        ahead: Prefetcher[tuple[Batch, LoaderPosition, Any]] | None = None
        try:
            if engine is not None and self.warmup and not self._warmed:
                engine.warm_up(self.warmup, progress=self.progress)
                self._warmed = True
            merged_batches = self._merged(batches, start, source, engine)
            if self.prefetch:
                ahead = Prefetcher(merged_batches, self.prefetch)
            for merged, position, loader_state in ahead or merged_batches:
                # Before the yield: a state_dict() taken while the loop holds this batch
                # counts it as consumed, however far the prefetch thread has run ahead.
                self._position, self._held_loader_state = position, loader_state
                real_seen = position.real
                yield merged
        except BaseException:
            # An error, Ctrl-C or a loop left early: stop the generation thread now. The
            # position stays readable by state_dict() until the next iteration.
            if ahead is not None:
                ahead.close()
            self.close()
            raise
        finally:
            self._iteration_seconds += time.perf_counter() - began
        self._position, self._held_loader_state = None, None
        self._real_seen_last = real_seen
        self.spec.epoch = epoch + 1

    def _merged(
        self,
        batches: Iterator[Any],
        start: LoaderPosition,
        source: SyntheticPlan,
        engine: Engine | None,
    ) -> Iterator[tuple[Batch, LoaderPosition, Any]]:
        """The epoch's merged batches from ``start``, each with the position after it and,
        under ``prefetch``, the wrapped loader's state read right after its batch."""
        epoch = start.epoch
        real_seen, synthetic_made, served = start.real, start.synthetic, start.batches
        schedule = self._schedule()
        keep_state = self.prefetch > 0 and is_stateful(self.loader)
        for batch in batches:
            loader_state = self.loader.state_dict() if keep_state else None  # type: ignore[attr-defined]
            xy, masks = split_masks(batch, self._pairs is not None, "GenerativeLoader")
            x, y = self._unpack(xy)
            real_seen += len(y)
            n = schedule(real_seen) - synthetic_made
            positions = range(synthetic_made, synthetic_made + n)
            synthetic_made += n
            if self.refresh < 1.0 and n:
                carried = source.source_epochs(epoch, positions) < epoch
                self._stats["carried_over"] += int(carried.sum())
            served += 1
            merged = self._merge(x, y, epoch, served - 1, positions, engine, masks)
            yield merged, LoaderPosition(epoch, served, real_seen, synthetic_made), loader_state

    def _real_batches(self, start: LoaderPosition) -> Iterator[Any]:
        """The wrapped loader's batches from ``start`` on (restored, or skipped to)."""
        if not start.started or self._resume_loader_restored:
            self._resume_loader_restored = False
            return iter(self.loader)
        pairs = self._pairs is not None
        return skip_batches(
            self.loader,
            start,
            lambda batch: len(self._unpack(split_masks(batch, pairs, "GenerativeLoader")[0])[1]),
        )

    @staticmethod
    def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            length = f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
            raise TypeError(
                "GenerativeLoader expects batches of (inputs, labels); got "
                f"{type(batch).__name__}{length}. "
                "Adapt the loader (e.g. a collate_fn returning (x, y)) before wrapping it"
            )
        x, y = batch
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError(
                "GenerativeLoader expects tensor inputs and labels; use a collate_fn "
                "that stacks samples into tensors"
            )
        if y.dim() != 1 or y.dtype.is_floating_point:
            raise ValueError(
                f"GenerativeLoader expects integer class labels of shape (B,), got {y.dtype} of "
                f"shape {tuple(y.shape)}; apply soft-label transforms (mixup, GenMix) after it"
            )
        return x, y

    def _merge(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        epoch: int,
        batch: int,
        positions: range,
        engine: Engine | None,
        masks: Any = None,
    ) -> Any:
        if self.mode == "replace" and len(positions):
            x, y, masks = self._drop_rows(x, y, epoch, batch, len(positions), masks)
        real = len(y)
        mask = torch.zeros(real + len(positions), dtype=torch.bool, device=y.device)
        if len(positions):
            assert engine is not None
            if self._pairs is not None:
                stores = (self.store, self._mask_store)
                images, made_masks, labels = take_pairs(
                    self._pairs, stores, self._source(), epoch, positions, self._engine_stats
                )
                like = masks
                masks = torch.cat([masks, made_masks.to(device=masks.device, dtype=masks.dtype)])
                masks = mask_like(masks, like)
            else:
                served = engine.take(epoch, positions)
                images, labels = served.images, served.labels
            if self.synthetic_transform is not None:
                images = self.synthetic_transform(images)
            if tuple(images.shape[1:]) != tuple(x.shape[1:]):
                raise ValueError(
                    f"synthetic batch has shape {tuple(images.shape[1:])} per sample but real "
                    f"inputs have {tuple(x.shape[1:])}; pass synthetic_transform= (e.g. "
                    "v2.Resize, v2.Grayscale, v2.Normalize) so they match"
                )
            if not self._scale_checked and real:
                check_same_scale(x, images, "GenerativeLoader")
                self._scale_checked = True
            # Served batches are fresh (pinned, when CUDA is there) tensors: the copy may
            # run asynchronously.
            x = torch.cat([x, images.to(device=x.device, dtype=x.dtype, non_blocking=True)])
            y = torch.cat([y, labels.to(device=y.device, dtype=y.dtype)])
            mask[-len(positions) :] = True
        self._stats["real"] += real  # counted on the host: no device sync per batch
        self._stats["synthetic"] += len(positions)
        self._stats["batches"] += 1
        # Also without return_mask: GenMix called as genmix(x, y) reads the mark, so
        # it mixes these rows as what they are instead of taking all of them for real.
        mark_synthetic_rows(x, mask)
        mark_synthetic_rows(y, mask)
        fields = (x, y) if masks is None else (x, masks, y)
        return (*fields, mask) if self.return_mask else fields

    def _drop_rows(
        self, x: torch.Tensor, y: torch.Tensor, epoch: int, batch: int, n: int, masks: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """``x`` and ``y`` without ``n`` real rows drawn at random, keyed by (seed, epoch,
        batch) so that a resumed run drops the same ones."""
        rng = derive_rng(self.plan.seed, Stream.REPLACE_ROWS, epoch, batch)
        drop = rng.choice(len(y), size=n, replace=False)
        keep = np.setdiff1d(np.arange(len(y)), drop)  # sorted: real rows keep their order
        self._stats["replaced"] += n
        index = torch.from_numpy(keep).to(y.device)
        kept = None if masks is None else mask_like(masks[index.to(masks.device)], masks)
        return x.index_select(0, index.to(x.device)), y.index_select(0, index), kept

    def __repr__(self) -> str:
        return (
            f"GenerativeLoader(ratio={self.ratio}, policy={self.class_policy}, "
            f"epoch={self.epoch}, engine={self.engine}, generator={self.generator!r})"
        )
