"""Adapters of a pretrained text-to-image model to a user's classes, and their loading.

An adapter folder (written by :func:`gdaload.train.adapt`) holds:

* ``learned_embeds.safetensors``: one embedding per class token, keyed by the token;
  each ``{token: embedding}`` pair is what diffusers' ``load_textual_inversion`` reads.
* ``pytorch_lora_weights.safetensors`` (LoRA adapters only): the UNet's (and maybe the
  text encoder's) LoRA layers, written by ``StableDiffusionPipeline.save_lora_weights``
  and read back by ``load_lora_weights``.
* :data:`ADAPTER_META`: the method, class names, tokens, the prompt template, the
  fingerprint of the base model, the settings and the steps trained.

An adapter only makes sense on the model it was trained on, so loading checks the base
model's fingerprint (:func:`base_fingerprint`) first.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from safetensors.torch import load_file

__all__ = [
    "ADAPTER_META",
    "EMBEDS_FILE",
    "LORA_FILE",
    "METHODS",
    "TEXT_PIPELINE_COMPONENTS",
    "Adapter",
    "AdapterMismatchError",
    "base_fingerprint",
    "check_text_pipeline_folder",
]

#: The adapter's own metadata, beside the weight files.
ADAPTER_META = "gdaload_adapter.json"
#: The learned token embeddings (diffusers' textual-inversion file name).
EMBEDS_FILE = "learned_embeds.safetensors"
#: The LoRA layers (diffusers' LoRA file name).
LORA_FILE = "pytorch_lora_weights.safetensors"
#: The ways of adapting a model.
METHODS = ("textual-inversion", "lora")
#: Components a Stable-Diffusion-family text-to-image pipeline folder must have.
TEXT_PIPELINE_COMPONENTS = ("tokenizer", "text_encoder", "unet", "vae", "scheduler")

# (folder, [(file, size, mtime)]) -> fingerprint: a base model is hashed once a process.
_BASE_FINGERPRINTS: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


class AdapterMismatchError(ValueError):
    """An adapter is loaded onto a base model other than the one it was trained on."""


def check_text_pipeline_folder(folder: str | os.PathLike[str]) -> Path:
    """``folder``, if it holds a Stable-Diffusion-family text-to-image pipeline.

    Raises:
        ValueError: Naming what was found: a missing folder, a folder without
            ``model_index.json`` (and what it holds instead), or a pipeline that lacks
            a text encoder, tokenizer, UNet or VAE, or has a second text encoder (SDXL).
    """
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"pipeline folder {path} does not exist")
    index_file = path / "model_index.json"
    if not index_file.is_file():
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        listing = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
        raise ValueError(
            f"{path} is not a diffusers pipeline folder: it has no model_index.json "
            f"(found: {listing or 'nothing'}); pass a Stable Diffusion folder written by "
            "save_pretrained or downloaded from the hub"
        )
    index = json.loads(index_file.read_text())
    name = index.get("_class_name", "an unnamed pipeline")
    components = sorted(k for k in index if not k.startswith("_"))
    missing = [c for c in TEXT_PIPELINE_COMPONENTS if index.get(c, [None])[0] is None]
    if missing or "text_encoder_2" in index:
        why = f"it lacks {', '.join(missing)}" if missing else "it has a second text encoder"
        raise ValueError(
            f"{path} holds a {name} (components: {', '.join(components)}), not a "
            f"Stable-Diffusion-family text-to-image pipeline: {why}. Adapting needs "
            f"{', '.join(TEXT_PIPELINE_COMPONENTS)} (Stable Diffusion 1.x/2.x)"
        )
    return path


def base_fingerprint(folder: str | os.PathLike[str]) -> str:
    """Fingerprint (16 hex digits) of a pipeline folder's tokenizer, text encoder, UNet
    and VAE files: names and full contents.

    The files are hashed rather than the loaded weights so that the fingerprint does not
    depend on the dtype or device the model is loaded in (an adapter trained in float32
    loads onto the same model in float16). The scheduler is left out: sampling with
    another scheduler is no reason to refuse an adapter.

    Example:
        >>> base_fingerprint("path/to/stable-diffusion")  # doctest: +SKIP
        '3f1c9a0e5b7d2c44'
    """
    root = Path(folder).resolve()
    files = sorted(
        p
        for part in ("tokenizer", "text_encoder", "unet", "vae")
        if (root / part).is_dir()
        for p in (root / part).rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    stats = tuple((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(root), stats)
    if key not in _BASE_FINGERPRINTS:
        digest = hashlib.sha256()
        for path in files:
            digest.update(f"{path.relative_to(root).as_posix()}|{path.stat().st_size};".encode())
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 24):
                    digest.update(chunk)
        _BASE_FINGERPRINTS[key] = digest.hexdigest()[:16]
    return _BASE_FINGERPRINTS[key]


@dataclass(frozen=True)
class Adapter:
    """What :data:`ADAPTER_META` records about an adapter, and loading it onto a pipeline.

    Attributes:
        method: One of :data:`METHODS`.
        class_names: The classes, in label order.
        tokens: The new token of each class.
        prompt: Template of the class prompts, with ``{token}`` (and maybe ``{name}``).
        base: :func:`base_fingerprint` of the model it was trained on.
        base_name: The base model's folder name, for messages.
        steps: Optimiser steps trained.
        settings: The training settings.
        folder: Where it was read from (not saved).

    Example:
        >>> adapter = Adapter("textual-inversion", ["cat"], ["<cat>"], "a photo of a {token}",
        ...                   base="0" * 16, base_name="sd", steps=10)
        >>> adapter.prompts()
        [['a photo of a <cat>']]
    """

    method: str
    class_names: list[str]
    tokens: list[str]
    prompt: str
    base: str
    base_name: str
    steps: int
    settings: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if len(self.tokens) != len(self.class_names):
            raise ValueError(
                f"{len(self.tokens)} tokens for {len(self.class_names)} classes; give one each"
            )
        if "{token}" not in self.prompt:
            raise ValueError(f"the prompt template must contain '{{token}}', got {self.prompt!r}")

    # ------------------------------------------------------------------ files
    def write(self, folder: str | os.PathLike[str]) -> Path:
        """Write :data:`ADAPTER_META` into ``folder``; returns its path."""
        meta = asdict(self)
        del meta["folder"]
        path = Path(folder) / ADAPTER_META
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> Adapter:
        """The adapter in ``folder``.

        Raises:
            ValueError: If ``folder`` has no :data:`ADAPTER_META` or lacks a weight file
                its method needs.
        """
        path = Path(folder)
        meta_file = path / ADAPTER_META
        if not meta_file.is_file():
            raise ValueError(
                f"{path} is not an adapter folder: it has no {ADAPTER_META}; make one with "
                "gdaload adapt (or gdaload.train.adapt)"
            )
        meta = json.loads(meta_file.read_text())
        adapter = cls(**meta, folder=path)
        for needed in adapter.files():
            if not needed.is_file():
                raise ValueError(f"the adapter in {path} lacks {needed.name}")
        return adapter

    def files(self) -> list[Path]:
        """The weight files of the adapter, in a fixed order."""
        if self.folder is None:
            raise ValueError("this adapter was not read from a folder")
        names = [EMBEDS_FILE] + ([LORA_FILE] if self.method == "lora" else [])
        return [self.folder / name for name in names]

    def fingerprint(self) -> str:
        """Fingerprint (16 hex digits) of the adapter's weight files and metadata: what a
        generator's config records, so a sample store keeps adapters apart."""
        digest = hashlib.sha256()
        files = self.files()
        for path in [*files, files[0].parent / ADAPTER_META]:
            digest.update(f"{path.name};".encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    # ------------------------------------------------------------------ use
    def prompts(self, template: str | None = None) -> list[list[str]]:
        """One prompt per class: ``template`` (default :attr:`prompt`) with ``{token}``
        and ``{name}`` filled."""
        template = template or self.prompt
        if "{token}" not in template:
            raise ValueError(
                f"a prompt template for an adapter must contain '{{token}}', got {template!r}"
            )
        return [
            [template.format(token=token, name=name)]
            for token, name in zip(self.tokens, self.class_names, strict=True)
        ]

    def check_base(self, base: str | os.PathLike[str]) -> None:
        """Raise :class:`AdapterMismatchError` unless ``base`` is the trained-on model."""
        found = base_fingerprint(base)
        if found != self.base:
            raise AdapterMismatchError(
                f"the adapter in {self.folder} was trained on another base model "
                f"({self.base_name!r}, fingerprint {self.base}); {os.fspath(base)} has "
                f"fingerprint {found}. Load it onto the model it was trained on"
            )

    def load_into(self, pipeline: DiffusionPipeline, base: str | os.PathLike[str]) -> None:
        """Check that ``base`` (the folder ``pipeline`` was loaded from) is the model the
        adapter was trained on, then load its tokens and LoRA layers through diffusers.

        Raises:
            AdapterMismatchError: If ``base`` is another model.
            ValueError: If a token of the adapter is already in the tokenizer.
        """
        self.check_base(base)
        embeds_file = self.files()[0]
        embeds = load_file(embeds_file)
        missing = [t for t in self.tokens if t not in embeds]
        if missing:
            raise ValueError(f"{embeds_file} has no embedding for tokens {missing}")
        # One {token: embedding} dict per token: diffusers' textual-inversion format.
        # Growing the embedding matrix draws throwaway rows from the global random state
        # (they are overwritten); fork_rng leaves the caller's state as it was.
        with torch.random.fork_rng(devices=[]):
            pipeline.load_textual_inversion(
                [{t: embeds[t]} for t in self.tokens], token=self.tokens
            )
        if self.method == "lora":
            pipeline.load_lora_weights(self.files()[1].parent, weight_name=LORA_FILE)
