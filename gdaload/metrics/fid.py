"""Fréchet Inception Distance (FID) and Kernel Inception Distance (KID).

Both compare two sets of feature vectors, usually real and generated images embedded by
the same network (see :mod:`gdaload.metrics.features`). FID fits a Gaussian to each set
and needs more samples than feature dimensions; KID (Bińkowski et al., 2018, "Demystifying
MMD GANs") is an unbiased kernel estimate that works with small sets.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from gdaload.metrics.features import FeatureArray, ImageSource, _extract, as_feature_matrix

__all__ = ["fid", "frechet_distance", "kernel_inception_distance", "kid"]


def frechet_distance(feats_a: FeatureArray, feats_b: FeatureArray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    ``d² = ‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2})``, computed in float64.
    As in the reference implementation of Heusel et al. (2017), ``eps·I`` is added to
    both covariances when the matrix square root is not finite (singular product), and
    imaginary parts from rounding are dropped when negligible.

    Args:
        feats_a: ``(N_a, D)`` features.
        feats_b: ``(N_b, D)`` features.
        eps: Diagonal offset used for singular covariance products.

    Returns:
        The distance (0 for identical sets, up to rounding).

    Raises:
        ValueError: On non-2-D or non-finite features, differing feature dimensions, a set
            with no more samples than dimensions (its covariance would be singular), or a
            square root with a significant imaginary part.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> a = torch.randn(500, 4, generator=g)
        >>> round(frechet_distance(a, a + 1.0), 3)  # mean shift of 1 in 4 dims
        4.0
    """
    # Imported here so that importing gdaload.metrics does not load SciPy.
    import scipy.linalg

    a, b = (x.cpu().numpy() for x in _as_pair(feats_a, feats_b))
    dim = a.shape[1]
    for name, x in (("feats_a", a), ("feats_b", b)):
        if x.shape[0] <= dim:
            raise ValueError(
                f"FID needs more samples than feature dimensions, but {name} has "
                f"{x.shape[0]} samples of dimension {dim}, so its covariance is singular. "
                "Use kernel_inception_distance (KID), which is unbiased for small sets, or "
                "reduce the feature dimension (e.g. PCA or an earlier layer)."
            )
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    sigma_a = np.cov(a, rowvar=False).reshape(dim, dim)
    sigma_b = np.cov(b, rowvar=False).reshape(dim, dim)

    with warnings.catch_warnings():
        # Singular products are routine (e.g. ReLU units that never fire give constant
        # features); the result is checked below rather than warned about.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma_a @ sigma_b)
        if not np.isfinite(covmean).all():
            offset = np.eye(dim) * eps
            covmean = scipy.linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                "the covariance square root has a significant imaginary part "
                f"({np.abs(covmean.imag).max():.3g}); the features are probably degenerate"
            )
        covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(covmean))


def kernel_inception_distance(
    feats_a: FeatureArray,
    feats_b: FeatureArray,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD² with a polynomial kernel, over subsets.

    The kernel is ``k(x, y) = (γ x·y + coef0)^degree`` with ``γ = 1/D`` by default. For
    each of ``subsets`` draws, ``subset_size`` rows are sampled without replacement from
    each set and the unbiased MMD² estimate is computed; the mean and (population)
    standard deviation over draws are returned, as in Bińkowski et al. (2018) and
    torchmetrics. Being unbiased, the mean can be slightly negative for matching sets.
    The computation runs in float64 on the device of ``feats_a``; pass GPU tensors for
    large sets.

    Args:
        feats_a: ``(N_a, D)`` features.
        feats_b: ``(N_b, D)`` features.
        subsets: Number of random subset draws.
        subset_size: Rows per subset; capped at ``min(N_a, N_b)``.
        degree: Polynomial kernel degree.
        gamma: Kernel scale; ``None`` means ``1 / D``.
        coef0: Kernel offset.
        seed: Seed of the subset sampling (a private generator; the global RNG is untouched).

    Returns:
        ``(mean, std)`` of the MMD² estimates.

    Raises:
        ValueError: On non-2-D or non-finite features, differing feature dimensions, fewer
            than 2 samples in a set, or non-positive ``subsets``/``subset_size``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(200, 8, generator=g), torch.randn(200, 8, generator=g)
        >>> mean, std = kernel_inception_distance(a, b + 1.0, subsets=10, subset_size=100)
        >>> mean > 3 * std
        True
    """
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    if subset_size < 2:
        raise ValueError(f"subset_size must be >= 2 for the unbiased estimate, got {subset_size}")
    a, b = _as_pair(feats_a, feats_b)
    for name, x in (("feats_a", a), ("feats_b", b)):
        if x.shape[0] < 2:
            raise ValueError(f"KID needs at least 2 samples per set, {name} has {x.shape[0]}")
    m = min(subset_size, a.shape[0], b.shape[0])
    scale = 1.0 / a.shape[1] if gamma is None else gamma
    generator = torch.Generator().manual_seed(seed)
    scores = torch.empty(subsets, dtype=torch.float64, device=a.device)
    for i in range(subsets):
        x = a[torch.randperm(a.shape[0], generator=generator)[:m].to(a.device)]
        y = b[torch.randperm(b.shape[0], generator=generator)[:m].to(a.device)]
        k_xx = (x @ x.T * scale + coef0) ** degree
        k_yy = (y @ y.T * scale + coef0) ** degree
        k_xy = (x @ y.T * scale + coef0) ** degree
        # The unbiased estimator leaves out the diagonal terms k(x_i, x_i).
        within = k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()
        scores[i] = within / (m * (m - 1)) - 2 * k_xy.sum() / (m * m)
    return float(scores.mean()), float(scores.std(unbiased=False))


def fid(
    real: ImageSource,
    fake: ImageSource,
    model: nn.Module,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    eps: float = 1e-6,
) -> float:
    """FID between two image sets, embedded by ``model``.

    Args:
        real: Reference images (tensor ``(N, C, H, W)``, ``Dataset`` or iterable of batches).
        fake: Generated images, in the same form and image size as ``real``.
        model: Feature extractor, e.g. :func:`~gdaload.metrics.features.load_inception`
            or :func:`~gdaload.metrics.features.penultimate` of a classifier.
        batch_size: Batch size for tensors and datasets.
        device: Where the model runs (default: its own device).
        eps: See :func:`frechet_distance`.

    Returns:
        The Fréchet distance of the two feature sets.

    Raises:
        ValueError: If image sizes differ between the sets, the model outputs non-finite
            features, or a set has no more samples than feature dimensions.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(50, 3, 2, 2, generator=g)
        >>> abs(fid(x, x, nn.Flatten())) < 1e-6
        True
    """
    feats_real, feats_fake = _features_of_pair(real, fake, model, batch_size, device)
    return frechet_distance(feats_real, feats_fake, eps=eps)


def kid(
    real: ImageSource,
    fake: ImageSource,
    model: nn.Module,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """KID ``(mean, std)`` between two image sets, embedded by ``model``.

    Arguments are those of :func:`fid` and :func:`kernel_inception_distance`.

    Raises:
        ValueError: If image sizes differ between the sets or the model outputs non-finite
            features.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(40, 3, 2, 2, generator=g)
        >>> mean, std = kid(x, x + 1.0, nn.Flatten(), subsets=5, subset_size=20)
        >>> mean > 0
        True
    """
    feats_real, feats_fake = _features_of_pair(real, fake, model, batch_size, device)
    return kernel_inception_distance(
        feats_real,
        feats_fake,
        subsets=subsets,
        subset_size=subset_size,
        degree=degree,
        gamma=gamma,
        coef0=coef0,
        seed=seed,
    )


def _features_of_pair(
    real: ImageSource,
    fake: ImageSource,
    model: nn.Module,
    batch_size: int,
    device: torch.device | str | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    # Tensors are checked up front so that a size mismatch costs no forward passes.
    if (
        isinstance(real, torch.Tensor)
        and isinstance(fake, torch.Tensor)
        and real.shape[1:] != fake.shape[1:]
    ):
        raise ValueError(
            f"image sizes differ between the two sets: real {tuple(real.shape[1:])} vs "
            f"fake {tuple(fake.shape[1:])}; resize one set so both match"
        )
    feats_real, shape, _ = _extract(real, model, batch_size=batch_size, device=device)
    feats_fake, _, _ = _extract(
        fake, model, batch_size=batch_size, device=device, reference_shape=shape
    )
    return feats_real, feats_fake


def _as_pair(feats_a: FeatureArray, feats_b: FeatureArray) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets validated, as float64 on the device of ``feats_a``."""
    a = as_feature_matrix(feats_a, "feats_a", torch.float64)
    b = as_feature_matrix(feats_b, "feats_b", torch.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feature dimensions differ: feats_a has {a.shape[1]}, feats_b has {b.shape[1]}; "
            "embed both sets with the same model"
        )
    return a, b.to(a.device)
