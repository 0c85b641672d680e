"""Selection of synthetic samples: stages that score candidates, a generator that keeps the best.

A :class:`SelectionStage` scores generated images (higher is better) and drops those that
fail its keep rule. :class:`SelectedGenerator` wraps any
:class:`~gdaload.generators.base.Generator`: for every requested ``(label, seed)`` it
over-generates candidates with seeds derived from ``seed``, runs the stages in order and
returns the best survivor. Every score is a
per-sample function of the candidate image and every candidate is a function of
``(label, seed)``, so the selected image stays a pure function of ``(label, seed)``, and
exactly one image comes back per request: the synthetic/real mixing ratio is unchanged by
filtering.
"""

from __future__ import annotations

import abc
import contextlib
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from ..fingerprint import module_fingerprint
from ..generators.base import (
    Generator,
    as_labels,
    as_seeds,
    check_generated,
    refuse_multiview,
)
from ..metrics.features import as_feature_matrix
from ..seeding import derive_seed

__all__ = [
    "EmptySelectionError",
    "FeatureStage",
    "SelectedGenerator",
    "SelectionStage",
    "describe",
]

StageT = TypeVar("StageT", bound="SelectionStage")

#: Images per forward pass when features of real data are computed from one big tensor.
FIT_BATCH = 256

ON_EMPTY = ("raise", "best")


class EmptySelectionError(ValueError):
    """Every candidate of a request failed the selection stages in every round."""


@contextlib.contextmanager
def eval_mode(module: object) -> Iterator[None]:
    """Put ``module`` in eval mode for the block and restore every submodule's flag after.

    Scores must not depend on which other candidates share the batch; batch-norm in
    training mode would make them do so. Restoring the flags keeps a scorer that is also
    being trained (e.g. the task model used as a discriminator) in its training state.
    """
    if not isinstance(module, nn.Module):
        yield
        return
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def batch_features(
    extractor: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    name: str = "feature extractor",
) -> torch.Tensor:
    """Run ``extractor`` on one batch in eval mode and return finite ``(N, D)`` float32
    features on the extractor's output device (``(N, D, ...)`` outputs are flattened).

    Raises:
        ValueError: If the output is not a tensor with one row per image and at least two
            dimensions, or holds NaN/Inf (the message names the first bad sample).
    """
    with torch.inference_mode(), eval_mode(extractor):
        out = extractor(images)
    if not isinstance(out, torch.Tensor) or out.dim() < 2 or out.shape[0] != images.shape[0]:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{name} returned {got} for {images.shape[0]} images; it must return a tensor of "
            "(N, D) or (N, D, ...) features, one row per image (wrap models that return tuples, "
            "add a batch dimension or remove a final squeeze)"
        )
    return as_feature_matrix(out.flatten(1), name, torch.float32)


def describe(obj: object) -> Any:
    """A JSON-serialisable identity of a model or callable, for stage configs.

    Modules with parameters or buffers are identified by class name and a digest of their
    weights, so a retrained scorer changes the config; other callables by their ``repr``
    with memory addresses removed.

    Example:
        >>> describe(None) is None
        True
    """
    if obj is None:
        return None
    if isinstance(obj, nn.Module) and len(obj.state_dict()):
        return {"type": type(obj).__qualname__, "weights": module_fingerprint(obj)}
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def _check_fraction(keep: float) -> float:
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise ValueError(
            f"keep must be a fraction in (0, 1], got {keep!r}; use top_k for a number of "
            "candidates and threshold for a minimum score"
        )
    return float(keep)


class SelectionStage(abc.ABC):
    """One step of a selection cascade: score candidates, then keep some of them.

    Subclasses implement :meth:`score` (higher is better); stages that need real data
    set ``requires_fit = True`` and implement :meth:`fit`. The keep rule is at most one of:

    * ``keep=f``: per request, keep the ``ceil(f * m)`` best of the ``m`` candidates that
      reach this stage (all ``n`` candidates for the first stage, the survivors of the
      previous stages otherwise). Never empties a request.
    * ``top_k=k``: per request, keep the ``min(k, m)`` best. Never empties a request.
    * ``threshold=t``: keep candidates with ``score >= t``. May empty a request; see
      :class:`SelectedGenerator` for the fallback.

    With no rule the stage only ranks: it keeps everything, and as the last stage its
    score picks the returned candidate. Ties are broken by candidate order, so a keep
    rule never depends on anything but the request's own candidates.

    Args:
        keep: Fraction in ``(0, 1]`` of candidates kept per request.
        top_k: Number of candidates kept per request.
        threshold: Minimum score to keep a candidate.

    Raises:
        ValueError: On more than one rule, a fraction outside ``(0, 1]``, ``top_k < 1`` or
            a non-finite threshold.

    Example:
        >>> class Brightness(SelectionStage):
        ...     def score(self, images, labels):
        ...         return images.mean(dim=(1, 2, 3))
        >>> stage = Brightness(top_k=1)
        >>> stage.keep_mask(torch.tensor([[0.2, 0.9, 0.5]]), torch.ones(1, 3, dtype=torch.bool))
        tensor([[False,  True, False]])
    """

    #: Whether :meth:`fit` must be called with real data before :meth:`score`.
    requires_fit: ClassVar[bool] = False

    def __init__(
        self,
        *,
        keep: float | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
    ) -> None:
        given = [
            n
            for n, v in (("keep", keep), ("top_k", top_k), ("threshold", threshold))
            if v is not None
        ]
        if len(given) > 1:
            raise ValueError(
                f"{type(self).__name__} takes at most one keep rule, got {given}; chain two "
                "stages to combine a threshold with a fraction"
            )
        if top_k is not None and (
            isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
        ):
            raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
        if threshold is not None and (isinstance(threshold, bool) or not math.isfinite(threshold)):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        self.keep = None if keep is None else _check_fraction(keep)
        self.top_k = top_k
        self.threshold = None if threshold is None else float(threshold)
        self.device = torch.device("cpu")

    @abc.abstractmethod
    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Score candidates; higher is better.

        Args:
            images: ``(N, C, H, W)`` float images in ``[0, 1]`` on :attr:`device`.
            labels: ``(N,)`` int64 intended classes, on the same device.

        Returns:
            ``(N,)`` finite float scores, each a function of its own image and label only.
        """

    def fit(self: StageT, real: Any, labels: Any = None) -> StageT:
        """Fit the stage on real data; stages without ``requires_fit`` ignore it."""
        return self

    @property
    def is_fitted(self) -> bool:
        """Whether the stage can score (always true for stages that need no real data)."""
        return True

    def _require_fitted(self) -> None:
        if self.requires_fit and not self.is_fitted:
            name = type(self).__name__
            raise ValueError(
                f"{name} needs real data: call {name}.fit(real_images, real_labels) before "
                "scoring or generating"
            )

    def to(self: StageT, device: torch.device | str) -> StageT:
        """Move the stage's models and fitted state to ``device``; returns ``self``."""
        self.device = torch.device(device)
        return self

    def keep_mask(self, scores: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """Apply the keep rule to one round of candidates.

        Args:
            scores: ``(P, n)`` scores, one row per request; entries where ``alive`` is
                false are ignored.
            alive: ``(P, n)`` bool, candidates that reached this stage.

        Returns:
            ``(P, n)`` bool, the candidates this stage keeps (a subset of ``alive``).
        """
        if self.threshold is not None:
            return alive & (scores >= self.threshold)
        if self.keep is None and self.top_k is None:
            return alive.clone()
        counts = alive.sum(dim=1)
        if self.keep is not None:
            # Rounding first keeps e.g. 0.3 * 10 from becoming 4 through float error.
            k = torch.tensor([math.ceil(round(self.keep * int(m), 9)) for m in counts])
        else:
            k = counts.clamp(max=self.top_k)
        ranked = scores.masked_fill(~alive, -math.inf)
        order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order).contiguous())
        return alive & (rank < k.unsqueeze(1))

    @property
    def config(self) -> dict[str, Any]:
        """Everything that changes which candidates the stage keeps, JSON-serialisable."""
        return {
            "stage": type(self).__name__,
            "keep": self.keep,
            "top_k": self.top_k,
            "threshold": self.threshold,
            **self._config(),
        }

    def _config(self) -> dict[str, Any]:
        return {}


def _as_fit_labels(labels: Any, n: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(labels).detach()
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.dtype.is_complex or t.dim() != 1:
        raise ValueError(
            f"{name}.fit labels must be a 1-D tensor of integer classes, got dtype {t.dtype} "
            f"and shape {tuple(t.shape)}"
        )
    if t.shape[0] != n:
        raise ValueError(
            f"{name}.fit got {n} real samples but {t.shape[0]} labels; pass one label per sample"
        )
    if t.numel() and int(t.min()) < 0:
        raise ValueError(
            f"{name}.fit labels must be non-negative class indices, got {int(t.min())}"
        )
    return t.to("cpu", torch.int64)


class FeatureStage(SelectionStage):
    """A stage that scores candidates in the feature space of a pluggable extractor.

    The extractor is any module or callable mapping ``(N, C, H, W)`` images to ``(N, D)``
    or ``(N, D, ...)`` features (flattened); it runs in eval mode under
    ``torch.inference_mode()``. :meth:`fit` accepts real data as

    * an ``(N, C, H, W)`` image tensor (run through the extractor in batches),
    * an ``(N, D)`` tensor of precomputed features,
    * an iterable of ``(images, labels)`` batches, such as a ``DataLoader``
      (``labels`` must then be ``None``).

    Args:
        feature_extractor: Module or callable producing features.
        keep: See :class:`SelectionStage`.
        top_k: See :class:`SelectionStage`.
        threshold: See :class:`SelectionStage`.
    """

    def __init__(
        self,
        feature_extractor: Callable[[torch.Tensor], torch.Tensor],
        *,
        keep: float | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(keep=keep, top_k=top_k, threshold=threshold)
        if not callable(feature_extractor):
            raise ValueError(
                f"feature_extractor must be a module or callable mapping images to features, "
                f"got {type(feature_extractor).__name__}"
            )
        self.feature_extractor = feature_extractor
        self.feature_dim: int | None = None

    def to(self: StageT, device: torch.device | str) -> StageT:
        super().to(device)
        if isinstance(self.feature_extractor, nn.Module):
            self.feature_extractor.to(self.device)
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` features of ``images``, checked against the fitted dimension."""
        feats = batch_features(
            self.feature_extractor, images, f"{type(self).__name__} feature extractor"
        )
        if self.feature_dim is not None and feats.shape[1] != self.feature_dim:
            raise ValueError(
                f"{type(self).__name__} was fit on {self.feature_dim}-D features but the "
                f"extractor returned {feats.shape[1]}-D ones; fit and score with the same "
                "extractor and image size"
            )
        return feats

    def real_features(
        self, real: Any, labels: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features (on :attr:`device`) and CPU labels of real data given to :meth:`fit`.

        Subclasses set :attr:`feature_dim` once their fit succeeds.
        """
        name = type(self).__name__
        if isinstance(real, torch.Tensor):
            if real.dim() in (2, 4) and real.shape[0] == 0:
                raise ValueError(f"{name}.fit got no real samples")
            if real.dim() == 2:
                feats = batch_features(nn.Identity(), real, f"{name}.fit features")
            elif real.dim() == 4:
                feats = torch.cat(
                    [
                        self._image_features(real[i : i + FIT_BATCH])
                        for i in range(0, len(real), FIT_BATCH)
                    ]
                )
            else:
                raise ValueError(
                    f"{name}.fit expects (N, C, H, W) images or (N, D) features, got shape "
                    f"{tuple(real.shape)}"
                )
            fit_labels = None if labels is None else _as_fit_labels(labels, feats.shape[0], name)
        elif isinstance(real, Iterable):
            if labels is not None:
                raise ValueError(
                    f"{name}.fit got an iterable of batches and separate labels; yield "
                    "(images, labels) batches instead"
                )
            parts, label_parts = [], []
            for batch in real:
                x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
                parts.append(self._image_features(torch.as_tensor(x)))
                if y is not None:
                    label_parts.append(_as_fit_labels(y, parts[-1].shape[0], name))
            if not parts:
                raise ValueError(f"{name}.fit got an empty iterable of real batches")
            feats = torch.cat(parts)
            if label_parts and len(label_parts) != len(parts):
                raise ValueError(f"{name}.fit: some real batches have labels and some do not")
            fit_labels = torch.cat(label_parts) if label_parts else None
        else:
            raise ValueError(
                f"{name}.fit expects a tensor of images or features, or an iterable of "
                f"(images, labels) batches, got {type(real).__name__}"
            )
        return feats.to(self.device), fit_labels

    def _image_features(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(
                f"{type(self).__name__}.fit expects (N, C, H, W) image batches, got shape "
                f"{tuple(images.shape)}"
            )
        return batch_features(
            self.feature_extractor,
            images.to(self.device),
            f"{type(self).__name__} feature extractor",
        )

    def _config(self) -> dict[str, Any]:
        return {"feature_extractor": describe(self.feature_extractor)}


def _fitted_classes_error(stage: SelectionStage, missing: Sequence[int], hint: str) -> ValueError:
    name = type(stage).__name__
    return ValueError(f"{name} has no real examples of classes {list(missing)[:10]}; {hint}")


class SelectedGenerator(Generator):
    """A generator that over-generates and returns, per request, the best surviving candidate.

    For a request ``(label, seed)``, round ``r`` (from 0) generates ``n`` candidates with
    seeds ``derive_seed(seed, n * r + c)`` for ``c`` in ``0..n-1``, all requests of a call
    batched together. The stages run in order; each scores the candidates still alive and
    drops those failing its keep rule. The returned image is the survivor with the highest
    score of the last stage (ties: lowest candidate index). Since scores are per-sample
    functions and rules act within one request's candidates, the result depends only on
    ``(label, seed)`` (up to floating-point differences of batched kernels), and exactly
    one image is returned per request.

    Fallback when every candidate of a request is rejected (only threshold rules can do
    that): another round is generated, up to ``max_rounds`` rounds. Then, with
    ``on_empty="raise"``, :class:`EmptySelectionError` is raised; with ``on_empty="best"``
    the best rejected candidate over all rounds is returned and counted as a fallback:
    the one that passed the most stages, then with the highest score at the stage that
    rejected it, then the earliest.

    :meth:`selection_report` gives per-class counts of candidates, kept candidates (those
    passing every stage) and the kept fraction. Counters are per process: each data-loader
    worker counts its own requests.

    Args:
        generator: The wrapped generator.
        stages: One stage or a sequence run in order. They are moved to the generator's
            device.
        candidates: Candidates ``n`` per request and round.
        max_rounds: Rounds tried before the fallback.
        on_empty: ``"raise"`` or ``"best"``, see above.
        chunk_size: Maximum images per call of the generator and per stage call (``None``:
            everything at once). Does not change the result.

    Raises:
        ValueError: On no stages, a non-stage, ``candidates < 1``, ``max_rounds < 1``,
            an unknown ``on_empty`` or ``chunk_size < 1``.

    Example:
        >>> class Noise(Generator):
        ...     num_classes, image_shape = 2, (1, 2, 2)
        ...     def generate(self, labels, seeds):
        ...         gens = [torch.Generator().manual_seed(s) for s in seeds]
        ...         return torch.stack([torch.rand(self.image_shape, generator=g) for g in gens])
        ...     @property
        ...     def config(self):
        ...         return {"kind": "noise"}
        >>> class Brightness(SelectionStage):
        ...     def score(self, images, labels):
        ...         return images.mean(dim=(1, 2, 3))
        >>> gen = SelectedGenerator(Noise(), [Brightness()], candidates=4)
        >>> gen.generate([0, 1], [7, 8]).shape
        torch.Size([2, 1, 2, 2])
        >>> gen.selection_report()["classes"][0]["candidates"]
        4
    """

    def __init__(
        self,
        generator: Generator,
        stages: SelectionStage | Sequence[SelectionStage],
        *,
        candidates: int = 4,
        max_rounds: int = 3,
        on_empty: str = "raise",
        chunk_size: int | None = None,
    ) -> None:
        refuse_multiview(generator, "SelectedGenerator")
        stages = [stages] if isinstance(stages, SelectionStage) else list(stages)
        if not stages:
            raise ValueError("SelectedGenerator needs at least one selection stage")
        bad = [type(s).__name__ for s in stages if not isinstance(s, SelectionStage)]
        if bad:
            raise ValueError(f"stages must be SelectionStage instances, got {bad}")
        for name, value in (("candidates", candidates), ("max_rounds", max_rounds)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if on_empty not in ON_EMPTY:
            raise ValueError(f"on_empty must be one of {ON_EMPTY}, got {on_empty!r}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be None or an integer >= 1, got {chunk_size!r}")
        self.generator = generator
        self.stages = [s.to(generator.device) for s in stages]
        self.candidates = candidates
        self.max_rounds = max_rounds
        self.on_empty = on_empty
        self.chunk_size = chunk_size
        self.num_classes = generator.num_classes
        self.image_shape = tuple(generator.image_shape)
        self.reset_stats()

    @property
    def device(self) -> torch.device:
        return self.generator.device

    @property
    def config(self) -> dict[str, Any]:
        return {
            "kind": "selected",
            "generator": self.generator.config,
            "stages": [s.config for s in self.stages],
            "candidates": self.candidates,
            "max_rounds": self.max_rounds,
            "on_empty": self.on_empty,
        }

    def reset_stats(self) -> None:
        """Zero the per-class selection counters."""
        self._stats: dict[int, dict[str, Any]] = defaultdict(self._empty_counts)

    def _empty_counts(self) -> dict[str, Any]:
        return {
            "requests": 0,
            "rounds": 0,
            "candidates": 0,
            "passed": [0] * len(self.stages),
            "kept": 0,
            "fallbacks": 0,
        }

    def selection_report(self) -> dict[str, Any]:
        """Per-class and total selection counts since construction or :meth:`reset_stats`.

        Returns:
            ``{"classes": {label: counts}, "total": counts}`` where ``counts`` has
            ``requests``, ``rounds`` (candidate rounds generated), ``candidates``,
            ``passed`` (candidates passing each stage, in order), ``kept`` (passing every
            stage), ``kept_fraction`` (``kept / candidates``) and ``fallbacks`` (requests
            answered with a rejected candidate, ``on_empty="best"``).
        """
        classes = {label: self._finish(dict(c)) for label, c in sorted(self._stats.items())}
        total = self._empty_counts()
        for c in classes.values():
            for key in ("requests", "rounds", "candidates", "kept", "fallbacks"):
                total[key] += c[key]
            total["passed"] = [a + b for a, b in zip(total["passed"], c["passed"], strict=True)]
        return {"classes": classes, "total": self._finish(total)}

    @staticmethod
    def _finish(counts: dict[str, Any]) -> dict[str, Any]:
        counts["passed"] = list(counts["passed"])
        counts["kept_fraction"] = (
            counts["kept"] / counts["candidates"] if counts["candidates"] else 0.0
        )
        return counts

    def generate(self, labels: torch.Tensor | Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
        labels = as_labels(labels, self.num_classes)
        seeds = as_seeds(seeds, len(labels))
        for label in labels.tolist():
            self._stats[label]["requests"] += 1
        chosen: list[torch.Tensor | None] = [None] * len(labels)
        # Best rejected candidate per request: ((stages passed, score there), image).
        fallback: dict[int, tuple[tuple[int, float], torch.Tensor]] = {}
        pending = list(range(len(labels)))
        n = self.candidates
        for rnd in range(self.max_rounds):
            if not pending:
                break
            req_labels = labels[pending]
            cand_labels = req_labels.repeat_interleave(n)
            cand_seeds = [derive_seed(seeds[i], n * rnd + c) for i in pending for c in range(n)]
            images = self._generate(cand_labels, cand_seeds)
            alive, last, depth, reject_score = self._run_stages(images, cand_labels)
            self._count(req_labels, alive, depth)

            survived = alive.any(dim=1)
            best = last.masked_fill(~alive, -math.inf).argmax(dim=1)
            still = []
            for row, req in enumerate(pending):
                if survived[row]:
                    chosen[req] = images[row * n + int(best[row])].clone()
                    continue
                still.append(req)
                # Rank rejected candidates by (stages passed, score at the rejecting stage).
                deepest = int(depth[row].max())
                cand = int(reject_score[row].masked_fill(depth[row] != deepest, -math.inf).argmax())
                key = (deepest, float(reject_score[row, cand]))
                if req not in fallback or key > fallback[req][0]:
                    fallback[req] = (key, images[row * n + cand].clone())
            pending = still

        if pending:
            if self.on_empty == "raise":
                raise EmptySelectionError(
                    f"selection kept none of the {n * self.max_rounds} candidates of "
                    f"{len(pending)} request(s) (labels {labels[pending].tolist()[:10]}, seeds "
                    f"{[seeds[i] for i in pending][:10]}) in {self.max_rounds} round(s); lower "
                    "the stages' thresholds, raise candidates or max_rounds, or pass "
                    "on_empty='best' to keep the best rejected candidate"
                )
            for req in pending:
                chosen[req] = fallback[req][1]
                self._stats[int(labels[req])]["fallbacks"] += 1

        if not chosen:
            return torch.empty((0, *self.image_shape), device=self.device)
        return torch.stack(chosen)  # type: ignore[arg-type]

    def _generate(self, labels: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        step = self.chunk_size or len(seeds)
        parts = []
        for i in range(0, len(seeds), step):
            out = self.generator.generate(labels[i : i + step], seeds[i : i + step])
            parts.append(
                check_generated(
                    out,
                    len(seeds[i : i + step]),
                    self.image_shape,
                    source=type(self.generator).__name__,
                )
            )
        return torch.cat(parts)

    def _run_stages(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the cascade on ``P * n`` candidates.

        Returns ``(P, n)`` tensors: alive after the last stage, the last stage's scores,
        the number of stages each candidate passed, and the score of the stage that
        rejected it.
        """
        n = self.candidates
        alive = torch.ones(len(labels), dtype=torch.bool).view(-1, n)
        depth = torch.full(alive.shape, len(self.stages), dtype=torch.int64)
        reject_score = torch.full(alive.shape, -math.inf, dtype=torch.float64)
        scores = reject_score
        for s, stage in enumerate(self.stages):
            idx = alive.flatten().nonzero().flatten()
            scores = torch.full((len(labels),), -math.inf, dtype=torch.float64)
            scores[idx] = self._score(stage, images, labels, idx)
            scores = scores.view(-1, n)
            kept = stage.keep_mask(scores, alive)
            dropped = alive & ~kept
            depth[dropped] = s
            reject_score[dropped] = scores[dropped]
            alive = kept
        return alive, scores, depth, reject_score

    def _score(
        self, stage: SelectionStage, images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor
    ) -> torch.Tensor:
        step = self.chunk_size or max(len(idx), 1)
        parts = []
        for i in range(0, len(idx), step):
            sel = idx[i : i + step]
            sub_images = images[sel.to(images.device)]
            with torch.inference_mode():
                out = stage.score(sub_images, labels[sel].to(sub_images.device))
            name = type(stage).__name__
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(sel),):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(
                    f"{name}.score must return one score per candidate, shape ({len(sel)},), "
                    f"got {shape}"
                )
            finite = torch.isfinite(out)
            if not bool(finite.all()):
                bad = sel[(~finite).cpu()].tolist()
                raise ValueError(
                    f"{name}.score returned NaN or Inf for candidates {bad[:10]} of this round "
                    f"(candidate i belongs to request i // {self.candidates}); check the stage's "
                    "model and inputs"
                )
            parts.append(out.detach().to("cpu", torch.float64))
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.float64)

    def _count(self, req_labels: torch.Tensor, alive: torch.Tensor, depth: torch.Tensor) -> None:
        for row, label in enumerate(req_labels.tolist()):
            c = self._stats[label]
            c["rounds"] += 1
            c["candidates"] += alive.shape[1]
            c["kept"] += int(alive[row].sum())
            for s in range(len(self.stages)):
                c["passed"][s] += int((depth[row] > s).sum())
