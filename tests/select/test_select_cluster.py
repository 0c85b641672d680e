"""ClusterSelect: per-class prototypes from KMeans or spectral clustering of real features."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gdaload.seeding import derive_seed
from gdaload.select import ClusterSelect, SelectedGenerator

# Class 0: two tight groups along the x and y axes. Class 1: one group along the diagonal.
REAL = torch.tensor(
    [
        [1.0, 0.02],
        [2.0, 0.0],
        [1.5, -0.02],
        [0.02, 1.0],
        [0.0, 3.0],
        [-0.02, 2.0],
        [1.0, 1.0],
        [2.0, 2.1],
        [1.1, 1.0],
    ]
)
LABELS = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1])


def as_images(feats: torch.Tensor) -> torch.Tensor:
    return feats.view(len(feats), 1, 1, -1)


@pytest.mark.parametrize("method", ["kmeans", "spectral"])
def test_centres_are_the_groups_of_each_class(method):
    stage = ClusterSelect(nn.Flatten(), n_clusters=2, method=method).fit(REAL, LABELS)
    centres = stage.centroids[0][stage.centroid_mask[0]]
    directions = sorted(torch.round(centres, decimals=1).tolist())
    assert directions == [[0.0, 1.0], [1.0, 0.0]]
    assert stage.centroid_mask[1].sum() >= 1


@pytest.mark.parametrize("method", ["kmeans", "spectral"])
def test_candidates_nearest_a_centre_are_kept(method):
    stage = ClusterSelect(nn.Flatten(), n_clusters=2, method=method, keep=0.5).fit(REAL, LABELS)
    fake = torch.tensor([[1.0, 1.0], [3.0, 0.1], [1.0, 0.6], [0.05, 2.0]])
    scores = stage.score(as_images(fake), torch.zeros(4, dtype=torch.long))
    unit = F.normalize(REAL[:6], dim=1)
    centres = F.normalize(torch.stack([unit[:3].mean(0), unit[3:].mean(0)]), dim=1)
    expected = (F.normalize(fake, dim=1) @ centres.T).amax(dim=1)
    assert torch.allclose(scores, expected, atol=1e-5)
    kept = stage.keep_mask(scores.view(1, -1).double(), torch.ones(1, 4, dtype=torch.bool))
    assert kept.tolist() == [[False, True, False, True]]


def test_selected_generator_picks_the_candidate_closest_to_a_centre(gen, mean_features):
    # Features (v, 1 - v): class 2 prototypes lie along (1, 0) and (0, 1), so the best
    # candidate is the one whose v is farthest from 0.5.
    stage = ClusterSelect(mean_features, n_clusters=2).fit(REAL[:6], torch.full((6,), 2))
    selected = SelectedGenerator(gen, stage, candidates=5)
    seed = 3
    out = selected.generate([2], [seed])
    values = [gen.value(derive_seed(seed, c)) for c in range(5)]
    assert float(out[0].mean()) == pytest.approx(max(values, key=lambda v: abs(v - 0.5)))


def test_fit_on_images_uses_the_extractor(mean_features):
    values = torch.tensor([0.0, 0.05, 0.95, 1.0])
    images = values.view(-1, 1, 1, 1).expand(-1, 3, 2, 2)
    stage = ClusterSelect(mean_features, n_clusters=2).fit(images, torch.zeros(4, dtype=torch.long))
    assert stage.feature_dim == 2
    score = stage.score(torch.full((1, 3, 2, 2), 0.02), torch.zeros(1, dtype=torch.long))
    assert float(score) > 0.99


def test_config_follows_fit_and_settings():
    a = ClusterSelect(nn.Flatten(), n_clusters=2)
    before = a.config
    a.fit(REAL, LABELS)
    b = ClusterSelect(nn.Flatten(), n_clusters=2).fit(REAL * torch.tensor([1.0, 2.0]), LABELS)
    c = ClusterSelect(nn.Flatten(), n_clusters=2, method="spectral")
    configs = [
        before,
        a.config,
        b.config,
        c.config,
        ClusterSelect(nn.Flatten(), n_clusters=3).config,
    ]
    assert len({repr(sorted(cfg.items())) for cfg in configs}) == 5


@pytest.mark.reliability
def test_cluster_bad_inputs():
    with pytest.raises(ValueError, match="class 1 has 3"):
        ClusterSelect(nn.Flatten(), n_clusters=4).fit(REAL, LABELS)
    with pytest.raises(ValueError, match="needs the real labels"):
        ClusterSelect(nn.Flatten(), n_clusters=2).fit(REAL)
    stage = ClusterSelect(nn.Flatten(), n_clusters=2).fit(REAL, LABELS)
    with pytest.raises(ValueError, match=r"no real examples of classes \[2, 5\]"):
        stage.score(as_images(REAL[:3]), torch.tensor([5, 0, 2]))
    with pytest.raises(ValueError, match=r"ClusterSelect.fit\(real_images, real_labels\)"):
        ClusterSelect(nn.Flatten()).score(as_images(REAL[:1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="method must be one of"):
        ClusterSelect(nn.Flatten(), method="dbscan")
    with pytest.raises(ValueError, match="n_clusters must be an integer >= 1"):
        ClusterSelect(nn.Flatten(), n_clusters=0)
    with pytest.raises(ValueError, match="feature_extractor must be a module or callable"):
        ClusterSelect("flatten")
    with pytest.raises(ValueError, match="integer classes"):
        ClusterSelect(nn.Flatten(), n_clusters=2).fit(REAL, LABELS.float())
