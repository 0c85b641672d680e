"""The generator contract: images as a pure function of (model, config, label, seed).

Every consumer in gdaload (datasets, loaders, transforms, selection stages) talks to
generators through :class:`Generator`, and checks what comes back with
:func:`check_generated`, so a user-written generator that returns the wrong shape,
range or dtype fails loudly at the first batch instead of silently training on junk.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import math
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch

__all__ = [
    "GeneratedOutputError",
    "GenerationStoppedError",
    "Generator",
    "GeneratorKindError",
    "ImageConditionedGenerator",
    "MultiViewGenerator",
    "as_labels",
    "as_seeds",
    "check_generated",
    "check_source",
    "config_digest",
    "sample_strengths",
    "stop_waiting_on",
    "wait_unless_stopped",
]

#: Strength of image-conditioned generation: one value, or a ``(min, max)`` range from
#: which each sample draws its own value with its seed.
StrengthLike = float | tuple[float, float]

#: Seeds are drawn below this bound so that they fit a ``torch.Generator`` (uint64) and
#: stay exact when stored as JSON numbers.
SEED_BOUND = 2**63


class GeneratedOutputError(RuntimeError):
    """A generator returned a batch that breaks the :class:`Generator` contract."""


class GenerationStoppedError(RuntimeError):
    """Generation stopped while samples were awaited: a thread engine was closed, or its
    producer thread ended, or a generator that waits for samples made elsewhere
    (:class:`~gdaload.StoredSamples`) gave up because its caller is stopping."""


class GeneratorKindError(TypeError, ValueError):
    """A consumer was handed a generator of the wrong kind (raised at construction).

    A ``TypeError`` (the generator has the wrong type) that is also a ``ValueError``, the
    error gdaload raised for it before generator kinds were types.
    """


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

        :class:`ImageConditionedGenerator` subclasses also take ``source=`` and
        ``strength=``.

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
        return config_digest(self.config)


def config_digest(config: dict[str, Any]) -> str:
    """Stable hex digest (16 digits) of a generator config: what :meth:`Generator.config_hash`
    returns, and what keys stores of generated samples."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# The stop event of the caller running generation on this thread (see stop_waiting_on).
_caller = threading.local()


@contextlib.contextmanager
def stop_waiting_on(event: threading.Event) -> Iterator[None]:
    """Let a generator that waits for samples made elsewhere (such as
    :class:`~gdaload.StoredSamples`) give up as soon as ``event`` is set, for calls made
    on this thread inside the block.

    The thread engine's producer runs under its stop event, so closing a loader ends
    such a wait at once instead of leaving the thread polling until a timeout.

    Example:
        >>> stop = threading.Event()
        >>> with stop_waiting_on(stop):
        ...     stop.set()
        ...     wait_unless_stopped(60.0)
        True
    """
    previous = getattr(_caller, "stop", None)
    _caller.stop = event
    try:
        yield
    finally:
        _caller.stop = previous


def wait_unless_stopped(seconds: float) -> bool:
    """Sleep ``seconds``, or less if this thread's caller asks generation to stop (see
    :func:`stop_waiting_on`); return whether it did."""
    event = getattr(_caller, "stop", None)
    if event is None:
        time.sleep(seconds)
        return False
    return bool(event.wait(seconds))


class ImageConditionedGenerator(Generator):
    """A generator that can also make variations of given images (SDEdit-style).

    :meth:`generate` takes keyword arguments ``source`` (``(B, C, H, W)`` images in
    [0, 1], checked with :func:`check_source`) and ``strength`` (see
    :func:`sample_strengths`): 0 returns the source, 1 ignores it. Without ``source`` it
    behaves like any :class:`Generator`. :class:`~gdaload.GenerativeAugment` and
    :class:`~gdaload.GenerativeTTA` need this kind.

    Example:
        >>> class Blend(ImageConditionedGenerator):
        ...     num_classes, image_shape = 2, (1, 4, 4)
        ...     def generate(self, labels, seeds, *, source=None, strength=1.0):
        ...         labels = as_labels(labels, self.num_classes)
        ...         noise = torch.full((len(labels), *self.image_shape), 0.5)
        ...         if source is None:
        ...             return noise
        ...         s = torch.tensor(sample_strengths(strength, seeds)).view(-1, 1, 1, 1)
        ...         return (1 - s) * check_source(source, self.image_shape, len(labels)) + s * noise
        ...     @property
        ...     def config(self):
        ...         return {"kind": "blend"}
        >>> Blend().generate([0], [1], source=torch.zeros(1, 1, 4, 4), strength=0.5).max()
        tensor(0.2500)
    """

    @abc.abstractmethod
    def generate(
        self,
        labels: torch.Tensor | Sequence[int],
        seeds: Sequence[int],
        *,
        source: torch.Tensor | None = None,
        strength: StrengthLike = 1.0,
    ) -> torch.Tensor:
        """Generate one image per ``(label, seed)``, varying ``source`` when given."""


class MultiViewGenerator(ImageConditionedGenerator):
    """A label-free generator of unseen views of the object shown in a source image.

    :meth:`generate` needs ``source`` (one observed view per sample) and returns one
    novel view each; labels are validated but do not condition the image.
    :meth:`novel_views` returns all ``num_views - 1`` unseen views of one joint sample.
    Class-conditional consumers (:class:`~gdaload.GenerativeLoader`,
    :class:`~gdaload.GenerativeDataset`, selection) refuse this kind at construction.

    Example:
        >>> class Flip(MultiViewGenerator):
        ...     num_classes, image_shape, num_views = 1, (1, 2, 2), 2
        ...     def generate(self, labels, seeds, *, source=None, strength=1.0):
        ...         return self.novel_views(source, seeds)[:, 0]
        ...     def novel_views(self, source, seeds):
        ...         return source.flip(-1).unsqueeze(1)
        ...     @property
        ...     def config(self):
        ...         return {"kind": "flip"}
        >>> Flip().novel_views(torch.zeros(3, 1, 2, 2), [0, 1, 2]).shape
        torch.Size([3, 1, 1, 2, 2])
    """

    #: Number of views of one object, the observed one included.
    num_views: int

    @abc.abstractmethod
    def novel_views(self, source: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """The ``num_views - 1`` unseen views of each source image, ``(B, V - 1, C, H, W)``."""


def require_kind(generator: Any, kind: type, who: str, hint: str = "") -> None:
    """Raise :class:`GeneratorKindError` unless ``generator`` is a ``kind`` (a
    :class:`Generator` class, abstract ones included).

    Consumers call this at construction, so the wrong kind fails there with the fix
    instead of at the first batch.
    """
    if not isinstance(generator, kind):
        got = type(generator).__name__
        what = "a gdaload.Generator" if kind is Generator else f"a {kind.__name__}"
        raise GeneratorKindError(
            f"{who}: generator must be {what}, got {got}{'. ' + hint if hint else ''}"
        )


def refuse_multiview(generator: Any, who: str) -> None:
    """Raise :class:`GeneratorKindError` for a :class:`MultiViewGenerator`, which makes
    views of given images and cannot make class samples from ``(label, seed)`` alone."""
    require_kind(generator, Generator, who)
    if isinstance(generator, MultiViewGenerator):
        raise GeneratorKindError(
            f"{who} makes class samples from (label, seed) alone, but "
            f"{type(generator).__name__} is a multi-view generator that needs a source "
            "view; use it with GenerativeTTA or GenerativeAugment, or pass a "
            "class-conditional generator such as DiffusionGenerator"
        )


def as_labels(labels: torch.Tensor | Sequence[int], num_classes: int) -> torch.Tensor:
    """Validate class labels and return them as a CPU ``int64`` tensor of shape ``(B,)``.

    Raises:
        ValueError: If labels are not integers of rank 1 or fall outside ``0..num_classes-1``.
    """
    t = torch.as_tensor(labels)
    if t.numel() == 0:
        t = t.to(torch.int64)  # an empty list is a float tensor to torch
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
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Check a generated batch against the :class:`Generator` output contract.

    Args:
        images: What the generator returned.
        n: Number of images that were asked for.
        image_shape: Expected ``(C, H, W)``; ``None`` skips the shape check.
        source: Name used in error messages.
        device: The generator's :attr:`~Generator.device`; ``None`` skips the check.

    Returns:
        ``images``, unchanged.

    Raises:
        GeneratedOutputError: On a non-tensor, a wrong shape or device, a non-float
            dtype, values outside ``[0, 1]`` or non-finite values, with the fix in the
            message.
    """
    if not isinstance(images, torch.Tensor):
        raise GeneratedOutputError(
            f"{source}.generate must return a torch.Tensor, got {type(images).__name__}"
        )
    if device is not None and not _same_device(images.device, torch.device(device)):
        raise GeneratedOutputError(
            f"{source}.generate returned images on {images.device}, but its device property "
            f"says {device}; return them on the generator's device (or make .device tell "
            "where they are)"
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


def _same_device(actual: torch.device, expected: torch.device) -> bool:
    # "cuda" names the current CUDA device: any index of that type matches it.
    if actual.type != expected.type:
        return False
    return expected.index is None or actual.index is None or actual.index == expected.index


def check_source(source: Any, image_shape: Sequence[int], n: int) -> torch.Tensor:
    """Validate source images for image-conditioned generation.

    Returns:
        ``source`` as a float tensor in [0, 1] (uint8 images are scaled).

    Raises:
        ValueError: On a wrong count, rank, channel count (grayscale vs RGB) or size; the
            message names the expected shape and the transform that fixes it.
    """
    if not isinstance(source, torch.Tensor):
        raise ValueError(
            f"source must be a tensor (B, C, H, W), got {type(source).__name__}; "
            "convert PIL images with v2.functional.to_image"
        )
    if source.dim() != 4 or source.shape[0] != n:
        raise ValueError(
            f"source must have shape ({n}, C, H, W), one image per label; got {tuple(source.shape)}"
        )
    channels, height, width = image_shape
    if source.shape[1] != channels:
        fix = "v2.Grayscale(num_output_channels=1)" if channels == 1 else "v2.RGB()"
        raise ValueError(
            f"source images have {source.shape[1]} channels but the generator makes "
            f"{channels}-channel images ({'grayscale' if channels == 1 else 'RGB'}); add {fix}"
        )
    if tuple(source.shape[2:]) != (height, width):
        raise ValueError(
            f"source images are {source.shape[2]}x{source.shape[3]} but the generator takes "
            f"{height}x{width}; resize them first, e.g. v2.Resize(({height}, {width}))"
        )
    if source.dtype == torch.uint8:
        return source.float() / 255
    if not source.dtype.is_floating_point:
        raise ValueError(f"source must be float in [0, 1] or uint8, got {source.dtype}")
    return source


def sample_strengths(strength: StrengthLike, seeds: Sequence[int]) -> list[float]:
    """Per-sample strengths: the value itself, or a draw from ``(min, max)`` keyed by the
    sample's seed (so the strength, like the image, depends only on the seed).

    Raises:
        ValueError: If a strength lies outside [0, 1] or a range has min > max.
    """
    from gdaload.seeding import Stream, derive_rng

    if isinstance(strength, (tuple, list)):
        if len(strength) != 2:
            raise ValueError(f"strength range must be (min, max), got {strength!r}")
        lo, hi = (float(v) for v in strength)
        if not (0 <= lo <= hi <= 1):
            raise ValueError(f"strength range must satisfy 0 <= min <= max <= 1, got {strength!r}")
        return [lo + (hi - lo) * float(derive_rng(s, Stream.STRENGTH).random()) for s in seeds]
    value = float(strength)
    if not 0 <= value <= 1:
        raise ValueError(
            f"strength must be in [0, 1] (0 keeps the source, 1 ignores it), got {strength!r}"
        )
    return [value] * len(seeds)
