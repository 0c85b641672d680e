"""Which rows of a batch tensor are synthetic, remembered beside the tensor itself.

:class:`~gdaload.GenerativeLoader` marks every batch it yields with its synthetic mask,
and :class:`~gdaload.GenMix` called without a mask reads the mark, so that
``genmix(x, y)`` on a loader's batch mixes real with synthetic rows even when the loader
yields no mask. The two live in sibling layers that may not import each other, hence
this module below both.

A mark belongs to one tensor object: a tensor made from a marked one (``x.to(device)``,
``x.clone()``, ``x[idx]``) is a new object and carries no mark. The registry holds no
strong reference to a marked tensor and forgets it when the tensor is freed.
"""

from __future__ import annotations

import weakref

import torch

__all__ = ["mark_synthetic_rows", "synthetic_rows"]

# Keyed by id(): a WeakKeyDictionary would compare tensors with ==, which torch makes
# elementwise. Single dict operations are atomic, so readers in other threads need no
# lock; a lock would also risk a deadlock, as a callback may run (on a free) while its
# own thread holds it.
_marks: dict[int, tuple[weakref.ref[torch.Tensor], torch.Tensor]] = {}


def mark_synthetic_rows(tensor: torch.Tensor, mask: torch.Tensor) -> None:
    """Record ``mask`` (``(B,)`` bool, ``True`` = synthetic) as the rows of ``tensor``.

    Marking a tensor again replaces its mark. The mark is dropped when ``tensor`` is
    freed.

    Example:
        >>> x = torch.zeros(3, 1, 2, 2)
        >>> mark_synthetic_rows(x, torch.tensor([False, True, True]))
        >>> synthetic_rows(x).tolist()
        [False, True, True]
        >>> synthetic_rows(x.clone()) is None
        True
    """
    key = id(tensor)

    def forget(ref: weakref.ref[torch.Tensor]) -> None:
        # Only this tensor's entry: the id may already serve a newer, marked tensor.
        entry = _marks.get(key)
        if entry is not None and entry[0] is ref:
            _marks.pop(key, None)

    _marks[key] = (weakref.ref(tensor, forget), mask)


def synthetic_rows(tensor: torch.Tensor) -> torch.Tensor | None:
    """The mask :func:`mark_synthetic_rows` recorded for ``tensor``; ``None`` if unmarked.

    Example:
        >>> synthetic_rows(torch.zeros(2, 1, 2, 2)) is None
        True
    """
    entry = _marks.get(id(tensor))
    if entry is None or entry[0]() is not tensor:
        return None
    return entry[1]
