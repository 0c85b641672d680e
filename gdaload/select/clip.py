"""CLIP filter: keep candidates whose image matches a text prompt of their class."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gdaload.select.stage import SelectionStage, describe, eval_mode

__all__ = ["ClipFilter"]

REDUCTIONS = ("mean", "max")

#: open_clip interpolation names that ``torch.nn.functional.interpolate`` supports.
_INTERPOLATION = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}

#: Prompts encoded per forward pass of the text tower.
TEXT_BATCH = 256

Prompts = Sequence[str | Sequence[str]] | Mapping[int, str | Sequence[str]]


def _prompt_table(
    prompts: Prompts | None, class_names: Sequence[str] | None, templates: str | Sequence[str]
) -> dict[int, list[str]]:
    if (prompts is None) == (class_names is None):
        raise ValueError(
            "ClipFilter needs exactly one of prompts (per-class text) or class_names (filled "
            "into templates such as 'a photo of a {}.')"
        )
    if class_names is not None:
        templates = [templates] if isinstance(templates, str) else list(templates)
        if not templates or any("{}" not in t for t in templates):
            raise ValueError(
                f"templates must be strings with a '{{}}' for the class name, got {templates}"
            )
        if isinstance(class_names, str):
            raise ValueError(
                "class_names must be a sequence of names, one per class, not one string"
            )
        return {c: [t.format(name) for t in templates] for c, name in enumerate(class_names)}
    assert prompts is not None
    items = prompts.items() if isinstance(prompts, Mapping) else enumerate(prompts)
    table = {int(c): [p] if isinstance(p, str) else list(p) for c, p in items}
    negative = [c for c in table if c < 0]
    if negative:
        raise ValueError(f"prompt keys must be class labels >= 0, got {negative}")
    empty = [c for c, p in table.items() if not p or not all(isinstance(s, str) for s in p)]
    if empty or not table:
        raise ValueError(
            f"every class needs at least one prompt string; check classes {empty} (got "
            f"{len(table)} classes)"
        )
    return table


class ClipFilter(SelectionStage):
    """Score candidates by CLIP image-text cosine similarity to their class's prompts.

    Images are resized to the model's input size with torch ops (following its
    ``preprocess_cfg``: interpolation and ``shortest``/``longest``/``squash`` resize mode,
    as open_clip's inference transform does) and normalised with the model's mean and
    std. Each class's prompts are encoded once, on first use, and cached.

    With several prompts per class, ``reduce="mean"`` scores the mean cosine similarity
    over the class's prompts (prompt ensembling), ``reduce="max"`` the best-matching one.

    Args:
        model: An open_clip model name (built with
            ``open_clip.create_model_and_transforms(model, pretrained=pretrained)``) or an
            already-built open_clip-style model with ``encode_image``/``encode_text``.
        pretrained: Path to a local weights file, only with a model name; ``None`` keeps
            random weights (for tests). Weights are never downloaded.
        tokenizer: Tokenizer mapping a list of strings to token ids; required with a
            built model, taken from ``open_clip.get_tokenizer(model)`` with a name.
        class_names: Class names, index = label, filled into ``templates``.
        prompts: Per-class prompts instead of ``class_names``: a sequence indexed by label
            or a mapping label -> prompt(s).
        templates: One or more templates with ``{}`` for the class name.
        reduce: ``"mean"`` or ``"max"`` over a class's prompts.
        keep: Fraction of candidates kept per request.
        top_k: Number of candidates kept per request.
        threshold: Minimum cosine similarity kept.

    Raises:
        ValueError: On a ``pretrained`` path that is not a file, a built model without a
            tokenizer, bad prompts, an unknown ``reduce`` or an invalid rule.

    Example:
        >>> stage = ClipFilter("ViT-B-32", pretrained="weights/vit_b_32.bin",
        ...                    class_names=["cat", "dog"], keep=0.5)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | nn.Module,
        *,
        pretrained: str | Path | None = None,
        tokenizer: Callable[[list[str]], torch.Tensor] | None = None,
        class_names: Sequence[str] | None = None,
        prompts: Prompts | None = None,
        templates: str | Sequence[str] = "a photo of a {}.",
        reduce: str = "mean",
        keep: float | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(keep=keep, top_k=top_k, threshold=threshold)
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        self.prompts = _prompt_table(prompts, class_names, templates)
        self.reduce = reduce
        if isinstance(model, str):
            import open_clip

            if pretrained is not None and not Path(pretrained).is_file():
                raise ValueError(
                    f"pretrained must be the path of a local weights file, got {str(pretrained)!r} "
                    "(no such file); weights are never downloaded"
                )
            self.model_name = model
            # Building the model draws its initial weights from torch's global generator;
            # forking it leaves the caller's random stream untouched.
            with torch.random.fork_rng(devices=[]):
                self.model = open_clip.create_model_and_transforms(
                    model, pretrained=None if pretrained is None else str(pretrained)
                )[0]
            self.tokenizer = tokenizer if tokenizer is not None else open_clip.get_tokenizer(model)
        else:
            if pretrained is not None:
                raise ValueError(
                    "pretrained applies to a model name; load weights into a built model yourself"
                )
            if tokenizer is None:
                raise ValueError(
                    "a built CLIP model needs its tokenizer: pass "
                    "tokenizer=open_clip.get_tokenizer(name)"
                )
            missing = [m for m in ("encode_image", "encode_text") if not hasattr(model, m)]
            if missing:
                raise ValueError(f"model must be an open_clip-style model; it lacks {missing}")
            self.model_name = type(model).__qualname__
            self.model = model
            self.tokenizer = tokenizer
        self.image_size, self.mean, self.std, self.interpolation, self.resize_mode, self.fill = (
            self._preprocess_cfg()
        )
        self._text: torch.Tensor | None = None
        self._text_mask: torch.Tensor | None = None

    def _preprocess_cfg(
        self,
    ) -> tuple[tuple[int, int], torch.Tensor, torch.Tensor, str, str, float]:
        import open_clip
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        cfg = (
            dict(open_clip.get_model_preprocess_cfg(self.model))
            if hasattr(self.model, "visual")
            else {}
        )
        size = cfg.get("size") or getattr(getattr(self.model, "visual", None), "image_size", None)
        if size is None:
            raise ValueError(
                "cannot tell the model's input size: set model.visual.preprocess_cfg['size']"
            )
        size = (size, size) if isinstance(size, int) else tuple(size)
        mean = torch.tensor(cfg.get("mean") or OPENAI_DATASET_MEAN, dtype=torch.float32).view(
            1, -1, 1, 1
        )
        std = torch.tensor(cfg.get("std") or OPENAI_DATASET_STD, dtype=torch.float32).view(
            1, -1, 1, 1
        )
        interpolation = _INTERPOLATION.get(cfg.get("interpolation", "bicubic"), "bicubic")
        fill = float(cfg.get("fill_color", 0)) / 255
        return size, mean, std, interpolation, cfg.get("resize_mode", "shortest"), fill

    def to(self, device: torch.device | str) -> ClipFilter:
        super().to(device)
        self.model.to(self.device)
        if self._text is not None and self._text_mask is not None:
            self._text, self._text_mask = (
                self._text.to(self.device),
                self._text_mask.to(self.device),
            )
        return self

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize and normalise ``[0, 1]`` images to the model's input, with torch ops."""
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"ClipFilter takes (N, 1 or 3, H, W) images, got shape {tuple(images.shape)}"
            )
        x = images.float().expand(-1, 3, -1, -1)
        (th, tw), (h, w) = self.image_size, x.shape[-2:]
        if self.resize_mode == "squash":
            x = self._resize(x, th, tw)
        else:
            scale = max(th / h, tw / w) if self.resize_mode == "shortest" else min(th / h, tw / w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            x = self._resize(x, nh, nw)
            # Symmetric crop (negative padding) or pad to the target size.
            top, left = (th - nh) // 2, (tw - nw) // 2
            x = F.pad(x, (left, tw - nw - left, top, th - nh - top), value=self.fill)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x.clamp(0, 1) - mean) / std

    def _resize(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        if (h, w) == tuple(x.shape[-2:]):
            return x
        if self.interpolation == "nearest":
            return F.interpolate(x, size=(h, w), mode="nearest")
        # Antialiasing matches the PIL resize of open_clip's own transform when downscaling.
        return F.interpolate(
            x, size=(h, w), mode=self.interpolation, antialias=True, align_corners=False
        )

    def _dtype(self) -> torch.dtype:
        params = next(iter(getattr(self.model, "visual", self.model).parameters()), None)
        return params.dtype if params is not None else torch.float32

    def text_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-norm embeddings of all prompts ``(P, D)`` and ``(L, P)`` class-to-prompt mask."""
        if self._text is None or self._text_mask is None:
            owners = [c for c, texts in self.prompts.items() for _ in texts]
            texts = [t for c in self.prompts for t in self.prompts[c]]
            with torch.inference_mode(), eval_mode(self.model):
                parts = [
                    self.model.encode_text(
                        self.tokenizer(texts[i : i + TEXT_BATCH]).to(self.device)
                    )
                    for i in range(0, len(texts), TEXT_BATCH)
                ]
            self._text = F.normalize(torch.cat(parts).float(), dim=1)
            mask = torch.zeros(max(owners) + 1, len(texts), dtype=torch.bool)
            mask[torch.tensor(owners), torch.arange(len(texts))] = True
            self._text_mask = mask.to(self.device)
        return self._text, self._text_mask

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        text, mask = self.text_embeddings()
        labels = labels.to(mask.device)
        in_range = labels < len(mask)
        known = torch.zeros_like(in_range)
        known[in_range] = mask[labels[in_range]].any(dim=1)
        if not bool(known.all()):
            missing = sorted(set(labels[~known].tolist()))
            raise ValueError(
                f"ClipFilter has no prompts for classes {missing[:10]}; add them to prompts or "
                "class_names"
            )
        x = self.preprocess(images).to(self.device, self._dtype())
        with torch.inference_mode(), eval_mode(self.model):
            feats = F.normalize(self.model.encode_image(x).float(), dim=1)
        sims = feats @ text.T
        own = mask[labels]
        if self.reduce == "max":
            return sims.masked_fill(~own, -torch.inf).amax(dim=1)
        return (sims * own).sum(dim=1) / own.sum(dim=1)

    def _config(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "weights": describe(self.model),
            "prompts": sorted(self.prompts.items()),
            "reduce": self.reduce,
            "image_size": list(self.image_size),
            "resize_mode": self.resize_mode,
            "interpolation": self.interpolation,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
        }
