"""ClassImageFolder: a user's image folder, with errors that name what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gdaload.datasets.folder import ClassImageFolder


def write_image(path: Path, size: tuple[int, int], value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def test_reads_classes_in_order_as_rgb_floats(tmp_path: Path) -> None:
    write_image(tmp_path / "dog" / "a.png", (4, 4), 255)
    write_image(tmp_path / "cat" / "a.png", (4, 4), 0)
    write_image(tmp_path / "cat" / "b.jpg", (4, 4), 0)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    data = ClassImageFolder(tmp_path)
    assert data.classes == ["cat", "dog"] and len(data) == 3 and data.targets == [0, 0, 1]
    image, label = data[2]
    assert label == 1 and image.shape == (3, 4, 4) and image.dtype == torch.float32
    assert torch.equal(image, torch.ones(3, 4, 4))


def test_mixed_sizes_are_an_error_naming_the_files_unless_resized(tmp_path: Path) -> None:
    write_image(tmp_path / "cat" / "small.png", (4, 4))
    write_image(tmp_path / "dog" / "wide.png", (12, 6))
    with pytest.raises(ValueError, match=r"4x4: cat/small.png; 12x6: dog/wide.png"):
        ClassImageFolder(tmp_path)
    data = ClassImageFolder(tmp_path, size=4)
    assert [tuple(data[i][0].shape) for i in range(2)] == [(3, 4, 4), (3, 4, 4)]


@pytest.mark.reliability
def test_a_class_folder_without_images_is_named(tmp_path: Path) -> None:
    write_image(tmp_path / "cat" / "a.png", (4, 4))
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "readme.txt").write_text("")
    with pytest.raises(ValueError, match=r"class folder .*dog holds no image"):
        ClassImageFolder(tmp_path)


def test_a_folder_without_class_folders_or_missing(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (4, 4))
    with pytest.raises(ValueError, match="no class sub-folders"):
        ClassImageFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ClassImageFolder(tmp_path / "missing")
    with pytest.raises(ValueError, match="positive integer"):
        ClassImageFolder(tmp_path, size=0)
