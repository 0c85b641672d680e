"""An adaptive m_G/m_S: the ratio of each epoch picked from validation feedback.

The survey's bound on the generalisation error of generative data augmentation has an
optimal synthetic amount m_G* that no one can compute in advance: it depends on how far
the generated distribution is from the real one. :class:`AdaptiveRatio` searches for it
down from a starting ratio with a plateau rule, one validation score per epoch:

* epoch 0 trains at ``start``;
* after each epoch the loop hands over a score (higher is better, e.g. validation
  accuracy). If it beats the best earlier score by more than ``tolerance`` the ratio is
  kept; otherwise (a plateau or a drop) the next epoch's ratio is the current one times
  ``decay``, never below ``minimum``;
* the last ``off_last`` of ``epochs`` epochs train on real data only (ratio 0), as the
  GenMix paper turns mixing off for the final epochs.

The ratio of an epoch is a pure function of these settings and the scores handed over
for the epochs before it, so a resumed run that restores :meth:`AdaptiveRatio.state_dict`
(and ranks that hand over the same scores) train with the same ratios.
"""

from __future__ import annotations

import math
from typing import Any

from gdaload.data.policies import MAX_RATIO, check_ratio

__all__ = ["AdaptiveRatio"]


class AdaptiveRatio:
    """Picks m_G/m_S per epoch from one validation score per epoch (rule: module docs).

    Args:
        start: Ratio of epoch 0 (``0 < start <=`` :data:`~gdaload.data.policies.MAX_RATIO`).
        epochs: Epochs of the run (for ``off_last``).
        decay: Factor in (0, 1] applied on a plateau.
        minimum: Lowest ratio the plateau rule reaches, in [0, start].
        tolerance: Improvement (in the score's units) that counts as progress, >= 0.
        off_last: Last epochs trained without synthetic samples, in [0, epochs].

    Raises:
        ValueError: On a setting outside its range; the message gives the range.

    Example:
        >>> control = AdaptiveRatio(start=2.0, epochs=5, decay=0.5, off_last=1)
        >>> [control.update(score) for score in (0.80, 0.85, 0.85, 0.86)]
        [2.0, 2.0, 1.0, 0.0]
        >>> control.ratio(1), control.ratio(3), control.state_dict()["scores"]
        (2.0, 1.0, [0.8, 0.85, 0.85, 0.86])
    """

    def __init__(
        self,
        start: float,
        epochs: int,
        *,
        decay: float = 0.5,
        minimum: float = 0.0,
        tolerance: float = 0.0,
        off_last: int = 0,
    ) -> None:
        self.start = _in_range("start", start, 0.0, MAX_RATIO, low_open=True)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
        self.epochs = epochs
        self.decay = _in_range("decay", decay, 0.0, 1.0, low_open=True)
        self.minimum = _in_range("minimum", minimum, 0.0, self.start)
        self.tolerance = _in_range("tolerance", tolerance, 0.0, math.inf)
        if (
            isinstance(off_last, bool)
            or not isinstance(off_last, int)
            or not (0 <= off_last <= epochs)
        ):
            raise ValueError(f"off_last must be an int in [0, epochs={epochs}], got {off_last!r}")
        self.off_last = off_last
        self.scores: list[float] = []

    def ratio(self, epoch: int) -> float:
        """The ratio of ``epoch``, from the scores of the epochs before it.

        Raises:
            ValueError: If ``epoch`` is negative or its earlier epochs lack a score.
        """
        if epoch < 0 or epoch > len(self.scores):
            raise ValueError(
                f"the ratio of epoch {epoch} needs the scores of epochs 0..{epoch - 1}, but "
                f"{len(self.scores)} were handed over; call update() once after each epoch"
            )
        if epoch >= self.epochs - self.off_last:
            return 0.0
        ratio, best = self.start, -math.inf
        for score in self.scores[:epoch]:
            if score > best + self.tolerance:
                best = score
            else:
                ratio = max(self.minimum, ratio * self.decay)
            best = max(best, score)
        return check_ratio(ratio)

    def update(self, score: float) -> float:
        """Record the validation score of the epoch that just ended.

        Args:
            score: Higher is better (accuracy, macro-F1, minus a loss); finite.

        Returns:
            The ratio of the next epoch (give it to
            :meth:`~gdaload.GenerativeLoader.set_ratio`).

        Raises:
            ValueError: If ``score`` is not a finite number.
        """
        value = _in_range("score", score, -math.inf, math.inf)
        self.scores.append(value)
        return self.ratio(len(self.scores))

    def state_dict(self) -> dict[str, Any]:
        """The scores handed over so far (the settings are the constructor's)."""
        return {"scores": list(self.scores)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`.

        Raises:
            ValueError: If ``state`` has no list of finite ``scores``.
        """
        scores = state.get("scores") if isinstance(state, dict) else None
        if not isinstance(scores, list):
            raise ValueError(
                f"an AdaptiveRatio state is {{'scores': [...]}}, got {state!r}; pass a dict "
                "made by state_dict()"
            )
        self.scores = [_in_range("score", s, -math.inf, math.inf) for s in scores]

    def __repr__(self) -> str:
        return (
            f"AdaptiveRatio(start={self.start}, epochs={self.epochs}, decay={self.decay}, "
            f"minimum={self.minimum}, tolerance={self.tolerance}, off_last={self.off_last})"
        )


def _in_range(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if (v <= low if low_open else v < low) or v > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low:g}, {high:g}], got {value!r}")
    return v
