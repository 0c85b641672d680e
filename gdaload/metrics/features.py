"""Feature extraction for the distribution metrics.

Every metric in :mod:`gdaload.metrics` works on feature vectors. They come from any
``torch.nn.Module``: the penultimate layer of the user's own classifier (see
:func:`penultimate`) or Inception-v3 pool features loaded from a local weight file (see
:func:`load_inception`). Nothing here downloads weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeAlias

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "FeatureArray",
    "ImageSource",
    "InceptionFeatures",
    "Penultimate",
    "as_feature_matrix",
    "extract_features",
    "load_inception",
    "penultimate",
]

#: What the metrics accept as images: one ``(N, C, H, W)`` tensor, a ``Dataset`` of
#: samples, or an iterable of batches (tensors or ``(x, y, ...)`` tuples), such as a
#: ``DataLoader``.
ImageSource: TypeAlias = torch.Tensor | Dataset | Iterable

#: Feature matrices are ``(N, D)`` torch tensors or NumPy arrays.
FeatureArray: TypeAlias = torch.Tensor | np.ndarray

#: Inception-v3 pool features are defined at this input resolution.
INCEPTION_SIZE = 299


def extract_features(
    images: ImageSource,
    model: nn.Module,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Run ``model`` over ``images`` and return one feature row per sample.

    The model runs in eval mode under ``torch.inference_mode()``; the train/eval flag of
    every submodule is restored afterwards, so this is safe to call in the middle of a
    training loop. Outputs with more than two dimensions are flattened per sample.

    Args:
        images: A tensor ``(N, C, H, W)``, a ``Dataset`` of samples, or an iterable of
            batches (tensors or tuples whose first item is the image batch).
        model: Any module mapping an image batch to a ``(B, ...)`` tensor.
        batch_size: Batch size used when ``images`` is a tensor or a ``Dataset``.
        device: Where the model runs; defaults to the device of its first parameter
            (or buffer), else CPU. Inputs are moved there batch by batch.

    Returns:
        A ``(N, D)`` float tensor on the CPU (float64 if the model outputs float64,
        else float32).

    Raises:
        ValueError: If there are no samples, image sizes differ inside the set, the model
            output has the wrong batch size, or any feature is NaN/inf (the message
            names the first bad sample index).

    Example:
        >>> extract_features(torch.zeros(10, 3, 2, 2), nn.Flatten(), batch_size=4).shape
        torch.Size([10, 12])
    """
    feats, _, _ = _extract(images, model, batch_size=batch_size, device=device)
    return feats


def as_feature_matrix(
    feats: FeatureArray, name: str, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Check that ``feats`` is a finite ``(N, D)`` matrix and return it as a float tensor.

    Args:
        feats: Tensor or array of features (kept on its device).
        name: Name used in error messages.
        dtype: Target dtype; ``None`` keeps float64 and turns anything else into float32.

    Returns:
        The features as a tensor of ``dtype``.

    Raises:
        ValueError: If ``feats`` is not 2-D, is empty or holds NaN/inf (the message names
            the first bad sample index).

    Example:
        >>> as_feature_matrix(np.zeros((3, 2)), "feats", torch.float32).dtype
        torch.float32
    """
    t = torch.as_tensor(feats).detach()
    if dtype is None:
        dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    t = t.to(dtype)
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D (N, D) matrix, got shape {tuple(t.shape)}"
        )
    finite = torch.isfinite(t).all(dim=1)
    if not bool(finite.all()):
        raise ValueError(
            f"{name} has non-finite values (NaN or inf), first at sample "
            f"{int((~finite).nonzero()[0, 0])}"
        )
    return t


def _extract(
    images: ImageSource,
    model: nn.Module,
    *,
    batch_size: int,
    device: torch.device | str | None,
    reference_shape: tuple[int, ...] | None = None,
    with_targets: bool = False,
) -> tuple[torch.Tensor, tuple[int, ...], torch.Tensor | None]:
    """:func:`extract_features` plus the per-sample image shape and, optionally, targets.

    ``reference_shape`` is the image shape of another set that this one is compared
    with; a mismatch is reported at the first batch, before the whole set is processed.
    With ``with_targets`` the second item of every ``(x, y)`` batch is collected.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    run_device = _model_device(model) if device is None else torch.device(device)
    # Remember every submodule's mode: a user may keep some layers (e.g. frozen
    # BatchNorm) in eval while the rest trains, and model.train() would undo that.
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    chunks: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    sample_shape = reference_shape
    seen = 0
    try:
        with torch.inference_mode():
            for x, y in _iter_batches(images, batch_size):
                shape = tuple(x.shape[1:])
                if sample_shape is None:
                    sample_shape = shape
                elif shape != sample_shape:
                    if seen == 0:
                        raise ValueError(
                            f"image sizes differ between the two sets: {shape} vs "
                            f"{reference_shape}; resize one set so both match"
                        )
                    raise ValueError(
                        f"image sizes differ within one set: sample {seen} has shape {shape}, "
                        f"earlier samples {sample_shape}"
                    )
                if with_targets:
                    if y is None:
                        raise ValueError(
                            "labels were not given and the batches carry none; pass labels "
                            "or batches of (images, labels)"
                        )
                    targets.append(torch.as_tensor(y).reshape(-1).cpu())
                out = model(x.to(run_device))
                chunks.append(_check_output(out, len(x), seen))
                seen += len(x)
    finally:
        for module, training in modes:
            module.training = training
    if seen == 0:
        raise ValueError("no samples: the image source is empty")
    # The first batch set it, if no reference shape did.
    assert sample_shape is not None
    # Concatenating outside inference mode gives ordinary tensors that callers may
    # modify in place.
    feats = torch.cat(chunks)
    return feats, sample_shape, torch.cat(targets) if with_targets else None


def _iter_batches(
    images: ImageSource, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield ``(x, y)`` batches; ``y`` is ``None`` where the source carries no labels."""
    if isinstance(images, torch.Tensor):
        if images.ndim < 2:
            raise ValueError(
                f"an image tensor needs a batch dimension, got shape {tuple(images.shape)}"
            )
        for start in range(0, len(images), batch_size):
            yield images[start : start + batch_size], None
        return
    if isinstance(images, Dataset):
        # A Dataset yields single samples, which would be misread as batches.
        images = DataLoader(images, batch_size=batch_size, shuffle=False)
    for batch in images:
        y = None
        if isinstance(batch, (tuple, list)):
            if not batch:
                raise ValueError("got an empty batch tuple")
            x, y = batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            x = batch
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected image batches as tensors, got {type(x).__name__}")
        yield x, y


def _check_output(out: object, batch_len: int, offset: int) -> torch.Tensor:
    """Validate one batch of model outputs and return it as ``(B, D)`` on the CPU."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the feature model must return a tensor, got {type(out).__name__}; wrap it in "
            "a module that selects the feature tensor"
        )
    if out.ndim == 0 or out.shape[0] != batch_len:
        raise ValueError(
            f"the feature model returned shape {tuple(out.shape)} for a batch of {batch_len} "
            "images; the first dimension must be the batch"
        )
    out = out.reshape(batch_len, -1)
    dtype = torch.float64 if out.dtype == torch.float64 else torch.float32
    out = out.to(device="cpu", dtype=dtype)
    finite = torch.isfinite(out).all(dim=1)
    if not bool(finite.all()):
        first = offset + int((~finite).nonzero()[0, 0])
        raise ValueError(
            f"the feature model returned non-finite values (NaN or inf) for sample {first}; "
            "check the input value range and the model's numerical precision"
        )
    return out


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


class Penultimate(nn.Module):
    """Wrap a classifier so that it returns the input of one of its layers.

    The wrapped model is kept by reference (no copy), so features follow the weights as
    they train. Create it with :func:`penultimate`.

    Args:
        model: The classifier.
        layer: Dotted name of the submodule whose input is returned.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> Penultimate(net, "3")(torch.zeros(2, 3, 2, 2)).shape
        torch.Size([2, 8])
    """

    def __init__(self, model: nn.Module, layer: str) -> None:
        super().__init__()
        model.get_submodule(layer)  # fail early on a wrong name
        self.model = model
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        # Looked up per call rather than stored, so the layer is not registered twice
        # (it would appear under two prefixes in the state dict).
        target = self.model.get_submodule(self.layer)
        handle = target.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
        try:
            self.model(x)
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"layer {self.layer!r} was not called in the model's forward")
        # A layer called several times (weight sharing) reports its last call.
        return captured[-1]


def penultimate(model: nn.Module, layer: str | None = None) -> Penultimate:
    """Feature extractor giving the input of ``layer`` (default: the last ``nn.Linear``).

    For most classifiers the input of the final linear layer is the penultimate
    representation, the usual feature space for FID-style metrics on a domain-specific
    model.

    Args:
        model: The classifier.
        layer: Dotted name of the submodule whose input is returned (as in
            ``model.named_modules()``); defaults to the last registered ``nn.Linear``.

    Returns:
        A module that maps images to the features.

    Raises:
        ValueError: If ``layer`` is ``None`` and the model has no ``nn.Linear``.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> penultimate(net)(torch.zeros(2, 3, 2, 2)).shape
        torch.Size([2, 8])
    """
    if layer is None:
        linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linear:
            raise ValueError("the model has no nn.Linear layer; name the layer explicitly")
        layer = linear[-1]
    return Penultimate(model, layer)


class InceptionFeatures(nn.Module):
    """2048-d pool features of torchvision's Inception-v3 for images in ``[0, 1]``.

    Inputs may be float in ``[0, 1]`` or ``uint8``; one-channel images are repeated to
    three channels. Images are resized bilinearly to 299x299 (unless ``resize`` is
    off) and scaled to ``[-1, 1]``, the range the network was trained on.

    Note: these are torchvision's ImageNet weights, not the TensorFlow graph used for
    published FID numbers, so absolute values are comparable only with each other.

    Args:
        net: The network, e.g. from :func:`load_inception`.
        resize: Resize inputs to 299x299 first.

    Example:
        >>> features = InceptionFeatures(nn.Flatten(), resize=False)  # any net, for show
        >>> features(torch.zeros(2, 1, 4, 4)).shape  # one channel becomes three
        torch.Size([2, 48])
    """

    def __init__(self, net: nn.Module, resize: bool = True) -> None:
        super().__init__()
        self.net = net
        self.resize = resize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.resize and tuple(x.shape[-2:]) != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = F.interpolate(
                x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False
            )
        return self.net(2 * x - 1)


def load_inception(weights_path: str | Path, resize: bool = True) -> InceptionFeatures:
    """Build Inception-v3 from a local state-dict file, for 2048-d pool features.

    The network is torchvision's ``inception_v3`` with its classifier replaced by
    ``nn.Identity``. The file may be ``.safetensors`` or a ``torch.save`` file. Keys of
    the classifier (``fc.*``) are ignored, so checkpoints with any number of classes
    load; the auxiliary head may be missing since it is not used. Weights are loaded as
    float32.

    Args:
        weights_path: Path to the state dict.
        resize: Resize inputs to 299x299 (see :class:`InceptionFeatures`).

    Returns:
        An eval-mode :class:`InceptionFeatures` module on the CPU.

    Raises:
        ValueError: If the file does not hold an Inception-v3 state dict.

    Example:
        >>> model = load_inception("inception_v3.safetensors")  # doctest: +SKIP
        >>> extract_features(images, model).shape  # doctest: +SKIP
        torch.Size([N, 2048])
    """
    from torchvision.models import inception_v3

    path = Path(weights_path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"{path} does not hold a plain state dict: entries {not_tensors[:5]} are not "
            "tensors (save model.state_dict() itself)"
        )

    # Built on the meta device and filled by assignment: no time is spent on (and no
    # global random state is consumed by) an initialisation that loading overwrites.
    with torch.device("meta"):
        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
    state = {
        k: v.float() if v.is_floating_point() else v
        for k, v in state.items()
        if not k.startswith("fc.")
    }
    try:
        result = net.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as err:  # tensor shapes that do not fit the architecture
        raise ValueError(f"{path} is not an Inception-v3 state dict: {err}") from err
    missing = [k for k in result.missing_keys if not k.startswith(("fc.", "AuxLogits."))]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{path} is not an Inception-v3 state dict: missing keys {missing[:5]}, "
            f"unexpected keys {result.unexpected_keys[:5]}"
        )
    net.fc = nn.Identity()
    net.AuxLogits = None
    net.aux_logits = False
    return InceptionFeatures(net, resize=resize).eval()
