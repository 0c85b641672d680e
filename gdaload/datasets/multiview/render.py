"""The ray caster of MultiViewShapes: a :class:`~.scene.Scene` to 8-bit images, in NumPy.

Every image is ray cast against the scene's unions of convex polyhedra with a
perspective camera, Lambertian shading (a directional key light, ambient light and a
weak light at the camera), 2x2 supersampling and 8-bit quantisation. Nothing is
downloaded and no global random state is used: the pixels are a function of the class,
the instance seed and the image size.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence

import numpy as np
import torch

from gdaload.datasets.multiview.scene import (
    ELEVATION_DEG,
    MAX_PLANES,
    VIEW_AZIMUTHS_DEG,
    Scene,
    check_class,
    draw_instance,
)

__all__ = ["check_seed", "check_size", "render_class", "render_instance", "to_float"]

MIN_SIZE = 16
SUPERSAMPLE = 2
_CAMERA_DISTANCE = 6.0
# Half the frame width at the object's distance, in world units: the largest object
# (a crate with a back block, seen from the side) still fits with a margin.
_FRAME_HALF_WIDTH = 1.3
# Bound on the ray-plane tests held in memory at once, so that memory use stays at
# tens of MB whatever the number of instances rendered in one call.
_CHUNK_ELEMENTS = 1 << 22


def _cameras(
    target_y: np.ndarray, jitter: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Origins and orthonormal bases ``(N, V, 3)`` of the four cameras of each instance."""
    az = np.radians(np.array(VIEW_AZIMUTHS_DEG))
    el = math.radians(ELEVATION_DEG)
    offset = np.stack(
        [np.sin(az) * math.cos(el), np.full(4, math.sin(el)), np.cos(az) * math.cos(el)], 1
    )
    target = np.stack([np.zeros_like(target_y), target_y, np.zeros_like(target_y)], 1)
    target = target[:, None, :] + jitter
    origin = target + _CAMERA_DISTANCE * offset[None]
    forward = -np.broadcast_to(offset, origin.shape)
    right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    up = np.cross(right, forward)
    return origin, forward, right, up


def _intersect(denom: np.ndarray, num: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where rays enter one convex piece given as half-spaces ``n . p <= c``.

    Arrays are plane-major, ``(P, M)``, so that reductions over the planes run as
    element-wise operations over long rows of rays.

    Args:
        denom: ``(P, M)`` ``n . direction`` of each plane and ray.
        num: ``(P, M)`` ``c - n . origin`` of each plane and ray.

    Returns:
        ``t`` of the entry point (``inf`` on a miss) and the index of the entered
        plane, both ``(M,)``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / denom
    entry = np.where(denom < 0, t, -np.inf)
    t_near = entry.max(0)
    face = entry.argmax(0)
    t_far = np.where(denom > 0, t, np.inf).min(0)
    # A ray parallel to a plane it starts outside of never enters the piece.
    outside_parallel = ((denom == 0) & (num < 0)).any(0)
    hit = (t_near < t_far) & (t_near > 0) & ~outside_parallel
    return np.where(hit, t_near, np.inf), face


def _cast(scene: Scene, jitter: np.ndarray, size: int) -> np.ndarray:
    """Render the ``N`` instances of ``scene`` from the four views, as uint8 ``(N, 4, 3, H, W)``.

    ``jitter`` is the ``(N, 4, 3)`` offset of each camera's target (see
    :func:`~gdaload.datasets.multiview.scene.draw_instance`).
    """
    n = jitter.shape[0]
    s = size * SUPERSAMPLE
    origin, forward, right, up = _cameras(scene.target_y, jitter)
    grid = (np.arange(s) + 0.5) / s * 2.0 - 1.0
    grid *= _FRAME_HALF_WIDTH / _CAMERA_DISTANCE
    px = np.tile(grid, s)
    py = np.repeat(-grid, s)
    # The camera bases are orthonormal, so every camera's rays share these lengths.
    inv_length = 1.0 / np.sqrt(1.0 + px**2 + py**2)
    dirs = (
        forward[:, :, None, :] * inv_length[:, None]
        + (px * inv_length)[:, None] * right[:, :, None, :]
        + (py * inv_length)[:, None] * up[:, :, None, :]
    ).astype(np.float32)

    # Most rays pass beside the object; tracing only those that meet its bounding
    # sphere saves much of the work.
    centre = np.stack([np.zeros(n), scene.centre_y, np.zeros(n)], 1)
    oc = origin - centre[:, None, :]
    b = np.einsum("nvrk,nvk->nvr", dirs, oc)
    c = np.sum(oc * oc, -1) - (scene.radius**2)[:, None]
    rays = np.flatnonzero(b * b - c[:, :, None] > 0)
    inst = rays // (4 * s * s)
    camera = rays // (s * s)
    d = dirs.reshape(-1, 3)[rays]
    per_instance = np.bincount(inst, minlength=n)
    per_camera = np.bincount(camera, minlength=n * 4)

    best_t = np.full(len(rays), np.inf, np.float32)
    best_n = np.zeros((len(rays), 3), np.float32)
    material = np.zeros(len(rays), np.int64)
    for planes, mat in scene.pieces:
        normals = planes[..., :3]
        # Rays are sorted by instance and camera, so repeating per-instance planes
        # lines them up with the rays (faster than gathering them ray by ray). Dot
        # products are written out rather than left to a matrix product, whose
        # summation order (hence last bits) may change with batch size or threads.
        n32 = normals.astype(np.float32)
        denom = sum(np.repeat(n32[:, :, k].T, per_instance, 1) * d[:, k] for k in range(3))
        num = planes[:, None, :, 3] - np.sum(origin[:, :, None, :] * normals[:, None], -1)
        num = np.repeat(num.reshape(n * 4, -1).T.astype(np.float32), per_camera, 1)
        t, face = _intersect(denom, num)
        closer = t < best_t
        best_t[closer] = t[closer]
        best_n[closer] = normals[inst[closer], face[closer]]
        material[closer] = mat
    hit = np.isfinite(best_t)

    albedo = scene.albedo[inst, material]
    light = scene.light[inst]
    lambert = np.clip(sum(best_n[:, k] * light[:, k] for k in range(3)), 0.0, None)
    facing = np.clip(-sum(best_n[:, k] * d[:, k] for k in range(3)), 0.0, None)
    shade = scene.ambient[inst] + scene.key[inst] * lambert + scene.fill[inst] * facing
    colour = np.repeat(scene.background.astype(np.float32), 4 * s * s)[:, None].repeat(3, 1)
    colour[rays[hit]] = np.clip(albedo[hit] * shade[hit, None], 0.0, 1.0)

    # Each pixel is the mean of its SUPERSAMPLE x SUPERSAMPLE samples, added in a fixed
    # order so that the last bits do not depend on the batch.
    colour = colour.reshape(n, 4, size, SUPERSAMPLE, size, SUPERSAMPLE, 3)
    samples = [colour[:, :, :, i, :, j] for i in range(SUPERSAMPLE) for j in range(SUPERSAMPLE)]
    colour = functools.reduce(operator.add, samples)
    colour /= SUPERSAMPLE**2
    return np.round(colour.transpose(0, 1, 4, 2, 3) * 255.0).astype(np.uint8)


def render_class(class_index: int, instance_seeds: Sequence[int], size: int) -> np.ndarray:
    """Render instances of one class from the four views, as uint8 ``(N, 4, 3, H, W)``.

    Instances are cast in chunks that bound memory use; the pixels do not depend on
    the chunking. Arguments are not checked (see :func:`render_instance`).
    """
    drawn = [draw_instance(seed) for seed in instance_seeds]
    u = np.stack([d[0] for d in drawn])
    jitter = np.stack([d[1] for d in drawn])
    chunk = max(1, _CHUNK_ELEMENTS // (4 * (size * SUPERSAMPLE) ** 2 * MAX_PLANES))
    parts = [
        _cast(Scene(class_index, u[i : i + chunk]), jitter[i : i + chunk], size)
        for i in range(0, len(drawn), chunk)
    ]
    return np.concatenate(parts)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as float32 in ``[0, 1]``, as the datasets return them."""
    return images.to(torch.float32).div(255.0)


def check_size(size: int) -> None:
    """Raise a ValueError unless ``size`` is an integer of at least :data:`MIN_SIZE`."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ValueError(
            f"size must be an integer of at least {MIN_SIZE} pixels, got {size!r}; "
            f"pass e.g. size=32"
        )


def check_seed(seed: int, what: str) -> None:
    """Raise a ValueError, naming ``what``, unless ``seed`` is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {seed!r}")


def render_instance(class_index: int, instance_seed: int, size: int = 32) -> torch.Tensor:
    """Render one object from the four views.

    A pure function: the result depends only on the arguments. The instance's body,
    colours, light and camera jitter depend only on ``instance_seed``, so the classes
    of one family rendered from the same seed differ only where their feature shows.

    Args:
        class_index: Index into :data:`~gdaload.datasets.multiview.scene.CLASSES`.
        instance_seed: Non-negative integer.
        size: Image height and width in pixels, at least 16.

    Returns:
        Float tensor ``(4, 3, size, size)`` in ``[0, 1]``, views in
        :data:`~gdaload.datasets.multiview.scene.VIEW_NAMES` order, quantised to multiples
        of 1/255 exactly as :class:`~gdaload.datasets.multiview.dataset.MultiViewShapes`
        returns them.

    Example:
        >>> from gdaload.datasets.multiview import CLASSES
        >>> views = render_instance(CLASSES.index("crate_back_knob"), instance_seed=7)
        >>> views.shape
        torch.Size([4, 3, 32, 32])
        >>> plain = render_instance(CLASSES.index("crate"), instance_seed=7)
        >>> bool((views[0] == plain[0]).all()), bool((views[1] == plain[1]).all())
        (True, False)
    """
    check_class(class_index)
    check_seed(instance_seed, "instance_seed")
    check_size(size)
    images = render_class(int(class_index), [int(instance_seed)], size)
    return to_float(torch.from_numpy(images[0]))
