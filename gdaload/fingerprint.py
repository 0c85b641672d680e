"""Content fingerprints: what keys caches, configs and content-derived seeds.

One definition for all of gdaload, so that a sample store, a latent cache, a selection
stage's config and a transform's seeds agree on when two tensors or two models are the
same: same dtype, shape and bytes.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = [
    "ModulesFingerprint",
    "content_hash",
    "module_fingerprint",
    "modules_fingerprint",
    "tensor_fingerprint",
    "tensors_fingerprint",
]

_MODULES: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], str]] = (
    weakref.WeakKeyDictionary()
)


def tensors_fingerprint(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 (32 hex digits) over names, dtypes, shapes and raw bytes of tensors."""
    digest = hashlib.sha256()
    for name, tensor in named:
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def tensor_fingerprint(tensor: torch.Tensor) -> str:
    """Fingerprint of one tensor: equal images get equal keys.

    Example:
        >>> tensor_fingerprint(torch.zeros(2)) == tensor_fingerprint(torch.zeros(2))
        True
    """
    return tensors_fingerprint([("", tensor)])


def content_hash(tensor: torch.Tensor) -> int:
    """:func:`tensor_fingerprint` as a non-negative integer, for seeds keyed by content."""
    return int(tensor_fingerprint(tensor), 16)


def module_fingerprint(module: nn.Module) -> str:
    """Fingerprint of a module's class and weights, recomputed only when they can change.

    In-place updates (optimizer steps, ``load_state_dict``) bump each tensor's version
    counter, so the cached value is reused exactly while no weight was touched.
    """
    state = module.state_dict(keep_vars=True)
    key = tuple((k, v.data_ptr(), v._version, tuple(v.shape)) for k, v in state.items())
    cached = _MODULES.get(module)
    if cached is None or cached[0] != key:
        named = [(f"{type(module).__qualname__}.{k}", v) for k, v in state.items()]
        cached = (key, tensors_fingerprint(named))
        _MODULES[module] = cached
    return cached[1]


def modules_fingerprint(modules: Iterable[tuple[str, nn.Module]]) -> str:
    """One fingerprint (16 hex digits) for named modules, e.g. a pipeline's components."""
    parts = "|".join(f"{name}:{module_fingerprint(module)}" for name, module in modules)
    return hashlib.sha256(parts.encode()).hexdigest()[:16]


class ModulesFingerprint:
    """:func:`modules_fingerprint` of one owner's modules, kept between calls.

    Hashing every weight is what makes a generator's config costly. This keeps the value
    and, on later calls, only checks that the same modules still hold the same tensors
    (storage pointer and version counter): about half a microsecond per tensor, a few
    tenths of a millisecond for a Stable Diffusion UNet. In-place updates (optimizer
    steps, ``load_state_dict``) and moves (``.to()``) are thus still seen; replacing a
    submodule or a ``Parameter`` object is not: call :meth:`clear` after such surgery.

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> fingerprint = ModulesFingerprint()
        >>> first = fingerprint([("layer", layer)])
        >>> first == fingerprint([("layer", layer)])
        True
        >>> with torch.no_grad():
        ...     _ = layer.weight.add_(1)
        >>> first == fingerprint([("layer", layer)])
        False
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._value: str | None = None
        self._modules: list[tuple[str, nn.Module]] = []
        self._tensors: list[torch.Tensor] = []
        self._stamp: list[tuple[int, int]] = []
        # Set by unpickling: the value holds for the modules it travelled with.
        self._trusted = False

    def __call__(self, named: Iterable[tuple[str, nn.Module]]) -> str:
        """The fingerprint of ``named`` (the same modules, in the same order, each call)."""
        modules = list(named)
        if self._value is not None and self._trusted:
            self._remember(modules)  # the value travelled with these modules
        elif self._value is None or not self._unchanged(modules):
            self._value = modules_fingerprint(modules)
            self._remember(modules)
        return self._value

    def clear(self) -> None:
        """Forget the value: the next call hashes every weight again."""
        self._reset()

    def _remember(self, modules: list[tuple[str, nn.Module]]) -> None:
        self._modules = modules
        self._tensors = [
            t for _, module in modules for t in module.state_dict(keep_vars=True).values()
        ]
        self._stamp = _stamp(self._tensors)
        self._trusted = False

    def _same_modules(self, modules: list[tuple[str, nn.Module]]) -> bool:
        return len(modules) == len(self._modules) and all(
            name == known_name and module is known
            for (name, module), (known_name, known) in zip(modules, self._modules, strict=True)
        )

    def _unchanged(self, modules: list[tuple[str, nn.Module]]) -> bool:
        return self._same_modules(modules) and _stamp(self._tensors) == self._stamp

    def __getstate__(self) -> dict[str, Any]:
        # Tensors travel with their modules; the value travels alone, and only while it
        # still describes them.
        valid = self._value is not None and (self._trusted or self._unchanged(self._modules))
        return {"value": self._value if valid else None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._reset()
        self._value = state["value"]
        self._trusted = self._value is not None


def _stamp(tensors: list[torch.Tensor]) -> list[tuple[int, int]]:
    return [(t.data_ptr(), t._version) for t in tensors]
