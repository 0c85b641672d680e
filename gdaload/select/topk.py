"""Top-k selection by a discriminator: keep the candidates a scoring model likes best."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gdaload.select.stage import SelectionStage, describe, eval_mode

__all__ = ["TopK"]


class TopK(SelectionStage):
    """Keep the best candidates of a request according to a scoring model.

    The scorer is any module or callable on ``(N, C, H, W)`` images:

    * returning ``(N, K)`` logits (a classifier): the score is the softmax probability of
      the intended class, i.e. the classifier's confidence that the candidate shows what
      it was generated for. Class indices of the classifier must match the generator's.
    * returning ``(N,)`` or ``(N, 1)`` (a discriminator): the output is the score.

    It runs in eval mode (flags restored afterwards) under ``torch.inference_mode()``.

    Args:
        scorer: Classifier or discriminator.
        k: Candidates kept per request. Defaults to 1 when no other rule is given.
        keep: Fraction of candidates kept per request instead of ``k``.
        threshold: Minimum score (e.g. a confidence of 0.5) instead of ``k``.
        preprocess: Callable applied to the ``[0, 1]`` images before the scorer, e.g. a
            ``torchvision.transforms.Normalize`` with the classifier's statistics.

    Raises:
        ValueError: On a non-callable scorer or an invalid rule (see
            :class:`~gdaload.select.stage.SelectionStage`).

    Example:
        >>> classifier = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> stage = TopK(classifier, k=2)
        >>> stage.score(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])).shape
        torch.Size([4])
    """

    def __init__(
        self,
        scorer: Callable[[torch.Tensor], torch.Tensor],
        *,
        k: int | None = None,
        keep: float | None = None,
        threshold: float | None = None,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if k is None and keep is None and threshold is None:
            k = 1
        super().__init__(keep=keep, top_k=k, threshold=threshold)
        if not callable(scorer):
            raise ValueError(f"scorer must be a module or callable, got {type(scorer).__name__}")
        if preprocess is not None and not callable(preprocess):
            raise ValueError(f"preprocess must be callable, got {type(preprocess).__name__}")
        self.scorer = scorer
        self.preprocess = preprocess

    def to(self, device: torch.device | str) -> TopK:
        super().to(device)
        for part in (self.scorer, self.preprocess):
            if isinstance(part, nn.Module):
                part.to(self.device)
        return self

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), eval_mode(self.scorer), eval_mode(self.preprocess):
            x = self.preprocess(images) if self.preprocess is not None else images
            out = self.scorer(x)
        if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != len(images):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"TopK scorer returned {shape} for {len(images)} images; it must return (N, K) "
                "class logits or (N,) scores"
            )
        if out.dim() == 1 or (out.dim() == 2 and out.shape[1] == 1):
            return out.reshape(-1).float()
        if out.dim() != 2:
            raise ValueError(
                f"TopK scorer returned shape {tuple(out.shape)}; it must return (N, K) class "
                "logits or (N,) scores (flatten or pool extra dimensions)"
            )
        if len(labels) and int(labels.max()) >= out.shape[1]:
            raise ValueError(
                f"TopK classifier has {out.shape[1]} outputs but candidates have label "
                f"{int(labels.max())}; the classifier must cover the generator's classes"
            )
        probs = torch.softmax(out.float(), dim=1)
        return probs.gather(1, labels.to(probs.device).view(-1, 1)).flatten()

    def _config(self) -> dict[str, Any]:
        return {"scorer": describe(self.scorer), "preprocess": describe(self.preprocess)}
