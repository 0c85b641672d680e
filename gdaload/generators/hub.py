"""Finding and loading a diffusers model: a local folder, the local hub cache, or the hub.

An offline machine must fail in seconds with the fix in the message, not after the hub
client's retries; :func:`locate_model` checks the network before it downloads.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging

from gdaload.generators.pipeline import ClassConditionalPipeline

__all__ = ["ModelNotAvailableError", "hub_reachable", "load_pipeline", "locate_model"]


class ModelNotAvailableError(OSError):
    """Weights are neither in a local folder nor reachable on the hub."""


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint answers a TCP connect within ``timeout`` seconds.

    Checked before a download so that an offline machine fails in seconds instead of
    waiting on the hub client's retries.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    if url.hostname is None:
        return False
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _not_available(model: str, cause: BaseException | None = None) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"cannot load diffusion model {model!r}: it is not a local folder, not in the local "
        "hub cache, and the hub cannot be reached. Download it on a machine with network "
        "access (e.g. DiffusionPipeline.download or `hf download "
        f"{model}`) and pass the folder: DiffusionGenerator.from_pretrained('/path/to/folder')"
        + (f" [{type(cause).__name__}: {cause}]" if cause else "")
    )


def locate_model(model: str | os.PathLike[str], local_files_only: bool | None = None) -> Path:
    """The local folder of a saved pipeline (``model_index.json`` inside), downloading a
    hub id if it is not cached and the hub can be reached.

    Args:
        model: A folder written by ``save_pretrained`` or a hub id.
        local_files_only: Only look in the local hub cache; by default, when the hub
            cannot be reached.

    Raises:
        ModelNotAvailableError: Within seconds when the weights are not local and the
            hub cannot be reached; the message says how to pass a local folder.
    """
    name = os.fspath(model)
    path = Path(name)
    if path.exists() and not (path / "model_index.json").is_file():
        raise ModelNotAvailableError(
            f"{path} has no model_index.json; save the model with "
            "pipeline.save_pretrained(folder) or gdaload train-generator"
        )
    if not path.exists() and (path.is_absolute() or name.startswith(".") or name.count("/") > 1):
        raise ModelNotAvailableError(
            f"model folder {name} does not exist; pass the folder written by "
            "save_pretrained or `gdaload train-generator --output FOLDER`"
        )
    if path.exists():
        return path
    if local_files_only is None:
        local_files_only = not hub_reachable()
    try:
        return Path(DiffusionPipeline.download(name, local_files_only=local_files_only))
    except Exception as err:  # the hub client raises many types for "not there"
        raise _not_available(name, err) from err


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide diffusers' "Loading pipeline components" bar while gdaload loads a model.

    The library loads its models as part of a user's run, often once per experiment;
    the user's own progress bars are what they need to see. diffusers' switch is
    global, so the previous setting is restored afterwards.
    """
    enabled = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            diffusers_logging.enable_progress_bar()


def load_pipeline(path: Path, torch_dtype: torch.dtype | None = None) -> DiffusionPipeline:
    """Load the pipeline in a folder found by :func:`locate_model`: a
    :class:`~gdaload.generators.pipeline.ClassConditionalPipeline`, or any other diffusers
    pipeline, with its safety checker off."""
    index = json.loads((path / "model_index.json").read_text())
    load_kwargs: dict[str, Any] = {"torch_dtype": torch_dtype} if torch_dtype else {}
    if index.get("_class_name") == ClassConditionalPipeline.__name__:
        with quiet_loading():
            return ClassConditionalPipeline.from_pretrained(path, **load_kwargs)
    if "safety_checker" in index:
        # Training data is not user-facing output; the checker would blank images.
        load_kwargs.update(safety_checker=None, requires_safety_checker=False)
    with quiet_loading():
        return DiffusionPipeline.from_pretrained(path, **load_kwargs)
