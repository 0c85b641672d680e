"""Checksummed safetensors shards: the on-disk unit of every gdaload cache.

A shard is written to a temporary name and moved into place with ``os.replace``, so a
reader sees either the whole file or none of it. Its metadata carries a SHA-256 of the
tensor bytes: a truncated file fails to parse and a flipped byte fails the checksum, so
a damaged shard is detected when read and never served. A process verifies a given file
(same inode, size and modification time) once; a file rewritten or modified in any way
is verified again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

__all__ = [
    "SHARD_FORMAT",
    "SHARD_SUFFIX",
    "CorruptShardError",
    "read_shard",
    "tensor_checksum",
    "write_shard",
]

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}

#: Version tag in every shard's metadata; a shard with another tag is not read.
SHARD_FORMAT = "gdaload-shard-1"
SHARD_SUFFIX = ".safetensors"

#: Files (device, inode, size, mtime) whose checksum this process has verified.
_VERIFIED: set[tuple[int, int, int, int]] = set()


class CorruptShardError(OSError):
    """A shard is truncated, unparsable, of another format or fails its checksum."""


def tensor_checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes of ``tensors``, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # A uint8 view hashes any dtype (bfloat16 has no NumPy equivalent). An ndarray
        # supports the buffer protocol, but NumPy's stubs only declare it (__buffer__)
        # for Python >= 3.12, the version mypy checks here being 3.10.
        digest.update(t.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]
    return digest.hexdigest()


def write_shard(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> int:
    """Atomically write ``tensors`` with ``metadata`` and a checksum to ``path``.

    Returns:
        The size of the written file in bytes.

    Raises:
        OSError: When the directory is not writable or the disk is full; no partial
            file is left behind.
    """
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {**metadata, "format": SHARD_FORMAT, "checksum": tensor_checksum(tensors)}
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except SafetensorError as err:
        # The writer reports I/O failures (disk full, file size limit, a folder removed
        # under it) in its own error type; callers handle them as the OSError they are.
        raise OSError(f"cannot write {path}: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size


def read_shard(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read and verify a whole shard.

    The file is read once into a buffer and its tensors are views of that buffer (no
    second copy); a layout that does not cover the file exactly is rejected.

    Returns:
        ``(tensors, metadata)``.

    Raises:
        CorruptShardError: On a truncated or unparsable file, another format or a
            checksum mismatch.
        FileNotFoundError: When the shard is gone (e.g. evicted by another process).
    """
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        data = bytearray(stat.st_size)
        f.readinto(data)
    identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    try:
        tensors, metadata = _parse(data)
    except (ValueError, KeyError, TypeError, RuntimeError) as err:  # json, layout, torch
        raise CorruptShardError(f"shard {path} cannot be parsed ({err})") from err
    if metadata.get("format") != SHARD_FORMAT:
        raise CorruptShardError(
            f"shard {path} has format {metadata.get('format')!r}, expected {SHARD_FORMAT!r}"
        )
    if identity not in _VERIFIED:
        if tensor_checksum(tensors) != metadata.get("checksum"):
            raise CorruptShardError(f"shard {path} fails its checksum")
        _VERIFIED.add(identity)
    return tensors, metadata


def _parse(data: bytearray) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (views of ``data``) and metadata of a safetensors file."""
    if len(data) < 8:
        raise ValueError("file too small for a safetensors header")
    header_len = int.from_bytes(data[:8], "little")
    start = 8 + header_len
    if start > len(data):
        raise ValueError("header runs past the end of the file")
    header = json.loads(data[8:start])
    metadata = header.pop("__metadata__", None) or {}
    tensors, covered = {}, 0
    for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        dtype, shape = _DTYPES[info["dtype"]], [int(d) for d in info["shape"]]
        count = math.prod(shape)
        if begin != covered or end - begin != count * dtype.itemsize or start + end > len(data):
            raise ValueError(f"tensor {name!r} does not fit the file's data section")
        flat = (
            torch.frombuffer(data, dtype=dtype, count=count, offset=start + begin)
            if count
            else torch.empty(0, dtype=dtype)
        )
        tensors[name] = flat.view(shape)
        covered = end
    if start + covered != len(data):
        raise ValueError("the data section does not match the file size")
    return tensors, metadata
