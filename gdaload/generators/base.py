"""The generator contract: images as a pure function of (model, config, label, seed).

Every consumer in gdaload (datasets, loaders, transforms, selection stages) talks to
generators through :class:`Generator`, and checks what comes back with
:func:`check_generated`, so a user-written generator that returns the wrong shape,
range or dtype fails loudly at the first batch instead of silently training on junk.
"""

from __future__ import annotations

import abc
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["Generator", "GeneratedOutputError", "as_labels", "as_seeds", "check_generated"]

#: Seeds are drawn below this bound so that they fit a ``torch.Generator`` (uint64) and
#: stay exact when stored as JSON numbers.
SEED_BOUND = 2**63


class GeneratedOutputError(RuntimeError):
    """A generator returned a batch that breaks the :class:`Generator` contract."""


class Generator(abc.ABC):
    """Base class of everything that makes synthetic training images.

    A generator maps one ``(label, seed)`` pair to one image. ``generate`` takes a batch
    of pairs; the image made for a pair must not depend on the other pairs in the batch
    (up to floating-point differences of batched kernels), on timing or on any global
    random state. That property is what lets gdaload cache, resume and distribute
    generation.

    Output contract of :meth:`generate`: a floating-point tensor of shape
    ``(B, *image_shape)`` with values in ``[0, 1]`` on :attr:`device`.

    Subclasses set :attr:`num_classes` and :attr:`image_shape` and implement
    :meth:`generate` and :attr:`config`.

    Example:
        >>> import torch
        >>> class Constant(Generator):
        ...     num_classes, image_shape = 2, (1, 4, 4)
        ...     def generate(self, labels, seeds):
        ...         labels = as_labels(labels, self.num_classes)
        ...         return labels.float().view(-1, 1, 1, 1).expand(-1, *self.image_shape).clone()
        ...     @property
        ...     def config(self):
        ...         return {"kind": "constant"}
        >>> Constant().generate(torch.tensor([0, 1]), [0, 1]).shape
        torch.Size([2, 1, 4, 4])
    """

    #: Number of classes the generator can be conditioned on; labels are ``0..num_classes-1``.
    num_classes: int
    #: ``(C, H, W)`` of one generated image.
    image_shape: tuple[int, int, int]

    @property
    def device(self) -> torch.device:
        """Device the generated batch lives on."""
        return torch.device("cpu")

    @abc.abstractmethod
    def generate(self, labels: torch.Tensor | Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
        """Generate one image per ``(label, seed)`` pair.

        Args:
            labels: Integer class labels, shape ``(B,)``.
            seeds: One non-negative integer seed per label.

        Returns:
            Float tensor ``(B, C, H, W)`` in ``[0, 1]`` on :attr:`device`.
        """

    @property
    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """Every setting that changes what is generated, as JSON-serialisable values."""

    def config_hash(self) -> str:
        """Stable hex digest of :attr:`config`; keys caches of generated samples."""
        blob = json.dumps(self.config, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def as_labels(labels: torch.Tensor | Sequence[int], num_classes: int) -> torch.Tensor:
    """Validate class labels and return them as a CPU ``int64`` tensor of shape ``(B,)``.

    Raises:
        ValueError: If labels are not integers of rank 1 or fall outside ``0..num_classes-1``.
    """
    t = torch.as_tensor(labels)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.dtype.is_complex:
        raise ValueError(
            f"labels must be integer class indices, got dtype {t.dtype}; "
            "convert soft or one-hot labels with .argmax(-1) first"
        )
    t = t.reshape(-1) if t.dim() == 0 else t
    if t.dim() != 1:
        raise ValueError(f"labels must have shape (B,), got {tuple(t.shape)}")
    t = t.to(device="cpu", dtype=torch.int64)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        bad = t[(t < 0) | (t >= num_classes)].unique().tolist()
        raise ValueError(
            f"labels {bad} are outside the generator's classes 0..{num_classes - 1}; "
            "remap your dataset's labels or use a generator trained on those classes"
        )
    return t


def as_seeds(seeds: Sequence[int] | torch.Tensor, n: int) -> list[int]:
    """Validate per-sample seeds: ``n`` integers in ``[0, 2**63)``.

    Raises:
        ValueError: On a count mismatch or a seed that is negative, too large or not an integer.
    """
    out = [int(s) for s in (seeds.tolist() if isinstance(seeds, torch.Tensor) else seeds)]
    if len(out) != n:
        raise ValueError(f"expected one seed per label ({n}), got {len(out)} seeds")
    bad = [s for s in out if not 0 <= s < SEED_BOUND]
    if bad:
        raise ValueError(f"seeds must be integers in [0, 2**63), got {bad[:5]}")
    return out


def check_generated(
    images: Any,
    n: int,
    image_shape: Sequence[int] | None = None,
    *,
    source: str = "generator",
) -> torch.Tensor:
    """Check a generated batch against the :class:`Generator` output contract.

    Args:
        images: What the generator returned.
        n: Number of images that were asked for.
        image_shape: Expected ``(C, H, W)``; ``None`` skips the shape check.
        source: Name used in error messages.

    Returns:
        ``images``, unchanged.

    Raises:
        GeneratedOutputError: On a non-tensor, a wrong shape, a non-float dtype, values
            outside ``[0, 1]`` or non-finite values, with the fix in the message.
    """
    if not isinstance(images, torch.Tensor):
        raise GeneratedOutputError(
            f"{source}.generate must return a torch.Tensor, got {type(images).__name__}"
        )
    expected = (n, *image_shape) if image_shape is not None else None
    if images.dim() != 4 or images.shape[0] != n or (expected and tuple(images.shape) != expected):
        want = expected if expected else f"({n}, C, H, W)"
        raise GeneratedOutputError(
            f"{source}.generate returned shape {tuple(images.shape)}, expected {want}; "
            "return one (C, H, W) image per requested label"
        )
    if not images.dtype.is_floating_point:
        raise GeneratedOutputError(
            f"{source}.generate returned dtype {images.dtype}; return floats in [0, 1] "
            "(e.g. images.float() / 255 for uint8 images)"
        )
    finite = torch.isfinite(images)
    if not bool(finite.all()):
        bad = (~finite).flatten(1).any(1).nonzero().flatten().tolist()
        raise GeneratedOutputError(
            f"{source}.generate returned NaN or Inf values in samples {bad[:10]}; check the "
            "model's dtype (fp16 overflow) and the sampler settings"
        )
    if images.numel():
        lo, hi = float(images.min()), float(images.max())
        # A little slack for kernels that overshoot by rounding error.
        if lo < -1e-3 or hi > 1 + 1e-3 or math.isnan(lo):
            raise GeneratedOutputError(
                f"{source}.generate returned values in [{lo:.3g}, {hi:.3g}], expected [0, 1]; "
                "map [-1, 1] outputs with (x + 1) / 2 and clamp"
            )
    return images
