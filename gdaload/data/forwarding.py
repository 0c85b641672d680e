"""The attributes of a wrapped loader that :class:`~gdaload.GenerativeLoader` passes on.

Training loops, samplers and ``accelerate`` read a few attributes of the loader they
iterate; a wrapper passes exactly those on, by name, and points anything else to the
wrapped loader itself instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sized
from typing import Any, NoReturn, cast

__all__ = ["FORWARDED", "LoaderAttributes"]

#: Attributes of the wrapped loader readable on the wrapper (``len()`` works too).
FORWARDED = ("dataset", "batch_size", "sampler", "batch_sampler", "num_workers", "drop_last")


class LoaderAttributes:
    """Pass :data:`FORWARDED` attributes and ``len()`` on to ``self.loader``.

    Reading any other attribute the wrapper lacks raises an :class:`AttributeError`
    that names ``wrapper.loader.<name>``, the way to reach it.

    Example:
        >>> class Wrapper(LoaderAttributes):
        ...     def __init__(self, loader):
        ...         self.loader = loader
        >>> from torch.utils.data import DataLoader
        >>> wrapper = Wrapper(DataLoader(range(10), batch_size=4))
        >>> wrapper.batch_size, len(wrapper)
        (4, 3)
        >>> wrapper.pin_memory  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        AttributeError: ... (use .loader.pin_memory for the wrapped loader's)
    """

    loader: Iterable[Any]

    def _forward(self, name: str) -> Any:
        return getattr(self.loader, name)

    @property
    def dataset(self) -> Any:
        """The wrapped loader's ``dataset``."""
        return self._forward("dataset")

    @property
    def batch_size(self) -> int | None:
        """The wrapped loader's ``batch_size`` (real samples per batch)."""
        return self._forward("batch_size")

    @property
    def sampler(self) -> Any:
        """The wrapped loader's ``sampler``."""
        return self._forward("sampler")

    @property
    def batch_sampler(self) -> Any:
        """The wrapped loader's ``batch_sampler``."""
        return self._forward("batch_sampler")

    @property
    def num_workers(self) -> int:
        """The wrapped loader's ``num_workers``."""
        return self._forward("num_workers")

    @property
    def drop_last(self) -> bool:
        """The wrapped loader's ``drop_last``."""
        return self._forward("drop_last")

    def __len__(self) -> int:
        """Batches per epoch: those of the wrapped loader."""
        # A loader without len() raises TypeError here, as len() of it would.
        return len(cast(Sized, self.loader))

    def __getattr__(self, name: str) -> NoReturn:
        # Only reached when normal lookup fails, including when a property above finds
        # nothing on the wrapped loader. Never touch instance attributes here: during
        # unpickling they do not exist yet.
        owner = type(self).__name__
        if name.startswith("_"):
            raise AttributeError(f"{owner!r} object has no attribute {name!r}")
        loader = self.__dict__.get("loader")
        if name in FORWARDED:
            raise AttributeError(
                f"{owner}.{name} is the wrapped loader's {name}, but the wrapped "
                f"{type(loader).__name__} has no attribute {name!r}"
            )
        forwarded = ", ".join(FORWARDED[:-1]) + f" and {FORWARDED[-1]}"
        raise AttributeError(
            f"{owner!r} object has no attribute {name!r}; it passes on only {forwarded} of "
            f"the loader it wraps (use .loader.{name} for the wrapped loader's)"
        )
