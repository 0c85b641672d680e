"""Few-shot segmentation of digit strokes: a tiny U-Net on real pairs vs with generated pairs.

Task: the digits' stroke masks (`digit_segmentation_splits`, 11 labels: background and
the stroke of each digit), 5 labelled (image, mask) pairs per class. Three arms per
seed, trained the same way and scored on the same held-out pairs:

* ``real``: the 50 real pairs only (what a user without a generator runs);
* ``mask``: plus pairs from the shipped mask-conditioned generator, each image made
  from one of the real training masks (`BankedPairs` over a `MaskBank` of them);
* ``joint``: plus pairs from the shipped joint generator (new images and new masks).

Each arm is scored by the IoU and Dice of each label over all test pixels and their
means over labels; gains over ``real`` are paired by seed (Student t, 95%). Settings
are fixed in the constants below. Writes benchmarks/results/segmentation.json.

Run: OMP_NUM_THREADS=1 python benchmarks/segmentation.py
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gdaload import JointDiffusion, MaskBank, MaskDiffusion
from gdaload.bench.assets import DIGITS_JOINT_GENERATOR, DIGITS_MASK_GENERATOR
from gdaload.bench.stats import mean_ci, paired_gain
from gdaload.datasets.segmentation import MASK_CLASSES, digit_segmentation_splits
from gdaload.generators.masks import BankedPairs

SHOTS = 5  # real pairs per class
SYNTHETIC_PER_REAL = 4  # generated pairs per real pair (m_G / m_S)
GENERATOR_STEPS = 20  # DDIM steps of both generators
TRAIN_STEPS = 600
BATCH_SIZE = 32
LR = 3e-3
K = len(MASK_CLASSES)


class TinyUNet(nn.Module):
    """Two levels (8x8 and 4x4), one skip connection, per-pixel logits over the labels."""

    def __init__(self, classes: int = K, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(),
            )  # fmt: skip

        self.enc = block(1, width)
        self.mid = block(width, 2 * width)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec = block(2 * width, width)
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.enc(x)
        m = self.mid(F.max_pool2d(e, 2))
        return self.head(self.dec(torch.cat([self.up(m), e], 1)))


def train_and_score(
    images: torch.Tensor, masks: torch.Tensor, test: tuple[torch.Tensor, torch.Tensor], seed: int
) -> dict:
    """Train a TinyUNet on the pairs (same init and batch order per seed) and score it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TinyUNet()
    draws = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    for _ in range(TRAIN_STEPS):
        idx = torch.randint(0, len(images), (BATCH_SIZE,), generator=draws)
        loss = F.cross_entropy(net(images[idx] * 2 - 1), masks[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = net(test[0] * 2 - 1).argmax(1)
    truth = test[1]
    iou, dice = [], []
    for c in range(K):
        p, t = pred == c, truth == c
        tp, fp, fn = (p & t).sum().item(), (p & ~t).sum().item(), (~p & t).sum().item()
        iou.append(tp / max(tp + fp + fn, 1))
        dice.append(2 * tp / max(2 * tp + fp + fn, 1))
    return {"iou": iou, "dice": dice, "miou": sum(iou) / K, "mdice": sum(dice) / K}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/segmentation.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mask_gen = MaskDiffusion.from_pretrained(
        DIGITS_MASK_GENERATOR, steps=GENERATOR_STEPS, device="cpu"
    )
    joint_gen = JointDiffusion.from_pretrained(
        DIGITS_JOINT_GENERATOR, steps=GENERATOR_STEPS, device="cpu"
    )
    runs: dict[str, list[dict]] = {"real": [], "mask": [], "joint": []}
    seconds: dict[str, float] = {"generate_mask": 0.0, "generate_joint": 0.0, "train": 0.0}
    for seed in range(args.seeds):
        splits = digit_segmentation_splits(shots=SHOTS, seed=seed)
        images, masks, labels = splits.train.tensors
        test = splits.test.tensors[:2]
        n = len(labels) * SYNTHETIC_PER_REAL
        syn_labels = labels.repeat(SYNTHETIC_PER_REAL)
        syn_seeds = [1_000_000 * (seed + 1) + i for i in range(n)]
        start = time.perf_counter()
        banked = BankedPairs(mask_gen, MaskBank(masks, labels, num_mask_classes=K))
        mask_images, mask_masks = banked.generate_pairs(syn_labels, syn_seeds)
        seconds["generate_mask"] += time.perf_counter() - start
        start = time.perf_counter()
        joint_images, joint_masks = joint_gen.generate_pairs(syn_labels, syn_seeds)
        seconds["generate_joint"] += time.perf_counter() - start
        arms = {
            "real": (images, masks),
            "mask": (torch.cat([images, mask_images]), torch.cat([masks, mask_masks])),
            "joint": (torch.cat([images, joint_images]), torch.cat([masks, joint_masks])),
        }
        start = time.perf_counter()
        for name, (x, m) in arms.items():
            runs[name].append(train_and_score(x, m, test, seed))
        seconds["train"] += time.perf_counter() - start
        print(seed, {k: round(v[-1]["miou"], 4) for k, v in runs.items()}, flush=True)
    summary: dict[str, dict] = {}
    for name, rs in runs.items():
        entry: dict = {}
        for metric in ("miou", "mdice"):
            values = [r[metric] for r in rs]
            entry[metric] = dict(zip(("mean", "ci95"), mean_ci(values), strict=True))
            if name != "real":
                base = [r[metric] for r in runs["real"]]
                entry[f"{metric}_gain"] = dict(
                    zip(("mean", "ci95"), paired_gain(values, base), strict=True)
                )
        for metric in ("iou", "dice"):
            entry[f"{metric}_per_class"] = {
                MASK_CLASSES[c]: mean_ci([r[metric][c] for r in rs])[0] for c in range(K)
            }
        summary[name] = entry
    result = {
        "settings": {
            "shots": SHOTS,
            "synthetic_per_real": SYNTHETIC_PER_REAL,
            "generator_steps": GENERATOR_STEPS,
            "train_steps": TRAIN_STEPS,
            "batch_size": BATCH_SIZE,
            "lr": LR,
            "seeds": args.seeds,
        },  # fmt: skip
        "platform": {"python": platform.python_version(), "torch": torch.__version__},
        "seconds": seconds,
        "summary": summary,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, entry in summary.items():
        line = f"{name:6s} mIoU {entry['miou']['mean']:.4f} ± {entry['miou']['ci95']:.4f}"
        if "miou_gain" in entry:
            g = entry["miou_gain"]
            line += f"  gain {g['mean']:+.4f} ± {g['ci95']:.4f}"
        print(line)


if __name__ == "__main__":
    main()
