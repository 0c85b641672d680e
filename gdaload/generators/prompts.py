"""Per-class prompts of text-to-image generators, and the choice of one per sample."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from gdaload.seeding import Stream, derive_rng

__all__ = ["PromptEmbeddings", "PromptEncoder", "PromptsLike", "pick_prompt", "resolve_prompts"]

#: The positive and negative embeddings of prompts.
PromptEmbeddings = tuple[torch.Tensor, torch.Tensor]

#: Per-class prompts: a template with ``{name}``, a list of prompt lists (one per class),
#: a mapping class name -> prompts, or a path to a JSON file holding such a mapping.
PromptsLike = str | os.PathLike | Sequence[Sequence[str]] | Mapping[str, Sequence[str]]


def resolve_prompts(prompts: PromptsLike, class_names: Sequence[str] | None) -> list[list[str]]:
    """One non-empty list of prompts per class.

    Raises:
        FileNotFoundError: For a JSON path that does not exist.
        ValueError: For a template without ``{name}`` or ``class_names``, a class without
            prompts, or prompts and ``class_names`` of different lengths.

    Example:
        >>> resolve_prompts("a photo of a {name}", ["cat", "dog"])
        [['a photo of a cat'], ['a photo of a dog']]
    """
    if isinstance(prompts, (str, os.PathLike)) and Path(prompts).suffix == ".json":
        path = Path(prompts)
        if not path.is_file():
            raise FileNotFoundError(f"prompt file {path} does not exist")
        prompts = json.loads(path.read_text())
    if isinstance(prompts, os.PathLike):
        raise ValueError(f"a prompt file must be a .json file, got {os.fspath(prompts)!r}")
    if isinstance(prompts, str):
        if "{name}" not in prompts:
            raise ValueError(f"a prompt template must contain '{{name}}', got {prompts!r}")
        if not class_names:
            raise ValueError("a prompt template needs class_names=[...] to fill '{name}'")
        return [[prompts.format(name=n)] for n in class_names]
    if isinstance(prompts, Mapping):
        names = list(class_names) if class_names else list(prompts)
        missing = [n for n in names if n not in prompts]
        if missing:
            raise ValueError(f"prompts have no entry for classes {missing}; add one per class")
        prompts = [prompts[n] for n in names]
    out = [[p] if isinstance(p, str) else list(p) for p in prompts]
    if class_names is not None and len(out) != len(class_names):
        raise ValueError(f"got prompts for {len(out)} classes but {len(class_names)} class_names")
    empty = [i for i, p in enumerate(out) if not p]
    if empty:
        raise ValueError(f"classes {empty} have no prompt; give at least one per class")
    return out


def pick_prompt(choices: Sequence[str], seed: int) -> int:
    """Index of the prompt a sample uses among its class's ``choices``, drawn from its seed.

    Example:
        >>> pick_prompt(["a cat"], 7)
        0
    """
    if len(choices) <= 1:
        return 0
    return int(derive_rng(seed, Stream.PROMPT_CHOICE).integers(len(choices)))


class PromptEncoder:
    """Embeddings of each sample's prompt through a text-to-image pipeline's
    ``encode_prompt``; each distinct prompt is encoded once and kept in :attr:`cache`.

    Args:
        prompts: One list of prompts per class, see :func:`resolve_prompts`.

    Example:
        >>> encoder = PromptEncoder([["a cat"], ["a dog", "a puppy"]])
        >>> encoder.prompts[1][pick_prompt(encoder.prompts[1], 3)] in ("a dog", "a puppy")
        True
    """

    def __init__(self, prompts: list[list[str]]) -> None:
        self.prompts = prompts
        #: ``(label, prompt index) -> embeddings``; clear it when the negative prompt changes.
        self.cache: dict[tuple[int, int], PromptEmbeddings] = {}

    def __call__(
        self,
        pipeline: Any,
        device: torch.device,
        labels: list[int],
        seeds: list[int],
        negative_prompt: str | None,
    ) -> PromptEmbeddings:
        """Positive and negative embeddings ``(B, ...)``; the prompt among a class's list
        is picked from the sample's seed."""
        positive, negative = [], []
        for label, seed in zip(labels, seeds, strict=True):
            choices = self.prompts[label]
            index = pick_prompt(choices, seed)
            key = (label, index)
            if key not in self.cache:
                self.cache[key] = pipeline.encode_prompt(
                    choices[index], device, 1, True, negative_prompt=negative_prompt
                )
            pos, neg = self.cache[key]
            positive.append(pos)
            negative.append(neg)
        return torch.cat(positive), torch.cat(negative)
