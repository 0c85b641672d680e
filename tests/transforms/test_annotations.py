"""GenerativeAugment over segmentation samples: mask-conditioned SDEdit keeps a
tv_tensors.Mask valid; what cannot stay valid is refused."""

import pytest
import torch
from tiny_models import seeded_masks, tiny_mask_diffusion
from torchvision import tv_tensors

from gdaload import GenerativeAugment


@pytest.fixture(scope="module")
def mask_gen():
    return tiny_mask_diffusion(num_classes=3, num_mask_classes=4)


def sample(label: int = 1, seed: int = 0):
    mask = seeded_masks([label], [seed])[0]
    return tv_tensors.Image(mask.float().unsqueeze(0) / 3), tv_tensors.Mask(mask), label


def test_the_variation_is_drawn_under_the_mask(mask_gen) -> None:
    image, mask, label = sample()
    augment = GenerativeAugment(mask_gen, p=1, strength=0.8)
    out, out_mask, out_label = augment(image, mask, label)
    assert isinstance(out, tv_tensors.Image) and out.shape == image.shape
    assert not torch.equal(out, image)
    assert out_mask is mask and out_label == label  # the mask passes through, still valid
    again, _, _ = augment(image, mask, label)
    assert torch.equal(out, again)
    other = tv_tensors.Mask(seeded_masks([label], [5])[0])
    varied, _, _ = augment(image, other, label)
    assert not torch.equal(out, varied)  # the mask conditions the variation


def test_batches_are_varied_row_by_row_under_their_masks(mask_gen) -> None:
    rows = [sample(label, seed) for label, seed in [(0, 1), (1, 2), (2, 3)]]
    images = torch.stack([r[0].as_subclass(torch.Tensor) for r in rows])
    masks = tv_tensors.Mask(torch.stack([r[1].as_subclass(torch.Tensor) for r in rows]))
    labels = torch.tensor([r[2] for r in rows])
    augment = GenerativeAugment(mask_gen, p=1, strength=0.8)
    out, out_masks, _ = augment(images, masks, labels)
    single = augment(*rows[1])[0]
    assert out.shape == images.shape and out_masks is masks
    assert torch.allclose(out[1], single.as_subclass(torch.Tensor), atol=1e-5)


@pytest.mark.reliability
def test_a_mask_conditioned_augment_needs_a_mask(mask_gen) -> None:
    image, _, label = sample()
    with pytest.raises(ValueError, match="holds no tv_tensors.Mask"):
        GenerativeAugment(mask_gen, p=1)(image, label)


@pytest.mark.reliability
def test_bad_masks_are_refused_before_generating(mask_gen) -> None:
    image, mask, label = sample()
    augment = GenerativeAugment(mask_gen, p=1)
    with pytest.raises(ValueError, match="nearest-neighbour"):
        augment(image, tv_tensors.Mask(torch.zeros(4, 4, dtype=torch.long)), label)
    with pytest.raises(ValueError, match=r"labels \[7\] outside"):
        augment(image, tv_tensors.Mask(mask.as_subclass(torch.Tensor) + 7 * (mask == 0)), label)
    boxes = tv_tensors.BoundingBoxes([[0, 0, 2, 2]], format="XYXY", canvas_size=(8, 8))
    with pytest.raises(ValueError, match="BoundingBoxes"):
        augment(image, mask, boxes, label)
