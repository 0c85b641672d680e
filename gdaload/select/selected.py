"""SelectedGenerator: over-generate candidates, run selection stages, keep the best.

:class:`SelectedGenerator` wraps any :class:`~gdaload.generators.base.Generator`: for
every requested ``(label, seed)`` it over-generates candidates with seeds derived from
``seed``, runs the :class:`~gdaload.select.stage.SelectionStage` cascade in order and
returns the best survivor. Every score is a per-sample function of the candidate image
and every candidate is a function of ``(label, seed)``, so the selected image stays a
pure function of ``(label, seed)``, and exactly one image comes back per request: the
synthetic/real mixing ratio is unchanged by filtering.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

import torch

from gdaload.generators.base import (
    Generator,
    as_labels,
    as_seeds,
    check_generated,
    refuse_multiview,
)
from gdaload.seeding import derive_seed
from gdaload.select.stage import SelectionStage

__all__ = ["EmptySelectionError", "SelectedGenerator"]

ON_EMPTY = ("raise", "best")


class EmptySelectionError(ValueError):
    """Every candidate of a request failed the selection stages in every round.

    A ``ValueError``, raised by :meth:`SelectedGenerator.generate` with
    ``on_empty="raise"``; the message names the requests and how to loosen the stages.

    Example:
        >>> issubclass(EmptySelectionError, ValueError)
        True
    """


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
        # tuple() only normalises a list-valued shape; a Generator's shape is (C, H, W).
        self.image_shape = cast("tuple[int, int, int]", tuple(generator.image_shape))
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
        # Every request is answered by now: kept, or a fallback (else the raise above).
        return torch.stack(cast("list[torch.Tensor]", chosen))

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
                    device=self.generator.device,
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
