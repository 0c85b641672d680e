"""The masked multi-view objective: which views condition, and how the loss counts them."""

from __future__ import annotations

import pytest
import torch

from gdaload.train.masking import condition_weight, masked_diffusion_loss, sample_condition_masks


def test_condition_weight_is_one_plus_conditioning_over_missing() -> None:
    observed = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]]).bool()
    torch.testing.assert_close(condition_weight(observed), torch.tensor([1 + 1 / 3, 2.0, 4.0, 1.0]))
    with pytest.raises(ValueError, match="at least one diffused view"):
        condition_weight(torch.ones(1, 4, dtype=torch.bool))


def test_masked_loss_counts_diffused_views_only_and_is_weighted() -> None:
    target = torch.zeros(2, 4, 2, 3, 3)
    prediction = target.clone()
    prediction[:, 0] = 5.0  # error on view 0 only, which conditions in object 0
    prediction[:, 1] = 1.0  # error 1 on view 1, diffused in both objects
    observed = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]]).bool()
    loss = masked_diffusion_loss(prediction, target, observed)
    # Object 0: squared error 1 on one of 4 views -> mean 1/4, times 1 + 1/3.
    # Object 1: (25 + 1) / 4 over all views, times 1 + 0/4.
    torch.testing.assert_close(loss, torch.tensor([0.25 * (1 + 1 / 3), 26 / 4]))


def test_condition_masks_drop_all_views_with_probability_p() -> None:
    masks = sample_condition_masks(20000, 4, torch.Generator().manual_seed(0), p_uncond=0.2)
    empty = (~masks.any(1)).double().mean().item()
    assert abs(empty - 0.2) < 0.012  # 4 standard errors of a binomial proportion
    assert not masks.all(1).any()
    # Conditional rows: the 14 non-empty proper subsets, equally likely.
    codes = (masks[masks.any(1)].long() * (2 ** torch.arange(4))).sum(1)
    shares = torch.bincount(codes, minlength=16).double() / len(codes)
    assert shares[0] == 0 and shares[15] == 0
    assert ((shares[1:15] - 1 / 14).abs() < 0.012).all()
    again = sample_condition_masks(20000, 4, torch.Generator().manual_seed(0), p_uncond=0.2)
    assert torch.equal(masks, again)
    never = sample_condition_masks(2000, 4, torch.Generator().manual_seed(1), p_uncond=0.0)
    assert never.any(1).all()
