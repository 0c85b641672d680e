"""The epoch every copy of a dataset or transform sees, DataLoader workers included.

The epoch is a key of every per-epoch random stream. DataLoader workers hold copies of
the dataset and its transforms, and with ``persistent_workers=True`` those copies live
across epochs: a plain attribute set by ``set_epoch`` in the main process never reaches
them. A one-element tensor in shared memory does, whether workers are forked or spawned
(torch's multiprocessing pickler passes shared storage by handle).
"""

from __future__ import annotations

import numbers

import torch

__all__ = ["SharedEpoch"]


class SharedEpoch:
    """A non-negative epoch number shared with every copy made for DataLoader workers.

    Example:
        >>> epoch = SharedEpoch()
        >>> epoch.set(3)
        >>> epoch.get()
        3
    """

    def __init__(self, epoch: int = 0) -> None:
        self._value = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.set(epoch)

    def get(self) -> int:
        """The current epoch."""
        return int(self._value[0])

    def set(self, epoch: int) -> None:
        """Make ``epoch`` current here and in every worker's copy.

        Raises:
            ValueError: If ``epoch`` is not a non-negative integer.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"epoch must be >= 0 (a non-negative integer), got {epoch!r}")
        self._value[0] = int(epoch)
