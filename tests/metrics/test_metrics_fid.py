import warnings

import numpy as np
import pytest
import torch
from torch import nn

from gdaload.metrics import fid, frechet_distance, kernel_inception_distance, kid


def exact_moments(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    """Samples whose sample mean and (unbiased) covariance equal ``mean`` and ``cov``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, len(mean), generator=g, dtype=torch.float64)
    x = x - x.mean(dim=0)
    whiten = torch.linalg.cholesky(torch.cov(x.T))
    x = torch.linalg.solve_triangular(whiten, x.T, upper=False).T
    return x @ torch.linalg.cholesky(cov).T + mean


def sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T


def test_fid_of_a_set_with_itself_is_zero():
    feats = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-3)


def test_fid_of_diagonal_gaussians_matches_closed_form():
    mu_a, mu_b = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64), torch.zeros(3).double()
    var_a = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)
    var_b = torch.tensor([4.0, 1.0, 1.0], dtype=torch.float64)
    a = exact_moments(50, mu_a, torch.diag(var_a), seed=1)
    b = exact_moments(60, mu_b, torch.diag(var_b), seed=2)
    # ||mu_a - mu_b||^2 + sum (sqrt(var_a) - sqrt(var_b))^2 = 5 + (1 + 1 + 4)
    assert frechet_distance(a, b) == pytest.approx(11.0, abs=1e-6)


def test_fid_of_correlated_gaussians_matches_closed_form():
    g = torch.Generator().manual_seed(3)
    ra = torch.randn(4, 4, generator=g, dtype=torch.float64)
    rb = torch.randn(4, 4, generator=g, dtype=torch.float64)
    cov_a, cov_b = ra @ ra.T + 0.5 * torch.eye(4), rb @ rb.T + 0.5 * torch.eye(4)
    mu_a, mu_b = torch.randn(4, generator=g).double(), torch.randn(4, generator=g).double()
    root_a = sqrtm_psd(cov_a)
    expected = (mu_a - mu_b).square().sum() + torch.trace(
        cov_a + cov_b - 2 * sqrtm_psd(root_a @ cov_b @ root_a)
    )
    a = exact_moments(40, mu_a, cov_a, seed=4)
    b = exact_moments(30, mu_b, cov_b, seed=5)
    assert frechet_distance(a.numpy(), b) == pytest.approx(float(expected), rel=1e-6)


def test_fid_with_constant_features_is_finite_and_exact():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(100, 6, generator=g, dtype=torch.float64)
    b = torch.randn(100, 6, generator=g, dtype=torch.float64) + 1
    a[:, 2] = b[:, 2] = a[:, 4] = 0.0  # dead units make both covariances singular
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    root_a = sqrtm_psd(cov_a)
    expected = (a.mean(0) - b.mean(0)).square().sum() + torch.trace(
        cov_a + cov_b - 2 * sqrtm_psd(root_a @ cov_b @ root_a)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.reliability
def test_fid_needs_more_samples_than_dims():
    feats = torch.randn(10, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="more samples than feature dimensions.*KID"):
        frechet_distance(feats, feats)


@pytest.mark.reliability
def test_feature_dims_must_match():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        frechet_distance(torch.randn(50, 3, generator=g), torch.randn(50, 4, generator=g))
    with pytest.raises(ValueError, match="feature dimensions differ"):
        kernel_inception_distance(torch.randn(9, 3, generator=g), torch.randn(9, 4, generator=g))


@pytest.mark.reliability
def test_non_finite_features_are_rejected():
    feats = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    bad = feats.clone()
    bad[7, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite.*sample 7"):
        frechet_distance(feats, bad)
    with pytest.raises(ValueError, match="non-finite.*sample 7"):
        kernel_inception_distance(bad, feats)


def naive_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the default cubic kernel, written out term by term."""
    m, d = x.shape

    def k(u, v):
        return (u @ v / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_matches_the_unbiased_estimator():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, generator=g).double(), torch.randn(6, 3, generator=g).double() + 1
    # With subset_size == n every subset is the whole set, so the std is 0.
    mean, std = kernel_inception_distance(x, y, subsets=3, subset_size=6)
    assert mean == pytest.approx(naive_mmd2(x.numpy(), y.numpy()), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_shifted():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    mean, std = kernel_inception_distance(a, b, subsets=50, subset_size=100)
    assert abs(mean) < 3 * std
    shifted_mean, shifted_std = kernel_inception_distance(a, b + 0.5, subsets=50, subset_size=100)
    assert shifted_mean > 5 * shifted_std > 0
    assert shifted_mean > 20 * abs(mean)


def test_kid_is_reproducible_by_seed():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 4, generator=g), torch.randn(50, 4, generator=g)

    def run(seed: int) -> tuple[float, float]:
        return kernel_inception_distance(a, b, subsets=5, subset_size=20, seed=seed)

    assert run(1) == run(1) != run(2)


@pytest.mark.reliability
def test_kid_rejects_bad_arguments():
    a = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="subset_size"):
        kernel_inception_distance(a, a, subset_size=1)
    with pytest.raises(ValueError, match="at least 2 samples"):
        kernel_inception_distance(a[:1], a)


def images(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def test_fid_and_kid_of_images_embed_both_sets():
    real, fake = images(40, 2, seed=0), images(40, 2, seed=1)
    flat = nn.Flatten()
    assert fid(real, real, flat, batch_size=16) == pytest.approx(0.0, abs=1e-3)
    assert fid(real, fake, flat) == pytest.approx(
        frechet_distance(real.flatten(1), fake.flatten(1)), rel=1e-6
    )
    assert kid(real, fake + 1, flat, subsets=4, subset_size=20)[0] > 0


@pytest.mark.reliability
def test_image_sizes_must_match_between_sets():
    real, fake = images(20, 2, seed=0), images(20, 3, seed=1)
    with pytest.raises(ValueError, match="image sizes differ between the two sets"):
        fid(real, fake, nn.Flatten())
    # Iterables of (images, labels) batches are checked at the first fake batch.
    labels = torch.zeros(10, dtype=torch.long)
    real_batches = [(real[:10], labels), (real[10:], labels)]
    fake_batches = [(fake[:10], labels), (fake[10:], labels)]
    with pytest.raises(ValueError, match="image sizes differ between the two sets"):
        kid(real_batches, fake_batches, nn.Flatten())


@pytest.mark.reliability
def test_non_finite_model_output_names_the_sample():
    real, fake = images(30, 2, seed=0), images(30, 2, seed=1)
    fake[5, 0, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="non-finite.*sample 5"):
        fid(real, fake, nn.Flatten(), batch_size=4)
