"""Selection stages: score generated candidates, then keep some of them.

A :class:`SelectionStage` scores generated images (higher is better) and drops those that
fail its keep rule; :class:`~gdaload.select.selected.SelectedGenerator` runs stages in
order over the candidates of each request. :func:`describe` and :func:`eval_mode` are the
helpers every stage shares: a JSON identity of its models for the stage config, and
eval-mode scoring that leaves a model's training flags as they were.
"""

from __future__ import annotations

import abc
import contextlib
import math
import re
from collections.abc import Iterator
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from gdaload.fingerprint import module_fingerprint

__all__ = ["SelectionStage", "describe", "eval_mode"]

StageT = TypeVar("StageT", bound="SelectionStage")


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
