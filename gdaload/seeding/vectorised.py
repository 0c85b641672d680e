"""Many seeds of the seed plan at once.

:func:`gdaload.seeding.derive_seed` builds one ``numpy.random.SeedSequence`` per key,
about 20 microseconds each: more than reading a stored 32x32 sample. When samples come
from a warm store, the seeds of a batch would cost more than the samples themselves.
:func:`derive_seeds` runs the same SeedSequence mixing on arrays of keys (NumPy's
SeedSequence algorithm is stable by design, for reproducibility), and
:func:`plan_seeds` cross-checks it against the scalar path on every call, falling back
to the scalar path should they ever disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from gdaload.seeding.plan import SeedPlan
from gdaload.seeding.streams import Stream

__all__ = ["derive_seeds", "plan_seeds"]

logger = logging.getLogger(__name__)

_M32 = np.uint64(0xFFFFFFFF)
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_POOL = 4


def _words(value: int) -> list[int]:
    """An integer as 32-bit words, lowest first (zero is one word)."""
    words = [value & 0xFFFFFFFF]
    value >>= 32
    while value:
        words.append(value & 0xFFFFFFFF)
        value >>= 32
    return words


class _Hasher:
    """The running multiplier of SeedSequence's hash: the same for every key, since it
    only depends on how many words were hashed before."""

    def __init__(self, init: int, mult: int) -> None:
        self.const, self.mult = init, mult

    def __call__(self, value: np.ndarray) -> np.ndarray:
        value = value ^ np.uint64(self.const)
        self.const = (self.const * self.mult) & 0xFFFFFFFF
        value = (value * np.uint64(self.const)) & _M32
        return value ^ (value >> np.uint64(16))


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result = (((np.uint64(_MIX_L) * x) & _M32) - ((np.uint64(_MIX_R) * y) & _M32)) & _M32
    return result ^ (result >> np.uint64(16))


def _derive_same_width(prefix: list[int], last: np.ndarray, width: int) -> np.ndarray:
    entropy = [np.full(len(last), w, dtype=np.uint64) for w in prefix]
    entropy += [(last >> np.uint64(32 * i)) & _M32 for i in range(width)]
    hashmix = _Hasher(_INIT_A, _MULT_A)
    zeros = np.zeros(len(last), dtype=np.uint64)
    pool = [hashmix(entropy[i] if i < len(entropy) else zeros) for i in range(_POOL)]
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                pool[dst] = _mix(pool[dst], hashmix(pool[src]))
    for src in range(_POOL, len(entropy)):
        for dst in range(_POOL):
            pool[dst] = _mix(pool[dst], hashmix(entropy[src]))
    out = _Hasher(_INIT_B, _MULT_B)
    first, second = out(pool[0]), out(pool[1])
    return (first << np.uint64(31)) ^ second


def derive_seeds(prefix: Sequence[int], last: Sequence[int] | np.ndarray) -> np.ndarray:
    """``derive_seed(*prefix, k)`` for every ``k`` in ``last``, as a ``uint64`` array.

    Example:
        >>> from gdaload.seeding import derive_seed
        >>> int(derive_seeds([0, 1], [7])[0]) == derive_seed(0, 1, 7)
        True
    """
    last = np.asarray(last, dtype=np.uint64)
    if any(int(k) < 0 for k in prefix):
        raise ValueError(f"seed keys must be non-negative integers, got {tuple(prefix)}")
    words = [w for key in prefix for w in _words(int(key))]
    out = np.empty(len(last), dtype=np.uint64)
    width = np.where(last >> np.uint64(32) > 0, 2, 1)
    for w in (1, 2):
        rows = np.flatnonzero(width == w)
        if len(rows):
            out[rows] = _derive_same_width(words, last[rows], w)
    return out


def plan_seeds(plan: SeedPlan, epoch: int, indices: Sequence[int] | np.ndarray) -> list[int]:
    """``[plan.sample_seed(epoch, j) for j in indices]``, computed on arrays."""
    indices = np.asarray(indices, dtype=np.int64)
    if not len(indices):
        return []
    if int(indices.min()) < 0:
        raise ValueError(f"synthetic indices must be >= 0, got {int(indices.min())}")
    seeds = derive_seeds([plan.seed, Stream.PLAN_SAMPLE, epoch], indices).tolist()
    if seeds[0] != plan.sample_seed(epoch, int(indices[0])):
        logger.warning("vectorised seeds disagree with SeedPlan; using the scalar path")
        return [plan.sample_seed(epoch, int(j)) for j in indices]
    return seeds
