"""Segmentation with generated (image, mask) pairs: the digits' stroke masks, 5 per class.

A ``DataLoader`` of ``(image, mask, label)`` samples is wrapped by ``GenerativeLoader``
with the shipped joint generator (image and mask made together), so every batch comes as
``(x, masks, y)`` with synthetic pairs appended at the ratio; GenMix mixes the images and
their masks (as soft masks) with the same weights; a tiny convolutional segmenter trains
on the soft masks. ``GenerativeAugment`` with the shipped mask-conditioned generator
varies a real image under its own ``tv_tensors.Mask``, which stays valid.

Run ``python examples/segmentation.py [--steps N]``.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from gdaload import GenerativeAugment, GenerativeLoader, GenMix, JointDiffusion, MaskDiffusion
from gdaload.bench.assets import DIGITS_JOINT_GENERATOR, DIGITS_MASK_GENERATOR
from gdaload.datasets.segmentation import MASK_CLASSES, digit_segmentation_splits


def main(steps: int = 20, sampler_steps: int = 10) -> dict[str, float]:
    """Train for ``steps`` batches; return the last loss and the synthetic share."""
    k = len(MASK_CLASSES)
    splits = digit_segmentation_splits(shots=5, seed=0)
    joint = JointDiffusion.from_pretrained(DIGITS_JOINT_GENERATOR, steps=sampler_steps)
    loader = GenerativeLoader(
        DataLoader(splits.train, batch_size=10, shuffle=True), joint, ratio=0.5, return_mask=True
    )
    genmix = GenMix(num_classes=10, alpha=0.4, seed=0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, k, 3, padding=1))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    done, loss, synthetic, rows = 0, torch.tensor(0.0), 0, 0
    while done < steps:
        for x, masks, y, is_synthetic in loader:
            x, _, soft = genmix(x, y, is_synthetic, masks=masks, num_mask_classes=k)
            loss = -(soft * model(x).log_softmax(1)).sum(1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            synthetic, rows, done = synthetic + int(is_synthetic.sum()), rows + len(y), done + 1
            if done == steps:
                break
    # Vary one real image under its mask: the mask still describes the new image.
    image, mask, label = splits.train[0]
    painter = MaskDiffusion.from_pretrained(DIGITS_MASK_GENERATOR, steps=sampler_steps)
    augment = GenerativeAugment(painter, p=1.0, strength=0.6)
    varied, kept, _ = augment(tv_tensors.Image(image), tv_tensors.Mask(mask), label)
    assert torch.equal(kept, mask)
    return {
        "loss": float(loss.detach()),
        "synthetic_share": synthetic / rows,
        "varied_change": float((varied - image).abs().mean()),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    print(main(parser.parse_args().steps))
