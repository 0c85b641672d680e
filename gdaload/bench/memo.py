"""A generator wrapper that remembers its images, so that arms share generated samples."""

from __future__ import annotations

from typing import Any

import torch

from gdaload.generators.base import Generator

__all__ = ["MemoGenerator"]


class MemoGenerator(Generator):
    """Keep every image a generator makes, keyed by ``(label, seed)``.

    Arms that request the same ``(label, seed)`` (the same seed plan at several ratios
    and with several batch transforms, or several selection stages over the same
    candidates) get the cached image instead of a second generation. Images are kept in
    memory for the wrapper's lifetime.

    Args:
        inner: The generator to cache.

    Example:
        >>> memo = MemoGenerator(generator)  # doctest: +SKIP
        >>> a = memo.generate([3], [7]); b = memo.generate([3], [7])  # doctest: +SKIP
        >>> memo.generated, torch.equal(a, b)  # doctest: +SKIP
        (1, True)
    """

    def __init__(self, inner: Generator) -> None:
        self.inner, self.num_classes, self.image_shape = inner, inner.num_classes, inner.image_shape
        self.cache: dict[tuple[int, int], torch.Tensor] = {}
        #: Images actually generated (cache misses).
        self.generated = 0

    def generate(self, labels: Any, seeds: Any) -> torch.Tensor:
        """The images of ``labels`` under ``seeds``, generating only the pairs not seen yet.

        Args:
            labels: One class index per image (a sequence or a tensor).
            seeds: One seed per image.

        Returns:
            ``(N, C, H, W)`` images, in the order of ``labels``.
        """
        keys = list(zip(torch.as_tensor(labels).tolist(), [int(s) for s in seeds], strict=True))
        missing = [k for k in dict.fromkeys(keys) if k not in self.cache]
        if missing:
            images = self.inner.generate([k[0] for k in missing], [k[1] for k in missing])
            self.cache.update(zip(missing, images, strict=True))
            self.generated += len(missing)
        if not keys:
            return torch.empty(0, *self.image_shape, device=self.device)
        return torch.stack([self.cache[k] for k in keys])

    @property
    def device(self) -> torch.device:
        """The inner generator's device."""
        return self.inner.device

    @property
    def config(self) -> dict[str, Any]:
        """The inner generator's config: the cache does not change what is generated."""
        return self.inner.config
