"""Improved precision, recall and realism score (Kynkäänniemi et al., NeurIPS 2019).

A feature set is approximated by the union of balls centred at its samples, each with
the radius to that sample's k-th nearest neighbour. Precision is the share of generated
samples inside the real manifold, recall the share of real samples inside the generated
one. The realism score rates single generated samples against the real manifold.

Distances are computed with ``torch.cdist`` in row blocks, so memory stays bounded
(about ``chunk_elements`` distances at a time) for sets of tens of thousands of samples.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from gdaload.metrics.features import FeatureArray, as_feature_matrix

__all__ = ["RealManifold", "precision_recall", "realism_score"]

#: Default number of pairwise distances held in memory at once (64 MiB in float32).
CHUNK_ELEMENTS = 2**24

#: Floor on distances in the realism ratio: a generated sample equal to a real one would
#: otherwise divide by zero.
MIN_DISTANCE = 1e-10


class RealManifold:
    """k-NN manifold of a reference feature set, usually real images.

    Build it once per real set and query it with many generated batches: ``contains``
    gives the per-sample membership behind precision, ``realism`` the realism score.
    Computation happens on the device of ``real_feats`` (float32 unless the features
    are float64).

    Args:
        real_feats: ``(N, D)`` reference features, ``N > k``.
        k: Neighbourhood size for the radii (3 in the paper).
        chunk_elements: Upper bound on distances computed per block.

    Attributes:
        feats: The reference features.
        radii: ``(N,)`` distance from each reference sample to its k-th nearest neighbour
            (the sample itself excluded).

    Raises:
        ValueError: On non-2-D or non-finite features, ``k < 1`` or ``N <= k``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> manifold = RealManifold(torch.randn(100, 8, generator=g), k=3)
        >>> manifold.contains(torch.full((1, 8), 50.0)).tolist()
        [False]
    """

    def __init__(
        self, real_feats: FeatureArray, k: int = 3, chunk_elements: int = CHUNK_ELEMENTS
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        feats = as_feature_matrix(real_feats, "real_feats")
        if feats.shape[0] <= k:
            raise ValueError(
                f"k-NN radii with k={k} need more than {k} samples, got {feats.shape[0]}"
            )
        self.feats = feats
        self.k = k
        self.chunk_elements = chunk_elements
        self.radii = self._knn_radii()

    def _knn_radii(self) -> torch.Tensor:
        radii = torch.empty(self.feats.shape[0], dtype=self.feats.dtype, device=self.feats.device)
        for start, block in self._blocks(self.feats, self.feats.shape[0]):
            dist = torch.cdist(block, self.feats)
            # The k+1 smallest include the sample itself at distance 0.
            nearest = dist.topk(self.k + 1, dim=1, largest=False).values
            radii[start : start + len(block)] = nearest[:, self.k]
        return radii

    def _blocks(self, feats: torch.Tensor, n_cols: int) -> Iterator[tuple[int, torch.Tensor]]:
        rows = max(1, self.chunk_elements // max(n_cols, 1))
        for start in range(0, feats.shape[0], rows):
            yield start, feats[start : start + rows]

    def _queries(self, feats: FeatureArray) -> torch.Tensor:
        queries = as_feature_matrix(feats, "feats", self.feats.dtype).to(self.feats.device)
        if queries.shape[1] != self.feats.shape[1]:
            raise ValueError(
                f"feature dimensions differ: the manifold has {self.feats.shape[1]}, the "
                f"queries have {queries.shape[1]}; embed both sets with the same model"
            )
        return queries

    def contains(self, feats: FeatureArray) -> torch.Tensor:
        """Whether each sample lies inside at least one reference k-NN ball.

        Args:
            feats: ``(M, D)`` query features.

        Returns:
            ``(M,)`` bool tensor.

        Example:
            >>> m = RealManifold(torch.tensor([[0.0], [1.0], [2.0], [3.0]]), k=1)
            >>> m.contains(torch.tensor([[1.5], [9.0]])).tolist()
            [True, False]
        """
        queries = self._queries(feats)
        inside = torch.empty(queries.shape[0], dtype=torch.bool, device=queries.device)
        for start, block in self._blocks(queries, self.feats.shape[0]):
            dist = torch.cdist(block, self.feats)
            inside[start : start + len(block)] = (dist <= self.radii).any(dim=1)
        return inside

    def realism(self, feats: FeatureArray, prune_fraction: float = 0.5) -> torch.Tensor:
        """Realism score ``R(φ_g) = max_r radius_r / ‖φ_g − φ_r‖`` of each sample.

        A score of at least 1 means the sample lies inside some reference ball; larger is
        more typical of the reference set.

        Args:
            feats: ``(M, D)`` query features.
            prune_fraction: Share of reference samples with the largest radii left out,
                so that balls of outliers do not dominate (0.5 in the paper; 0 keeps all).

        Returns:
            ``(M,)`` float tensor of scores.

        Raises:
            ValueError: If ``prune_fraction`` is not in ``[0, 1)``.

        Example:
            >>> m = RealManifold(torch.tensor([[0.0], [1.0], [2.0], [3.0]]), k=1)
            >>> scores = m.realism(torch.tensor([[1.5], [9.0]]), prune_fraction=0)
            >>> [round(s, 3) for s in scores.tolist()]
            [2.0, 0.167]
        """
        if not 0 <= prune_fraction < 1:
            raise ValueError(f"prune_fraction must be in [0, 1), got {prune_fraction}")
        queries = self._queries(feats)
        radii, centres = self.radii, self.feats
        if prune_fraction > 0:
            keep = radii <= torch.quantile(radii, 1 - prune_fraction)
            radii, centres = radii[keep], centres[keep]
        scores = torch.empty(queries.shape[0], dtype=radii.dtype, device=radii.device)
        for start, block in self._blocks(queries, centres.shape[0]):
            dist = torch.cdist(block, centres).clamp_min(MIN_DISTANCE)
            scores[start : start + len(block)] = (radii / dist).amax(dim=1)
        return scores


def precision_recall(real: FeatureArray, fake: FeatureArray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of generated features against real ones.

    Args:
        real: ``(N, D)`` real features.
        fake: ``(M, D)`` generated features.
        k: Neighbourhood size of the manifold radii.

    Returns:
        ``(precision, recall)``: the share of fake samples inside the real manifold and of
        real samples inside the fake manifold.

    Raises:
        ValueError: On bad features (see :class:`RealManifold`) or differing dimensions.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> real = torch.randn(200, 4, generator=g)
        >>> precision_recall(real, real + 100.0)
        (0.0, 0.0)
    """
    precision = RealManifold(real, k).contains(fake).float().mean()
    recall = RealManifold(fake, k).contains(real).float().mean()
    return float(precision), float(recall)


def realism_score(
    real: FeatureArray, fake: FeatureArray, k: int = 3, prune_fraction: float = 0.5
) -> torch.Tensor:
    """Realism score of each generated sample (see :meth:`RealManifold.realism`).

    Args:
        real: ``(N, D)`` real features.
        fake: ``(M, D)`` generated features.
        k: Neighbourhood size of the real radii.
        prune_fraction: Share of real samples with the largest radii left out.

    Returns:
        ``(M,)`` scores.

    Example:
        >>> real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
        >>> realism_score(real, torch.tensor([[1.0], [9.0]]), k=1).argmin().item()
        1
    """
    return RealManifold(real, k).realism(fake, prune_fraction)
