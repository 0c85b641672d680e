"""Feature stages: selection stages that score candidates in a feature space.

A :class:`FeatureStage` runs a pluggable extractor (any module or callable mapping images
to features) on the candidates, and on real data when the stage is fitted; subclasses
such as :class:`~gdaload.select.realism.RealismScore` and
:class:`~gdaload.select.cluster.ClusterSelect` compare the two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from gdaload.metrics.features import as_feature_matrix
from gdaload.select.stage import SelectionStage, describe, eval_mode

__all__ = ["FeatureStage", "batch_features", "fitted_classes_error"]

FeatureStageT = TypeVar("FeatureStageT", bound="FeatureStage")

#: Images per forward pass when features of real data are computed from one big tensor.
FIT_BATCH = 256


def batch_features(
    extractor: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    name: str = "feature extractor",
) -> torch.Tensor:
    """Features of one batch of images as a finite float32 ``(N, D)`` matrix.

    ``extractor`` runs in eval mode under ``torch.inference_mode()``; ``(N, D, ...)``
    outputs are flattened, and the result stays on the extractor's output device.

    Args:
        extractor: Module or callable mapping ``(N, C, H, W)`` images to features.
        images: The batch.
        name: What to call the extractor in error messages.

    Returns:
        ``(N, D)`` float32 features.

    Raises:
        ValueError: If the output is not a tensor with one row per image and at least two
            dimensions, or holds NaN/Inf (the message names the first bad sample).
    """
    with torch.inference_mode(), eval_mode(extractor):
        out = extractor(images)
    if not isinstance(out, torch.Tensor) or out.dim() < 2 or out.shape[0] != images.shape[0]:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{name} returned {got} for {images.shape[0]} images; it must return a tensor of "
            "(N, D) or (N, D, ...) features, one row per image (wrap models that return tuples, "
            "add a batch dimension or remove a final squeeze)"
        )
    return as_feature_matrix(out.flatten(1), name, torch.float32)


def _as_fit_labels(labels: Any, n: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(labels).detach()
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.dtype.is_complex or t.dim() != 1:
        raise ValueError(
            f"{name}.fit labels must be a 1-D tensor of integer classes, got dtype {t.dtype} "
            f"and shape {tuple(t.shape)}"
        )
    if t.shape[0] != n:
        raise ValueError(
            f"{name}.fit got {n} real samples but {t.shape[0]} labels; pass one label per sample"
        )
    if t.numel() and int(t.min()) < 0:
        raise ValueError(
            f"{name}.fit labels must be non-negative class indices, got {int(t.min())}"
        )
    return t.to("cpu", torch.int64)


class FeatureStage(SelectionStage):
    """A stage that scores candidates in the feature space of a pluggable extractor.

    The extractor is any module or callable mapping ``(N, C, H, W)`` images to ``(N, D)``
    or ``(N, D, ...)`` features (flattened); it runs in eval mode under
    ``torch.inference_mode()``. :meth:`fit` accepts real data as

    * an ``(N, C, H, W)`` image tensor (run through the extractor in batches),
    * an ``(N, D)`` tensor of precomputed features,
    * an iterable of ``(images, labels)`` batches, such as a ``DataLoader``
      (``labels`` must then be ``None``).

    Args:
        feature_extractor: Module or callable producing features.
        keep: See :class:`SelectionStage`.
        top_k: See :class:`SelectionStage`.
        threshold: See :class:`SelectionStage`.

    Example:
        >>> class Contrast(FeatureStage):
        ...     def score(self, images, labels):
        ...         return self.features(images).std(dim=1)
        >>> stage = Contrast(torch.nn.Flatten(), top_k=1)
        >>> candidates = torch.tensor([[0.0, 1.0], [0.5, 0.5]]).view(2, 1, 1, 2)
        >>> stage.score(candidates, torch.tensor([0, 0]))
        tensor([0.7071, 0.0000])
    """

    def __init__(
        self,
        feature_extractor: Callable[[torch.Tensor], torch.Tensor],
        *,
        keep: float | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(keep=keep, top_k=top_k, threshold=threshold)
        if not callable(feature_extractor):
            raise ValueError(
                f"feature_extractor must be a module or callable mapping images to features, "
                f"got {type(feature_extractor).__name__}"
            )
        self.feature_extractor = feature_extractor
        self.feature_dim: int | None = None

    def to(self: FeatureStageT, device: torch.device | str) -> FeatureStageT:
        super().to(device)
        if isinstance(self.feature_extractor, nn.Module):
            self.feature_extractor.to(self.device)
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` features of ``images``, checked against the fitted dimension."""
        feats = batch_features(
            self.feature_extractor, images, f"{type(self).__name__} feature extractor"
        )
        if self.feature_dim is not None and feats.shape[1] != self.feature_dim:
            raise ValueError(
                f"{type(self).__name__} was fit on {self.feature_dim}-D features but the "
                f"extractor returned {feats.shape[1]}-D ones; fit and score with the same "
                "extractor and image size"
            )
        return feats

    def real_features(
        self, real: Any, labels: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features (on :attr:`device`) and CPU labels of real data given to :meth:`fit`.

        Subclasses set :attr:`feature_dim` once their fit succeeds.
        """
        name = type(self).__name__
        if isinstance(real, torch.Tensor):
            if real.dim() in (2, 4) and real.shape[0] == 0:
                raise ValueError(f"{name}.fit got no real samples")
            if real.dim() == 2:
                feats = batch_features(nn.Identity(), real, f"{name}.fit features")
            elif real.dim() == 4:
                feats = torch.cat(
                    [
                        self._image_features(real[i : i + FIT_BATCH])
                        for i in range(0, len(real), FIT_BATCH)
                    ]
                )
            else:
                raise ValueError(
                    f"{name}.fit expects (N, C, H, W) images or (N, D) features, got shape "
                    f"{tuple(real.shape)}"
                )
            fit_labels = None if labels is None else _as_fit_labels(labels, feats.shape[0], name)
        elif isinstance(real, Iterable):
            if labels is not None:
                raise ValueError(
                    f"{name}.fit got an iterable of batches and separate labels; yield "
                    "(images, labels) batches instead"
                )
            parts, label_parts = [], []
            for batch in real:
                x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
                parts.append(self._image_features(torch.as_tensor(x)))
                if y is not None:
                    label_parts.append(_as_fit_labels(y, parts[-1].shape[0], name))
            if not parts:
                raise ValueError(f"{name}.fit got an empty iterable of real batches")
            feats = torch.cat(parts)
            if label_parts and len(label_parts) != len(parts):
                raise ValueError(f"{name}.fit: some real batches have labels and some do not")
            fit_labels = torch.cat(label_parts) if label_parts else None
        else:
            raise ValueError(
                f"{name}.fit expects a tensor of images or features, or an iterable of "
                f"(images, labels) batches, got {type(real).__name__}"
            )
        return feats.to(self.device), fit_labels

    def _image_features(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(
                f"{type(self).__name__}.fit expects (N, C, H, W) image batches, got shape "
                f"{tuple(images.shape)}"
            )
        return batch_features(
            self.feature_extractor,
            images.to(self.device),
            f"{type(self).__name__} feature extractor",
        )

    def _config(self) -> dict[str, Any]:
        return {"feature_extractor": describe(self.feature_extractor)}


def fitted_classes_error(stage: SelectionStage, missing: Sequence[int], hint: str) -> ValueError:
    """The error a fitted stage raises for candidates of classes absent from its real data."""
    name = type(stage).__name__
    return ValueError(f"{name} has no real examples of classes {list(missing)[:10]}; {hint}")
