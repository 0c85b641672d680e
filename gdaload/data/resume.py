"""Resuming a wrapper mid-epoch: the saved position, the state format, and skipping.

A :class:`~gdaload.GenerativeLoader` state holds where the loop is in the epoch (batches,
real samples and synthetic positions served) and, when the wrapped loader keeps its own
state (torchdata's ``StatefulDataLoader``), that state too. Restoring it serves the exact
remaining stream: synthetic positions continue from the saved one, and the real batches
continue from the wrapped loader's restored state, or, for a loader without state, from
the same order with the consumed batches skipped.

States are versioned. Version 1 (``{"epoch", "seed"}``, written before positions were
saved) still loads, as the start of its epoch; version 2 (before the ``feedback`` class
policy's history was saved) loads with no feedback history, and version 3 (before hard
examples were saved) with no hard examples.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = [
    "STATE_VERSION",
    "LoaderPosition",
    "check_state",
    "is_stateful",
    "skip_batches",
]

#: Version of the state the wrappers write; :func:`check_state` reads 1 to 4.
STATE_VERSION = 4

_V1_KEYS = {"epoch", "seed"}


@dataclass(frozen=True)
class LoaderPosition:
    """How far a loop got into an epoch: what resuming must not serve again.

    Attributes:
        epoch: The epoch being served.
        batches: Batches yielded so far in it.
        real: Real samples in those batches.
        synthetic: Synthetic positions served (the next one is ``synthetic``).

    Example:
        >>> position = LoaderPosition(epoch=2, batches=3, real=96, synthetic=48)
        >>> LoaderPosition.from_dict(position.as_dict(), epoch=2) == position
        True
    """

    epoch: int
    batches: int = 0
    real: int = 0
    synthetic: int = 0

    @property
    def started(self) -> bool:
        """Whether anything of the epoch was served."""
        return self.batches > 0

    def as_dict(self) -> dict[str, int]:
        """The counts, without the epoch (the state stores that once, beside the seed)."""
        out = asdict(self)
        del out["epoch"]
        return out

    @classmethod
    def from_dict(cls, counts: Mapping[str, Any], epoch: int) -> LoaderPosition:
        """Read :meth:`as_dict` back, checking every count.

        Raises:
            ValueError: On a missing, extra, non-integer or negative count.
        """
        expected = {"batches", "real", "synthetic"}
        if not isinstance(counts, Mapping) or set(counts) != expected:
            found = sorted(counts) if isinstance(counts, Mapping) else type(counts).__name__
            raise ValueError(
                f"the state's position must hold exactly {sorted(expected)}, got {found}; "
                "pass a dict made by state_dict()"
            )
        values = {}
        for key in sorted(expected):
            value = counts[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"the state's position {key}={value!r} must be an integer >= 0")
            values[key] = value
        return cls(epoch, **values)


def check_state(state: Any, kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a saved state of wrapper ``kind`` and return it as the current version.

    Args:
        state: What ``state_dict()`` returned (possibly read back from JSON).
        kind: The class restoring it, e.g. ``"GenerativeLoader"``.
        settings: This wrapper's plan settings (ratio, class policy). A state saved
            mid-epoch must have been saved under the same ones: its position counts
            synthetic samples of that plan.

    Raises:
        TypeError: If ``state`` is not a mapping.
        ValueError: On an unknown version, another wrapper's state, or a mid-epoch state
            saved under other plan settings; the message says what differs.
    """
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{kind}.load_state_dict expects the dict made by state_dict(), got "
            f"{type(state).__name__}"
        )
    state = dict(state)
    version = state.get("version", 1 if set(state) == _V1_KEYS else None)
    if version == 1 and set(state) <= _V1_KEYS | {"version"}:
        return {**state, "version": STATE_VERSION, "kind": kind}
    if version in (2, 3):
        state = {"feedback": [], **state, "version": STATE_VERSION, "hard_examples": []}
    elif version != STATE_VERSION:
        raise ValueError(
            f"cannot read a {kind} state of version {version!r} (keys {sorted(state)}); this "
            f"gdaload reads versions 1 to {STATE_VERSION}. Save it again with this version, "
            "or load it with the gdaload version that wrote it"
        )
    if state.get("kind") != kind:
        raise ValueError(
            f"this state was saved by {state.get('kind')!r}, not by {kind}; load each "
            "wrapper's state_dict() into the same kind of wrapper"
        )
    for key in ("epoch", "seed"):
        if key not in state:
            raise ValueError(f"the {kind} state has no {key!r}; pass a dict made by state_dict()")
    position = state.get("position")
    if position is not None and LoaderPosition.from_dict(position, state["epoch"]).started:
        differ = {
            key: (state.get(key), value)
            for key, value in settings.items()
            if state.get(key) != value
        }
        if differ:
            saved = ", ".join(f"{key}={old!r}" for key, (old, _) in differ.items())
            now = ", ".join(f"{key}={new!r}" for key, (_, new) in differ.items())
            raise ValueError(
                f"this state was saved mid-epoch with {saved} but this {kind} has {now}: "
                "its position counts samples of another plan. Build the wrapper with the "
                "saved settings, or resume from a state saved at an epoch boundary"
            )
    return state


def is_stateful(loader: Any) -> bool:
    """Whether ``loader`` saves and restores its own position (e.g. a
    ``torchdata.stateful_dataloader.StatefulDataLoader``)."""
    if getattr(loader, "use_stateful_dataloader", True) is False:
        # accelerate's prepared loaders have both methods whether or not the loader
        # they wrap can keep a state; this flag says which.
        return False
    return callable(getattr(loader, "state_dict", None)) and callable(
        getattr(loader, "load_state_dict", None)
    )


def skip_batches(
    loader: Iterable[Any], position: LoaderPosition, count: Callable[[Any], int]
) -> Iterator[Any]:
    """The batches of one pass over ``loader`` after its first ``position.batches``.

    A ``DataLoader`` over a map-style dataset skips at the sampler (accelerate's
    ``skip_first_batches``): the skipped samples are not loaded. Anything else is
    iterated and the skipped batches are dropped; their real samples are counted, so a
    loader that changed since the state was saved is reported instead of misaligning the
    synthetic stream.

    Either way the batches that follow are those of the saved run only if the loader
    repeats its order: ``shuffle=False``, a sampler seeded per epoch
    (``DistributedSampler`` with ``set_epoch``), or a ``StatefulDataLoader`` (whose own
    state is restored instead of skipping).

    Args:
        loader: The wrapped loader.
        position: Where the saved run was.
        count: Real samples in a batch (it also checks the batch's form).

    Raises:
        ValueError: If the skipped batches hold another number of real samples than the
            position, or the loader has fewer batches than were consumed.
    """
    if position.batches == 0:
        return iter(loader)
    if isinstance(loader, torch.utils.data.DataLoader) and not isinstance(
        loader.dataset, torch.utils.data.IterableDataset
    ):
        from accelerate import skip_first_batches  # only a resumed run pays the import

        return iter(skip_first_batches(loader, position.batches))
    return _drop_counted(iter(loader), position, count)


def _drop_counted(
    batches: Iterator[Any], position: LoaderPosition, count: Callable[[Any], int]
) -> Iterator[Any]:
    skipped = [count(batch) for batch in itertools.islice(batches, position.batches)]
    real = sum(skipped)
    if len(skipped) < position.batches or real != position.real:
        raise ValueError(
            f"the saved position is {position.batches} batches ({position.real} real "
            f"samples) into epoch {position.epoch}, but the wrapped loader's first batches "
            f"are {len(skipped)} holding {real} real samples; the wrapped loader changed "
            "since the state was saved (batch size, dataset, drop_last?). Rebuild it as it "
            "was, or resume from a state saved at an epoch boundary"
        )
    return batches
