"""Realism-score filter (Kynkäänniemi et al., NeurIPS 2019, "Improved Precision and Recall")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gdaload.fingerprint import tensors_fingerprint
from gdaload.metrics.precision_recall import RealManifold
from gdaload.select.feature import FeatureStage, fitted_classes_error

__all__ = ["RealismScore"]


class RealismScore(FeatureStage):
    """Drop candidates that lie far from the real data in feature space.

    After :meth:`fit` on real data, a candidate with features ``φ_g`` scores
    ``R(φ_g) = max_r ‖φ_r − NN_k(φ_r)‖ / ‖φ_g − φ_r‖`` over real features ``φ_r`` (the
    k-NN manifold of :class:`gdaload.metrics.precision_recall.RealManifold`). ``R >= 1``
    means the candidate falls inside the ball of some real sample.

    With ``per_class=True`` (default) each class has its own real manifold and a candidate
    is compared with real samples of its intended class only, so a realistic image of the
    wrong class is rejected too; every class that is generated needs more than ``k`` real
    examples. ``per_class=False`` uses one manifold of all real data, and labels are
    optional in :meth:`fit`.

    Args:
        feature_extractor: Module or callable mapping images to features.
        k: Neighbourhood size of the real radii (3 in the paper).
        per_class: One manifold per class, or one for all real data.
        prune_fraction: Share of real samples with the largest radii ignored when scoring,
            so that outliers in the real data do not accept everything near them (0.5 in
            the paper; 0 keeps all).
        threshold: Minimum realism kept. When no rule is given it is 1.0.
        keep: Fraction of candidates kept per request instead of a threshold.
        top_k: Number of candidates kept per request instead of a threshold.

    Raises:
        ValueError: On ``k < 1``, ``prune_fraction`` outside ``[0, 1)`` or an invalid rule.

    Example:
        >>> stage = RealismScore(torch.nn.Flatten(), k=1, per_class=False, prune_fraction=0)
        >>> stage = stage.fit(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
        >>> stage.score(torch.tensor([1.5, 9.0]).view(2, 1, 1, 1), torch.tensor([0, 0]))
        tensor([2.0000, 0.1667])
    """

    requires_fit = True

    def __init__(
        self,
        feature_extractor: Callable[[torch.Tensor], torch.Tensor],
        *,
        k: int = 3,
        per_class: bool = True,
        prune_fraction: float = 0.5,
        threshold: float | None = None,
        keep: float | None = None,
        top_k: int | None = None,
    ) -> None:
        if threshold is None and keep is None and top_k is None:
            threshold = 1.0
        super().__init__(feature_extractor, keep=keep, top_k=top_k, threshold=threshold)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if not 0 <= prune_fraction < 1:
            raise ValueError(f"prune_fraction must be in [0, 1), got {prune_fraction!r}")
        self.k = k
        self.per_class = per_class
        self.prune_fraction = float(prune_fraction)
        # Class label -> manifold; key None holds the global manifold.
        self.manifolds: dict[int | None, RealManifold] = {}
        #: Digest of the fitted real features, so that refitting on other data changes the config.
        self.real_digest: str | None = None

    @property
    def is_fitted(self) -> bool:
        return bool(self.manifolds)

    def fit(self, real: Any, labels: Any = None) -> RealismScore:
        """Build the real manifold(s).

        Args:
            real: Real images, precomputed ``(N, D)`` features or an iterable of
                ``(images, labels)`` batches (see :class:`~gdaload.select.feature.FeatureStage`).
            labels: ``(N,)`` classes of ``real``; required when ``per_class``.

        Returns:
            ``self``.

        Raises:
            ValueError: On missing labels with ``per_class``, a class with at most ``k``
                real samples, or bad features.
        """
        feats, fit_labels = self.real_features(real, labels)
        if not self.per_class:
            self.manifolds = {None: self._manifold(feats, "the real data")}
            self.real_digest = tensors_fingerprint([("all", feats)])
            self.feature_dim = feats.shape[1]
            return self
        if fit_labels is None:
            raise ValueError(
                "RealismScore(per_class=True).fit needs the real labels; pass them or use "
                "per_class=False for one manifold of all real data"
            )
        fit_labels = fit_labels.to(feats.device)
        self.manifolds = {
            c: self._manifold(feats[fit_labels == c], f"class {c}")
            for c in fit_labels.unique().tolist()
        }
        self.real_digest = tensors_fingerprint((str(c), m.feats) for c, m in self.manifolds.items())
        self.feature_dim = feats.shape[1]
        return self

    def _manifold(self, feats: torch.Tensor, what: str) -> RealManifold:
        if feats.shape[0] <= self.k:
            raise ValueError(
                f"RealismScore with k={self.k} needs more than {self.k} real samples of "
                f"{what}, got {feats.shape[0]}; add real examples or lower k"
            )
        return RealManifold(feats, k=self.k)

    def to(self, device: torch.device | str) -> RealismScore:
        super().to(device)
        for manifold in self.manifolds.values():
            manifold.feats = manifold.feats.to(self.device)
            manifold.radii = manifold.radii.to(self.device)
        return self

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._require_fitted()
        feats = self.features(images)
        if not self.per_class:
            return self.manifolds[None].realism(feats, self.prune_fraction)
        labels = labels.to(feats.device)
        classes = labels.unique().tolist()
        missing = [c for c in classes if c not in self.manifolds]
        if missing:
            raise fitted_classes_error(
                self, missing, "include them in the real data given to fit, or use per_class=False"
            )
        scores = torch.empty(len(feats), device=feats.device)
        for c in classes:
            mask = labels == c
            scores[mask] = self.manifolds[c].realism(feats[mask], self.prune_fraction).float()
        return scores

    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "k": self.k,
            "per_class": self.per_class,
            "prune_fraction": self.prune_fraction,
            "real": self.real_digest,
        }
