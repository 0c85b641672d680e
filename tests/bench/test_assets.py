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
