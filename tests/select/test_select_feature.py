"""FeatureStage helpers: feature extraction errors name the problem."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdaload.select.feature import batch_features


@pytest.mark.reliability
def test_feature_extractor_errors_name_the_problem():
    class NaNAt(nn.Module):
        def forward(self, x):
            out = x.flatten(1).clone()
            out[[1, 3], 0] = float("inf")
            return out

    with pytest.raises(ValueError, match=r"non-finite values \(NaN or inf\), first at sample 1"):
        batch_features(NaNAt(), torch.zeros(4, 1, 2, 2))
    with pytest.raises(ValueError, match=r"returned \(4,\) for 4 images"):
        batch_features(lambda x: x.mean(dim=(1, 2, 3)), torch.zeros(4, 1, 2, 2))
    with pytest.raises(ValueError, match="returned tuple for 4 images"):
        batch_features(lambda x: (x,), torch.zeros(4, 1, 2, 2))
