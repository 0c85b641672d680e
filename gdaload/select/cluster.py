"""Cluster-based selection: keep candidates close to a prototype of their class's real data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gdaload.fingerprint import tensors_fingerprint
from gdaload.select.feature import FeatureStage, fitted_classes_error

__all__ = ["ClusterSelect"]

METHODS = ("kmeans", "spectral")


class ClusterSelect(FeatureStage):
    """Score candidates by cosine similarity to the nearest real cluster centre of their class.

    :meth:`fit` clusters the real features of each class separately with scikit-learn:
    ``"kmeans"`` (``KMeans``; centres are its centroids) or ``"spectral"``
    (``SpectralClustering``; centres are the mean feature of each cluster). Features are
    L2-normalised before clustering, so that clusters follow the same cosine geometry as
    the score. A candidate's score is ``max_j cos(φ_g, c_j)`` over the centres ``c_j`` of
    its intended class; with a keep rule the candidates nearest the prototypes survive.

    Args:
        feature_extractor: Module or callable mapping images to features.
        n_clusters: Clusters per class; every class needs at least this many real samples.
        method: ``"kmeans"`` or ``"spectral"``.
        random_state: Seed of the clustering, so that fitting is reproducible.
        cluster_kwargs: Extra arguments for the scikit-learn estimator (e.g.
            ``{"affinity": "nearest_neighbors"}`` for spectral clustering).
        keep: Fraction of candidates kept per request.
        top_k: Number of candidates kept per request.
        threshold: Minimum cosine similarity kept.

    Raises:
        ValueError: On ``n_clusters < 1``, an unknown method or an invalid rule.

    Example:
        >>> real = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
        >>> stage = ClusterSelect(torch.nn.Flatten(), n_clusters=2)
        >>> stage = stage.fit(real, torch.zeros(4, dtype=torch.long))
        >>> candidates = torch.tensor([[5.0, 0.0], [1.0, 1.0]]).view(2, 1, 1, 2)
        >>> stage.score(candidates, torch.tensor([0, 0]))
        tensor([1.0000, 0.7071])
    """

    requires_fit = True

    def __init__(
        self,
        feature_extractor: Callable[[torch.Tensor], torch.Tensor],
        *,
        n_clusters: int = 5,
        method: str = "kmeans",
        random_state: int = 0,
        cluster_kwargs: dict[str, Any] | None = None,
        keep: float | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(feature_extractor, keep=keep, top_k=top_k, threshold=threshold)
        if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters < 1:
            raise ValueError(f"n_clusters must be an integer >= 1, got {n_clusters!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.n_clusters = n_clusters
        self.method = method
        self.random_state = int(random_state)
        self.cluster_kwargs = dict(cluster_kwargs or {})
        #: ``(L, n_clusters, D)`` unit-norm centres per class label (zero rows pad classes
        #: with fewer non-empty clusters), ``None`` before :meth:`fit`.
        self.centroids: torch.Tensor | None = None
        #: ``(L, n_clusters)`` which centres are real.
        self.centroid_mask: torch.Tensor | None = None

    @property
    def is_fitted(self) -> bool:
        return self.centroids is not None

    def fit(self, real: Any, labels: Any = None) -> ClusterSelect:
        """Cluster each class's real features.

        Args:
            real: Real images, precomputed ``(N, D)`` features or an iterable of
                ``(images, labels)`` batches (see :class:`~gdaload.select.feature.FeatureStage`).
            labels: ``(N,)`` classes of ``real``.

        Returns:
            ``self``.

        Raises:
            ValueError: On missing labels, a class with fewer than ``n_clusters`` real
                samples, or bad features.
        """
        feats, fit_labels = self.real_features(real, labels)
        if fit_labels is None:
            raise ValueError(
                "ClusterSelect.fit needs the real labels: it clusters each class separately"
            )
        unit = F.normalize(feats.double(), dim=1).cpu().numpy()
        classes = fit_labels.unique().tolist()
        centroids = torch.zeros(
            max(classes) + 1, self.n_clusters, feats.shape[1], dtype=torch.float64
        )
        mask = torch.zeros(max(classes) + 1, self.n_clusters, dtype=torch.bool)
        for c in classes:
            members = unit[(fit_labels == c).numpy()]
            if len(members) < self.n_clusters:
                raise ValueError(
                    f"ClusterSelect with n_clusters={self.n_clusters} needs at least that many "
                    f"real samples per class; class {c} has {len(members)}. Lower n_clusters or "
                    "add real data"
                )
            centres = self._cluster(members)
            centroids[c, : len(centres)] = torch.from_numpy(centres)
            mask[c, : len(centres)] = True
        self.centroids = F.normalize(centroids, dim=2).float().to(self.device)
        self.centroid_mask = mask.to(self.device)
        self.feature_dim = feats.shape[1]
        return self

    def _cluster(self, members: np.ndarray) -> np.ndarray:
        from sklearn.cluster import KMeans, SpectralClustering

        if self.method == "kmeans":
            kwargs = {"n_init": 10, "random_state": self.random_state, **self.cluster_kwargs}
            return KMeans(n_clusters=self.n_clusters, **kwargs).fit(members).cluster_centers_
        kwargs = {"random_state": self.random_state, **self.cluster_kwargs}
        assignment = SpectralClustering(n_clusters=self.n_clusters, **kwargs).fit(members).labels_
        # Spectral clustering can leave a cluster empty; only non-empty ones get a centre.
        return np.stack([members[assignment == j].mean(axis=0) for j in np.unique(assignment)])

    def to(self, device: torch.device | str) -> ClusterSelect:
        super().to(device)
        if self.centroids is not None and self.centroid_mask is not None:
            self.centroids = self.centroids.to(self.device)
            self.centroid_mask = self.centroid_mask.to(self.device)
        return self

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._require_fitted()
        assert self.centroids is not None and self.centroid_mask is not None
        feats = F.normalize(self.features(images), dim=1)
        centroids = self.centroids.to(feats.device)
        mask = self.centroid_mask.to(feats.device)
        labels = labels.to(feats.device)
        in_range = labels < len(mask)
        known = torch.zeros_like(in_range)
        known[in_range] = mask[labels[in_range]].any(dim=1)
        if not bool(known.all()):
            missing = sorted(set(labels[~known].tolist()))
            raise fitted_classes_error(self, missing, "include them in the real data given to fit")
        sims = torch.einsum("nd,nkd->nk", feats, centroids[labels])
        return sims.masked_fill(~mask[labels], -torch.inf).amax(dim=1)

    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "n_clusters": self.n_clusters,
            "method": self.method,
            "random_state": self.random_state,
            "cluster_kwargs": self.cluster_kwargs,
            "centroids": None
            if self.centroids is None
            else tensors_fingerprint([("centroids", self.centroids)]),
        }
