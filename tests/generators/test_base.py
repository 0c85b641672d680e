import pytest
import torch
from checkers import SeedImageGenerator

from gdaload.generators.base import GeneratedOutputError, as_labels, as_seeds, check_generated


def test_check_generated_accepts_contract_output() -> None:
    images = torch.rand(2, 1, 4, 4)
    assert check_generated(images, 2, (1, 4, 4)) is images


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.rand(3, 1, 4, 4), "expected \\(2, 1, 4, 4\\)"),
        (torch.rand(2, 1, 5, 4), "expected \\(2, 1, 4, 4\\)"),
        (torch.rand(2, 16), "one \\(C, H, W\\) image"),
        (torch.randint(0, 255, (2, 1, 4, 4), dtype=torch.uint8), "float"),
        (torch.full((2, 1, 4, 4), float("nan")), "NaN or Inf values in samples \\[0, 1\\]"),
        (torch.rand(2, 1, 4, 4) * 2 - 1, "expected \\[0, 1\\]"),
        ([[0.0]], "must return a torch.Tensor"),
    ],
)
def test_check_generated_rejects_broken_output(images, match: str) -> None:
    with pytest.raises(GeneratedOutputError, match=match):
        check_generated(images, 2, (1, 4, 4))


@pytest.mark.reliability
def test_check_generated_rejects_images_on_another_device() -> None:
    images = torch.rand(2, 1, 4, 4)
    assert check_generated(images, 2, (1, 4, 4), device="cpu") is images
    with pytest.raises(
        GeneratedOutputError, match="images on cpu, but its device property says meta"
    ):
        check_generated(images, 2, (1, 4, 4), device="meta")


@pytest.mark.reliability
def test_loader_reports_a_generator_that_returns_another_device() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from gdaload import GenerativeLoader

    class Misplaced(SeedImageGenerator):
        @property
        def device(self) -> torch.device:
            return torch.device("meta")

    real = DataLoader(TensorDataset(torch.zeros(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])), 2)
    with pytest.raises(GeneratedOutputError, match="Misplaced.generate returned images on cpu"):
        next(iter(GenerativeLoader(real, Misplaced(), ratio=1.0)))


@pytest.mark.reliability
def test_as_labels_errors_say_how_to_fix() -> None:
    with pytest.raises(ValueError, match="outside the generator's classes 0..2"):
        as_labels([0, 3], 3)
    with pytest.raises(ValueError, match="argmax"):
        as_labels(torch.tensor([0.5, 0.5]), 3)
    with pytest.raises(ValueError, match="shape \\(B,\\)"):
        as_labels(torch.zeros(2, 2, dtype=torch.long), 3)
    assert as_labels(torch.tensor(2), 3).tolist() == [2]


@pytest.mark.reliability
def test_as_seeds_validates_count_and_range() -> None:
    assert as_seeds(torch.tensor([1, 2]), 2) == [1, 2]
    with pytest.raises(ValueError, match="one seed per label"):
        as_seeds([1], 2)
    with pytest.raises(ValueError, match="\\[0, 2\\*\\*63\\)"):
        as_seeds([-1], 1)


def test_config_hash_follows_config() -> None:
    a, b = SeedImageGenerator(3), SeedImageGenerator(4)
    assert a.config_hash() == SeedImageGenerator(3).config_hash() != b.config_hash()
