"""An ordinary accelerate training loop with generated samples added in one line.

The DataLoader is prepared by accelerate as usual; GenerativeLoader wraps the prepared
loader, so batches carry synthetic samples beside the real ones (here 2 per real sample)
and a mask that GenMix uses to mix real with synthetic images.

Run: python examples/accelerate_loop.py
"""

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from gdaload import DiffusionGenerator, GenerativeLoader, GenMix
from gdaload.bench.assets import DIGITS_GENERATOR
from gdaload.bench.classifier import digits_cnn
from gdaload.datasets import digits_splits


def main() -> None:
    accelerator = Accelerator(cpu=True)
    splits = digits_splits(shots=10, seed=0)
    model = digits_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(splits.train, batch_size=20, shuffle=True)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    generator = DiffusionGenerator.from_pretrained(
        DIGITS_GENERATOR, sampler="dpm-solver++", steps=10, device=accelerator.device
    )
    loader = GenerativeLoader(
        loader, generator, ratio=2.0, seed=0, return_mask=True
    )  # the one line
    genmix = GenMix(num_classes=10, alpha=1.0, seed=0)

    for epoch in range(20):
        loader.set_epoch(epoch)
        genmix.enabled = epoch < 15  # train the last epochs on unmixed batches
        for x, y, synthetic in loader:
            x, soft_y = genmix(x, y, synthetic)
            loss = torch.sum(-soft_y * torch.log_softmax(model(x), dim=1), dim=1).mean()
            optimizer.zero_grad()
            accelerator.backward(loss)
            optimizer.step()
    model.eval()
    x, y = splits.test.tensors
    with torch.inference_mode():
        accuracy = (model(x.to(accelerator.device)).argmax(1).cpu() == y).float().mean()
    print(f"test accuracy {accuracy:.4f}; loader stats {loader.stats()}")


if __name__ == "__main__":
    main()
