"""Generative augmentation added to an existing torchvision v2 pipeline with one line.

The few-shot digits training set (100 images, 8x8 grayscale) runs through a v2 pipeline
in DataLoader workers. ``GenerativeAugment`` replaces about 30% of the images each epoch
with a variation made by a class-conditional diffusion model from the real image and its
label; the rest of the pipeline is untouched.

Run ``python examples/torchvision_pipeline.py [MODEL_FOLDER]``; the default folder is
the digits generator shipped with gdaload (``gdaload train-generator --data digits
--output FOLDER`` makes one).
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from gdaload import DiffusionGenerator
from gdaload.datasets.digits import digits_splits
from gdaload.transforms.augment import GenerativeAugment

DIGITS_GENERATOR = resources.files("gdaload") / "assets" / "digits-generator"


class Transformed(Dataset):
    """``(image, label)`` pairs of ``base`` passed through a v2 ``transform``."""

    def __init__(self, base: Dataset, transform: v2.Transform) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        image, label = self.base[index]
        return self.transform(image, int(label))


def main(model: str, epochs: int = 2) -> None:
    torch.manual_seed(0)  # seeds the shuffling and RandomAffine; GenerativeAugment has its own seed
    generator = DiffusionGenerator.from_pretrained(model, sampler="ddim", steps=10, device="cpu")
    augment = GenerativeAugment(generator, p=0.3, strength=(0.3, 0.6), seed=0)
    pipeline = v2.Compose(
        [
            # The added line. It comes first so that each real image, not a randomly
            # transformed copy, keys its variation: one per image and epoch.
            augment,
            v2.RandomAffine(degrees=10, translate=(0.1, 0.1)),
        ]
    )
    train = digits_splits(shots=10, seed=0).train
    loader = DataLoader(Transformed(train, pipeline), batch_size=25, shuffle=True, num_workers=2)
    images, labels = train.tensors
    for epoch in range(epochs):
        # Workers receive a fresh copy of the transform, with its epoch, at each pass.
        augment.set_epoch(epoch)
        seen = sum(len(batch) for batch, _ in loader)
        # Decisions are a pure function of (seed, epoch, label, image), so the main
        # process can count what the workers replaced without hearing back from them.
        replaced = int(augment.decisions(images, labels).sum())
        print(
            f"epoch {epoch}: {replaced} of {seen} training images replaced by generated variations"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "model",
        nargs="?",
        default=str(DIGITS_GENERATOR),
        help="folder of a class-conditional diffusers pipeline for the 10 digits",
    )
    args = parser.parse_args()
    if not Path(args.model).is_dir():
        parser.error(
            f"no model folder at {args.model}; make one with "
            "`gdaload train-generator --data digits --output FOLDER` and pass it"
        )
    main(args.model)
