import pytest
import torch

from gdaload.metrics import RealManifold, precision_recall, realism_score


def cluster(n: int, centre: float, seed: int, dim: int = 4) -> torch.Tensor:
    return centre + torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_radii_are_distances_to_the_kth_neighbour():
    line = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    assert RealManifold(line, k=1).radii.tolist() == [1.0, 1.0, 1.0, 1.0, 7.0]
    assert RealManifold(line, k=2).radii.tolist() == [2.0, 1.0, 1.0, 2.0, 8.0]


def test_duplicates_count_as_neighbours():
    points = torch.tensor([[0.0], [0.0], [5.0]])
    assert RealManifold(points, k=1).radii.tolist() == [0.0, 0.0, 5.0]


def test_contains_includes_the_ball_boundary():
    manifold = RealManifold(torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]]), k=1)
    queries = torch.tensor([[4.0], [4.5], [17.0], [17.5], [-1.0]])
    assert manifold.contains(queries).tolist() == [True, True, True, False, True]


def test_disjoint_clusters_have_zero_precision_and_recall():
    real, fake = cluster(100, 0.0, seed=0), cluster(100, 50.0, seed=1)
    assert precision_recall(real, fake) == (0.0, 0.0)


def test_identical_sets_have_full_precision_and_recall():
    real = cluster(100, 0.0, seed=0)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)


def test_mode_dropping_lowers_recall_only():
    real = torch.cat([cluster(100, 0.0, seed=0), cluster(100, 30.0, seed=1)])
    fake = cluster(100, 0.0, seed=2)  # covers one of the two real modes
    precision, recall = precision_recall(real, fake)
    assert precision > 0.9
    assert 0.4 < recall < 0.6


def test_results_do_not_depend_on_chunking():
    real, fake = cluster(60, 0.0, seed=0), cluster(50, 0.5, seed=1)
    whole, chunked = RealManifold(real, k=3), RealManifold(real, k=3, chunk_elements=7)
    torch.testing.assert_close(chunked.radii, whole.radii)
    assert torch.equal(chunked.contains(fake), whole.contains(fake))
    torch.testing.assert_close(chunked.realism(fake), whole.realism(fake))


def test_realism_ranks_an_outlier_lowest_and_a_real_point_high():
    real = cluster(200, 0.0, seed=0)
    manifold = RealManifold(real, k=3)
    typical = real[manifold.radii.argmin()]
    fake = torch.cat([cluster(20, 0.0, seed=1), typical[None], torch.full((1, 4), 25.0)])
    scores = manifold.realism(fake)
    assert scores.argmin() == len(fake) - 1
    assert scores[-1] < 1
    assert scores[-2] >= 1
    torch.testing.assert_close(realism_score(real, fake), scores)


def test_realism_hand_computed():
    manifold = RealManifold(torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]]), k=1)
    # Radii are [1, 1, 1, 1, 7]; the score is max_r radius_r / |q - r|. Unpruned, the
    # outlier 10.0 wins for both queries: 7/5 and 7/2.
    scores = manifold.realism(torch.tensor([[5.0], [12.0]]), prune_fraction=0)
    torch.testing.assert_close(scores, torch.tensor([7 / 5, 7 / 2]))
    # Pruning the half with the largest radii drops the outlier; 3.0 wins: 1/2 and 1/9.
    pruned = manifold.realism(torch.tensor([[5.0], [12.0]]))
    torch.testing.assert_close(pruned, torch.tensor([1 / 2, 1 / 9]))


@pytest.mark.reliability
def test_bad_inputs_are_rejected():
    real = cluster(10, 0.0, seed=0)
    with pytest.raises(ValueError, match="need more than 10 samples"):
        RealManifold(real, k=10)
    with pytest.raises(ValueError, match="k must be >= 1"):
        RealManifold(real, k=0)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        precision_recall(real, cluster(10, 0.0, seed=1, dim=3))
    bad = real.clone()
    bad[4, 2] = float("inf")
    with pytest.raises(ValueError, match="non-finite.*sample 4"):
        precision_recall(real, bad)
    with pytest.raises(ValueError, match="2-D"):
        RealManifold(torch.zeros(10))
    with pytest.raises(ValueError, match="prune_fraction"):
        realism_score(real, real, prune_fraction=1.0)
