"""A user's labelled images: one sub-folder per class, read as RGB tensors.

This is the input of ``gdaload adapt``. Unlike torchvision's ``ImageFolder``, a problem
is reported before training starts and names the folder or the files at fault: a class
folder without images, or images of different sizes when no common size was asked for.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

__all__ = ["IMAGE_SUFFIXES", "ClassImageFolder"]

#: File endings read as images (compared in lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class ClassImageFolder(Dataset[tuple[torch.Tensor, int]]):
    """``(image (3, H, W) float in [0, 1], label)`` pairs from ``root/<class>/<image>``.

    Classes are the sub-folders of ``root`` in sorted order; their names are
    :attr:`classes`. Images are converted to RGB.

    Args:
        root: The folder holding one sub-folder per class.
        size: Side of the square every image is resized (shorter side) and
            center-cropped to. None keeps the images as they are, which requires them to
            share one size.

    Raises:
        FileNotFoundError: If ``root`` is not a folder.
        ValueError: If ``root`` has no class sub-folder, a class folder holds no image,
            or (with ``size=None``) the images differ in size; the message names the
            folder or the files.

    Example:
        >>> data = ClassImageFolder("my-images", size=512)  # doctest: +SKIP
        >>> data.classes, data[0][0].shape  # doctest: +SKIP
        (['cat', 'dog'], torch.Size([3, 512, 512]))
    """

    def __init__(self, root: str | os.PathLike[str], size: int | None = None) -> None:
        from PIL import Image

        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        if size is not None and int(size) < 1:
            raise ValueError(f"size must be a positive integer, got {size}")
        self.size = None if size is None else int(size)
        folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        if not folders:
            raise ValueError(
                f"{self.root} has no class sub-folders; put each class's images in a "
                "sub-folder named after the class (root/cat/1.jpg, root/dog/1.jpg, ...)"
            )
        self.classes = [p.name for p in folders]
        self.samples: list[tuple[Path, int]] = []
        for label, folder in enumerate(folders):
            files = sorted(
                p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                raise ValueError(
                    f"class folder {folder} holds no image (looked for {', '.join(IMAGE_SUFFIXES)})"
                )
            self.samples += [(path, label) for path in files]
        if self.size is None:
            sizes: dict[tuple[int, int], list[Path]] = {}
            for path, _ in self.samples:
                with Image.open(path) as image:  # reads the header only
                    sizes.setdefault(image.size, []).append(path)
            if len(sizes) > 1:
                found = "; ".join(
                    f"{w}x{h}: {', '.join(str(p.relative_to(self.root)) for p in paths[:3])}"
                    + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
                    for (w, h), paths in sorted(sizes.items())
                )
                raise ValueError(
                    f"the images in {self.root} have different sizes ({found}); pass a "
                    "size to resize and center-crop them all"
                )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image
        from torchvision.transforms import v2

        path, label = self.samples[index]
        with Image.open(path) as image:
            tensor = v2.functional.pil_to_tensor(image.convert("RGB"))
        if self.size is not None:
            tensor = v2.functional.resize(tensor, [self.size], antialias=True)
            tensor = v2.functional.center_crop(tensor, [self.size, self.size])
        return tensor.float() / 255, label

    @property
    def targets(self) -> list[int]:
        """The label of every item, in order (read without opening an image), under
        torchvision's name for it."""
        return [label for _, label in self.samples]
