"""GenMix over segmentation batches: masks mixed as soft masks with the images' weights."""

import pytest
import torch
import torch.nn.functional as F

from gdaload import GenMix

SYNTHETIC = torch.tensor([False, False, False, True, True, True])


def masks() -> torch.Tensor:
    return torch.randint(0, 4, (6, 5, 5), generator=torch.Generator().manual_seed(0))


def as_images(labels: torch.Tensor) -> torch.Tensor:
    """Images whose channels are the one-hot masks: mixed, they must equal the soft masks."""
    return F.one_hot(labels, 4).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
@pytest.mark.parametrize("pairing", ["real-synthetic", "real-union", "real-real"])
def test_soft_masks_are_mixed_like_the_images(mode: str, pairing: str) -> None:
    labels = masks()
    x = as_images(labels)
    genmix = GenMix(3, alpha=0.5, seed=2, mode=mode, pairing=pairing)
    mixed, _, soft = genmix(x, torch.arange(6) % 3, SYNTHETIC, masks=labels, num_mask_classes=4)
    assert soft.shape == (6, 4, 5, 5) and soft.dtype == x.dtype
    assert torch.allclose(soft, mixed, atol=1e-6)
    assert torch.allclose(soft.sum(1), torch.ones(6, 5, 5), atol=1e-6)
    assert genmix.last_mix.lam.max() > 0  # the batch was mixed


def test_an_unmixed_batch_gets_one_hot_masks() -> None:
    labels = masks()
    _, _, soft = GenMix(3, p=0.0)(
        torch.rand(6, 1, 5, 5), torch.arange(6) % 3, SYNTHETIC, masks=labels, num_mask_classes=4
    )
    assert torch.equal(soft, as_images(labels))


def test_without_masks_the_call_shape_is_unchanged() -> None:
    x, y = torch.rand(6, 1, 5, 5), torch.arange(6) % 3
    a, b = GenMix(3, seed=1), GenMix(3, seed=1)
    out = a(x, y, SYNTHETIC)
    assert len(out) == 2 and torch.equal(
        out[0], b(x, y, SYNTHETIC, masks=masks(), num_mask_classes=4)[0]
    )


@pytest.mark.reliability
def test_bad_masks_are_refused() -> None:
    x, y = torch.rand(6, 1, 5, 5), torch.arange(6) % 3
    with pytest.raises(ValueError, match="num_mask_classes="):
        GenMix(3)(x, y, SYNTHETIC, masks=masks())
    with pytest.raises(ValueError, match="integer labels"):
        GenMix(3)(x, y, SYNTHETIC, masks=masks().float(), num_mask_classes=4)
    with pytest.raises(ValueError, match="outside the generator's mask classes"):
        GenMix(3)(x, y, SYNTHETIC, masks=masks(), num_mask_classes=2)
    with pytest.raises(ValueError, match="nearest-neighbour"):
        GenMix(3)(x, y, SYNTHETIC, masks=masks()[:, :4], num_mask_classes=4)
