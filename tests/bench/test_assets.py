from pathlib import Path

import torch

from gdaload import DiffusionGenerator
from gdaload.bench.assets import DIGITS_GENERATOR, DIGITS_LCM, MULTIVIEW_GENERATOR


def test_shipped_digits_generator_loads() -> None:
    gen = DiffusionGenerator.from_pretrained(DIGITS_GENERATOR, steps=2, device="cpu")
    assert gen.num_classes == 10 and gen.image_shape == (1, 8, 8)
    assert gen.class_names == [str(d) for d in range(10)]


def test_shipped_multiview_generator_is_a_saved_model() -> None:
    assert (MULTIVIEW_GENERATOR / "unet").is_dir()


def test_shipped_distilled_digits_generator_samples_in_few_steps() -> None:
    gen = DiffusionGenerator.from_pretrained(DIGITS_LCM, device="cpu")
    assert (gen.sampler, gen.steps, gen.num_classes) == ("lcm", 4, 10)
    assert gen.distillation is not None
    assert gen.distillation.settings["teacher"] == DIGITS_GENERATOR.name
    assert not (DIGITS_LCM / "checkpoints").exists()


def test_shipped_mask_generator_draws_strokes_where_the_mask_says() -> None:
    from gdaload import MaskDiffusion
    from gdaload.bench.assets import DIGITS_MASK_GENERATOR
    from gdaload.datasets.segmentation import digit_segmentation_splits, stroke_masks

    _, masks, labels = digit_segmentation_splits().test[:20]
    gen = MaskDiffusion.from_pretrained(DIGITS_MASK_GENERATOR, steps=10, device="cpu")
    images = gen.generate(labels, list(range(20)), mask=masks)
    # The conditioning mask and the stroke of the generated image agree pixel by pixel
    # (0.99 over 200 test masks with 20 steps); a shuffled mask agrees on about 0.6.
    assert (stroke_masks(images, labels) == masks).float().mean() > 0.9


def test_shipped_joint_generator_makes_masks_that_describe_its_images() -> None:
    from gdaload import JointDiffusion
    from gdaload.bench.assets import DIGITS_JOINT_GENERATOR
    from gdaload.datasets.segmentation import stroke_masks

    gen = JointDiffusion.from_pretrained(DIGITS_JOINT_GENERATOR, steps=10, device="cpu")
    labels = torch.arange(20) % 10
    images, masks = gen.generate_pairs(labels, list(range(20)))
    for mask, label in zip(masks, labels, strict=True):
        assert set(mask.unique().tolist()) <= {0, int(label) + 1}
    # 0.87 over 200 pairs with 20 steps: the joint model is the weaker of the two.
    assert (stroke_masks(images, labels) == masks).float().mean() > 0.75


def test_shipped_text_to_image_stand_in_is_a_stable_diffusion_folder() -> None:
    from gdaload.bench.assets import DIGITS_TEXT2IMAGE
    from gdaload.generators.adapter import check_text_pipeline_folder

    assert check_text_pipeline_folder(DIGITS_TEXT2IMAGE) == DIGITS_TEXT2IMAGE
    assert not (DIGITS_TEXT2IMAGE / "checkpoints").exists()
    from gdaload.datasets.digits import digits_splits, digits_subset

    gen = DiffusionGenerator.from_pretrained(
        DIGITS_TEXT2IMAGE, steps=10, guidance_scale=3.0, device="cpu"
    )
    assert gen.class_names == ["zero", "one", "two", "three", "four"]
    assert gen.prompts[3] == ["a photo of a three"]
    # It draws the digits it was trained on: nearest class mean of the real test images
    # (which sorts 95% of those test images right) sorts 50 of 50 generated ones right.
    x, y = digits_subset(digits_splits().test, [0, 1, 2, 3, 4]).tensors
    means = torch.stack([x[y == c].mean(0) for c in range(5)]).flatten(1)
    labels = torch.arange(50) % 5
    images = gen.generate(labels, list(range(50)))
    assert images.shape == (50, 3, 8, 8)
    nearest = torch.cdist(images.mean(1).flatten(1), means).argmin(1)
    assert (nearest == labels).float().mean() > 0.9


def test_the_stand_in_adapts_to_digits_it_never_saw_from_an_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    from gdaload.bench.assets import DIGITS_TEXT2IMAGE
    from gdaload.cli import main
    from gdaload.datasets.digits import digits_splits, digits_subset

    # Two shots of the digits 5 and 6 as 8-bit PNG files, one folder per class.
    x, y = digits_subset(digits_splits(shots=2).train, [5, 6]).tensors
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        folder = tmp_path / "images" / ["five", "six"][int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image[0] * 255).round().byte().numpy()).save(folder / f"{i}.png")
    out = tmp_path / "tokens"
    options = ["--steps", "2", "--batch-size", "2", "--lr", "0.05", "--cpu", "--no-progress"]
    main(["adapt", "--pipeline", str(DIGITS_TEXT2IMAGE), "--images", str(tmp_path / "images"),
          "--out", str(out), *options])  # fmt: skip
    gen = DiffusionGenerator.from_pretrained(DIGITS_TEXT2IMAGE, adapter=out, steps=2, device="cpu")
    assert gen.class_names == ["five", "six"]
    assert gen.prompts == [["a photo of a <five>"], ["a photo of a <six>"]]
    assert gen.generate([0, 1], [0, 1]).shape == (2, 3, 8, 8)
