"""gdaload's metadata file in a saved generator folder.

A saved generator is a diffusers pipeline folder (``model_index.json`` and one subfolder
per module, written by ``DiffusionPipeline.save_pretrained``) plus :data:`GDALOAD_META`:
a JSON object with the generator's own settings that diffusers does not know about,
such as class names, view names and how the model was trained. Both the class-conditional
and the multi-view generators use this one scheme.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["GDALOAD_META", "read_metadata", "write_metadata"]

#: File beside ``model_index.json`` holding class names and how the model was trained.
GDALOAD_META = "gdaload.json"


def read_metadata(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata saved in ``folder``, or ``{}`` if it has none.

    Raises:
        ValueError: If the file does not hold a JSON object.
    """
    path = Path(folder) / GDALOAD_META
    if not path.is_file():
        return {}
    meta = json.loads(path.read_text())
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    return meta


def write_metadata(folder: str | os.PathLike[str], meta: dict[str, Any]) -> Path:
    """Write ``meta`` (JSON-serialisable) to ``folder``; returns the file's path.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = write_metadata(folder, {"class_names": ["cat", "dog"]})
        ...     read_metadata(folder)
        {'class_names': ['cat', 'dog']}
    """
    path = Path(folder) / GDALOAD_META
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta, indent=2))
    return path
