"""Content fingerprints: what keys caches, configs and content-derived seeds.

One definition for all of gdaload, so that a sample store, a latent cache, a selection
stage's config and a transform's seeds agree on when two tensors or two models are the
same: same dtype, shape and bytes.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterable

import torch
from torch import nn

__all__ = [
    "content_hash",
    "module_fingerprint",
    "modules_fingerprint",
    "tensor_fingerprint",
    "tensors_fingerprint",
]

_MODULES: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]] = weakref.WeakKeyDictionary()


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
