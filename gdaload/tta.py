"""Test-time augmentation by averaging a classifier over generated views of each input.

At test time each input is sent to an image-conditioned generator, which makes ``K``
views of it; the classifier runs on the input and on the views, and the outputs are
merged. With :class:`~gdaload.MultiViewDiffusion` the views are novel viewpoints of the
object (the evaluation of DiMViDA, which averages over the real view and 3 generated
ones); with a variation generator such as :class:`~gdaload.DiffusionGenerator` they are
SDEdit-style variations at a chosen strength.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from gdaload.cache.lru import LRU
from gdaload.fingerprint import content_hash
from gdaload.generators.base import (
    Generator,
    ImageConditionedGenerator,
    MultiViewGenerator,
    StrengthLike,
    check_generated,
    check_source,
    require_kind,
    sample_strengths,
)
from gdaload.seeding import derive_seed

__all__ = ["MERGE_MODES", "GenerativeTTA", "merge_outputs"]

#: How the classifier's outputs over the original and the views are merged.
MERGE_MODES = ("mean", "gmean", "max", "vote")


def merge_outputs(logits: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Merge per-view logits ``(B, N, C)`` into per-input scores ``(B, C)``.

    Modes, with ``p`` the softmax probabilities of each of the ``N`` views:

    * ``mean``: the mean of ``p`` over views (a probability vector).
    * ``gmean``: the geometric mean of ``p`` over views, renormalised to sum to 1
      (the softmax of the mean log-probability).
    * ``max``: for each class, the largest probability any view gives it (not
      normalised).
    * ``vote``: majority vote of the views' top classes: ``(votes + mean(p) / 2) / N``.
      The mean-probability term is below one vote, so it only breaks ties, in favour
      of the class with the higher mean probability.

    Example:
        >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])  # one input, two views
        >>> merge_outputs(logits, "max").tolist()
        [[0.8807970285415649, 0.5]]
    """
    if mode not in MERGE_MODES:
        raise ValueError(f"unknown merge mode {mode!r}; use one of {MERGE_MODES}")
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, N views, C classes), got {tuple(logits.shape)}")
    log_p = F.log_softmax(logits.float(), dim=-1)
    p = log_p.exp()
    if mode == "mean":
        return p.mean(1)
    if mode == "gmean":
        return F.softmax(log_p.mean(1), dim=-1)
    if mode == "max":
        return p.amax(1)
    votes = F.one_hot(p.argmax(-1), p.shape[-1]).sum(1).to(p.dtype)
    return (votes + p.mean(1) / 2) / p.shape[1]


class GenerativeTTA(nn.Module):
    """Classify each input by merging a model's outputs over generated views of it.

    Shaped like ttach's ``ClassificationTTAWrapper``: ``forward(x)`` returns the merged
    output, ``(B, num_classes)`` scores (see :func:`merge_outputs`; probabilities for
    ``mean`` and ``gmean``), whose argmax is the prediction.

    **Views.** For each input, ``views`` images come from the generator:

    * A multi-view generator (one with ``novel_views``, such as
      :class:`~gdaload.MultiViewDiffusion`) treats the input as its observed view and
      generates the missing views jointly; views ``0..V-2`` are the missing views of one
      sample, further views come from further samples.
    * Any other image-conditioned generator makes variations:
      ``generate(labels, seeds, source=x, strength=strength)``.

    **Labels.** The true label is unknown at test time. Generators that condition on a
    class are given the model's own prediction for the original input, so each variation
    is drawn towards the class the model already favours: cheap (one generation per view,
    instead of one per view and class) and harmless when the prediction is right, while
    a low ``strength`` keeps a wrong prediction from overwriting the input's evidence.
    Label-free generators (a :class:`~gdaload.MultiViewGenerator` such as
    ``MultiViewDiffusion``) get no label.

    **Determinism.** The seed of view ``k`` of an input is derived from ``(seed, hash of
    the input's bytes, k)``: the same input always gets the same views, whatever the
    batch, and another ``seed`` gives other views. With ``cache_size > 0`` the views of
    the last ``cache_size`` inputs are kept in memory, keyed by that hash (and the
    predicted label, the generator's config, ``strength``, ``views`` and ``seed``).

    Inputs are images in the generator's space (``generator.image_shape``, values in
    [0, 1]); put any normalisation the classifier needs inside ``model``.

    Args:
        model: Classifier returning logits ``(B, num_classes)``.
        generator: An image-conditioned :class:`~gdaload.Generator`.
        views: ``K``, generated views per input (at least 1).
        merge: One of :data:`MERGE_MODES`.
        include_original: Whether the input itself is one of the merged views.
        strength: For variation generators: 0 returns the input, 1 ignores it; one value
            or a ``(min, max)`` range drawn per view from its seed. Not used by
            multi-view generators.
        seed: Base seed of the views.
        batch_size: Most images sent to the model at once.
        cache_size: Inputs whose views are cached; 0 disables the cache.

    Raises:
        ValueError: On ``views < 1``, an unknown merge mode, a generator that takes no
            source images, or an invalid strength, seed, batch or cache size.

    Example:
        >>> from gdaload.generators.multiview.generator import MultiViewDiffusion
        >>> generator = MultiViewDiffusion.from_pretrained("runs/multiview",
        ...                                                observed_view="back")  # doctest: +SKIP
        >>> tta = GenerativeTTA(classifier, generator, views=3)  # doctest: +SKIP
        >>> probabilities = tta(back_images)  # doctest: +SKIP
        >>> tta.evaluate(test_loader)  # doctest: +SKIP
        {'single': 0.71, 'averaged': 0.79, 'num_samples': 1000}
    """

    def __init__(
        self,
        model: nn.Module,
        generator: Generator,
        views: int = 3,
        merge: str = "mean",
        include_original: bool = True,
        strength: StrengthLike = 0.5,
        seed: int = 0,
        batch_size: int = 256,
        cache_size: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(views, bool) or not isinstance(views, numbers.Integral) or views < 1:
            raise ValueError(
                f"views must be an integer >= 1 (generated views per input), got {views!r}"
            )
        if merge not in MERGE_MODES:
            raise ValueError(f"unknown merge mode {merge!r}; use one of {MERGE_MODES}")
        require_kind(
            generator,
            ImageConditionedGenerator,
            "GenerativeTTA",
            "It needs an image-conditioned generator: use MultiViewDiffusion (novel views) "
            "or DiffusionGenerator (variations)",
        )
        sample_strengths(strength, [])  # validates a value or a (min, max) range
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(cache_size) < 0:
            raise ValueError(f"cache_size must be >= 0 (0 disables the cache), got {cache_size}")
        self.model: nn.Module = model
        # require_kind above made sure of the kind; mypy cannot see it.
        self.generator: ImageConditionedGenerator = cast(ImageConditionedGenerator, generator)
        self.views: int = int(views)
        self.merge: str = merge
        self.include_original: bool = bool(include_original)
        self.strength: StrengthLike = (
            (float(strength[0]), float(strength[1]))
            if isinstance(strength, (tuple, list))
            else float(strength)
        )
        self.seed: int = int(seed)
        self.batch_size: int = int(batch_size)
        # The views of the last `cache_size` inputs, least recently used dropped first.
        self._cache: LRU[tuple[Any, ...], torch.Tensor] = LRU(int(cache_size))

    @property
    def cache_size(self) -> int:
        """Inputs whose views are cached; 0 disables the cache."""
        return self._cache.capacity or 0

    @cache_size.setter
    def cache_size(self, size: int) -> None:
        self._cache.capacity = int(size)

    # ------------------------------------------------------------------ views
    @property
    def _uses_labels(self) -> bool:
        # Multi-view generators make views of the input's object whatever its class.
        return not isinstance(self.generator, MultiViewGenerator)

    def generated_views(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The ``K`` generated views of each input, ``(B, K, C, H, W)`` on ``x``'s device.

        Args:
            x: Inputs ``(B, C, H, W)`` in [0, 1].
            labels: Classes to condition class-conditional generators on (by default
                the model's predictions for ``x``); ignored by label-free generators.

        Raises:
            ValueError: If ``x`` does not match the generator's image shape.
        """
        source = self._check_inputs(x)
        if self._uses_labels and labels is None:
            labels = self._logits(source).argmax(-1)
        return self._views(source, labels).to(x.device)

    def _views(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self._uses_labels:
            assert labels is not None
            labels = labels.to("cpu").long()
            bad = labels >= self.generator.num_classes
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                raise ValueError(
                    f"the model predicts class {int(labels[i])} for input {i} but the generator "
                    f"has {self.generator.num_classes} classes; views are conditioned on the "
                    "model's prediction, so model and generator must share their classes"
                )
        else:
            labels = torch.full((len(x),), -1, dtype=torch.long)
        context = (self.generator.config_hash(), repr(self.strength), self.views, self.seed)
        keys = [
            (context, content_hash(img), int(lab))
            for img, lab in zip(x.detach().cpu(), labels, strict=True)
        ]
        out: list[torch.Tensor | None] = [
            self._cache.get(k) if self.cache_size else None for k in keys
        ]
        todo = [i for i, v in enumerate(out) if v is None]
        if todo:
            made = self._generate(x[todo], labels[todo], [keys[i][1] for i in todo])
            for j, i in enumerate(todo):
                out[i] = made[j]
                if self.cache_size:
                    self._cache.put(keys[i], made[j])
        return torch.stack(cast(list[torch.Tensor], out))  # every row was filled above

    def _generate(self, x: torch.Tensor, labels: torch.Tensor, hashes: list[int]) -> torch.Tensor:
        gen, k = self.generator, self.views
        source = x.to(gen.device)
        shape = tuple(gen.image_shape)
        if isinstance(gen, MultiViewGenerator):
            # One joint sample gives all V - 1 missing views; draw as many as K needs.
            per_sample = gen.num_views - 1
            rounds = math.ceil(k / per_sample)
            seeds = [derive_seed(self.seed, h, r) for h in hashes for r in range(rounds)]
            images = gen.novel_views(source.repeat_interleave(rounds, 0), seeds).reshape(-1, *shape)
            made = rounds * per_sample
        else:
            seeds = [derive_seed(self.seed, h, j) for h in hashes for j in range(k)]
            images = gen.generate(
                labels.repeat_interleave(k),
                seeds,
                source=source.repeat_interleave(k, 0),
                strength=self.strength,
            )
            made = k
        check_generated(images, len(x) * made, shape, source=type(gen).__name__, device=gen.device)
        return images.reshape(len(x), made, *shape)[:, :k].detach().float().cpu()

    # ------------------------------------------------------------------ classification
    def _logits(self, images: torch.Tensor, owners: list[str] | None = None) -> torch.Tensor:
        """The model's logits for ``images``, in batches, with finite values checked."""
        outputs = []
        for start in range(0, len(images), self.batch_size):
            out = self.model(images[start : start + self.batch_size])
            if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] < 2:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"the model must return logits (B, num_classes >= 2), got {shape}")
            finite = torch.isfinite(out).all(1)
            if not bool(finite.all()):
                row = start + int((~finite).nonzero()[0, 0])
                where = owners[row] if owners else f"input {row}"
                raise ValueError(
                    f"the model returned non-finite logits (NaN or Inf) for {where}; check the "
                    "model's weights and that inputs are in [0, 1] as it expects"
                )
            outputs.append(out)
        return torch.cat(outputs)

    def _check_inputs(self, x: Any) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"inputs must be a tensor (B, C, H, W), got {type(x).__name__}")
        if x.dim() == 4 and len(x) == 0:
            raise ValueError("got an empty batch; pass at least one input")
        return check_source(x, self.generator.image_shape, len(x))

    def _merge(self, original: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        stacked = (
            torch.cat([original[:, None], generated], 1) if self.include_original else generated
        )
        return merge_outputs(stacked, self.merge)

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the originals ``(B, C)`` and of their generated views ``(B, K, C)``.

        Raises:
            ValueError: If ``x`` does not match the generator's image shape, or the model
                returns non-finite logits (the message names the input index).
        """
        source = self._check_inputs(x)
        original = self._logits(source, [f"input {i} (the original)" for i in range(len(x))])
        views = self._views(source, original.argmax(-1)).to(x.device)
        b, k = views.shape[:2]
        owners = [f"input {i} (generated view {j})" for i in range(b) for j in range(k)]
        generated = self._logits(views.flatten(0, 1), owners).view(b, k, -1)
        return original, generated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Merged scores ``(B, num_classes)`` for inputs ``(B, C, H, W)`` in [0, 1]."""
        return self._merge(*self.outputs(x))

    @torch.inference_mode()
    def evaluate(self, loader: Iterable[Any]) -> dict[str, float]:
        """Accuracy of the model on the inputs alone and with merged generated views.

        Args:
            loader: Batches ``(images, labels)``.

        Returns:
            ``{"single": accuracy on the inputs, "averaged": accuracy of the merged
            output, "num_samples": n}``.
        """
        was_training = self.model.training
        self.model.eval()
        single = merged = total = 0
        try:
            for batch in loader:
                x, y = batch[0], torch.as_tensor(batch[1])
                original, generated = self.outputs(x)
                y = y.to(original.device)
                single += int((original.argmax(-1) == y).sum())
                merged += int((self._merge(original, generated).argmax(-1) == y).sum())
                total += len(y)
        finally:
            self.model.train(was_training)
        if total == 0:
            raise ValueError("the loader yielded no samples")
        return {"single": single / total, "averaged": merged / total, "num_samples": total}

    def extra_repr(self) -> str:
        return (
            f"views={self.views}, merge={self.merge!r}, "
            f"include_original={self.include_original}, "
            f"strength={self.strength}, seed={self.seed}, generator={self.generator!r}"
        )
