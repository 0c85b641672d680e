"""Procedural multi-view objects whose classes are ambiguous from a single view.

A stand-in for multi-view renderings of 3D object classes (as in multi-view generative
augmentation, where missing views of a single-view image are generated and a
classifier's predictions are averaged over views). Nothing is downloaded: every image
is ray cast here, in NumPy, against unions of convex polyhedra, with a perspective
camera, Lambertian shading (a directional key light, ambient light and a weak light at
the camera), 2x2 supersampling and 8-bit quantisation.

Each object sits on the ground, faces ``+z`` and is seen from four fixed cameras at
:data:`ELEVATION_DEG` above the horizon: front (azimuth 0°), back (180°), left (90°,
the object's left side, ``+x``) and right (270°).

The 16 classes (:data:`CLASSES`) are four body *families* times four *features*; a
plain class is named after its family (``crate``), the others ``family_feature``
(``crate_back_block``, ``crate_back_knob``, ``crate_left_knob``, ``house``, ...).

=============  ===============================================================
family         body
=============  ===============================================================
``crate``      cuboid
``house``      cuboid walls under a gable roof whose ridge runs left to right
``ramp``       wedge, tall at the back and sloping down to a low front lip
``drum``       upright octagonal prism
=============  ===============================================================

==============  ================================================  ====================
feature         what is added                                     views that reveal it
==============  ================================================  ====================
(plain)         nothing                                           none (reference)
``back_block``  a low block in a second colour behind the body    back, left, right
``back_knob``   a dark peg standing out of the back face          back, left, right
``left_knob``   a dark peg standing out of the left face          left, front, back
==============  ================================================  ====================

A knob shows face on in the view that faces it (a dark octagon) and only as a small
bump on the silhouette in the two views beside it, a few pixels wide: the feature is
there, but hard to read, as a real object's far side shows only in part. In every
other view a feature is hidden (behind the body and below the line of sight over it),
so for a given instance seed the classes of a family render *identical pixels* in
every view that does not reveal their feature (:data:`REVEALING_VIEWS`). Hence:

* from the front, ``family``, ``family_back_block`` and ``family_back_knob`` look the
  same, so a front-view classifier cannot beat 50% accuracy;
* from the right, ``family`` and ``family_left_knob`` look the same (75% at most);
* from the back and from the left every class can be told apart, some only by a bump;
* the four views together tell every class apart (the family shows in every view).

A model that has seen many objects from all sides (a novel-view generator) can turn a
bump into the face-on view of the knob, which a classifier trained on few single views
reads far more easily: the mechanism that test-time averaging over generated views
relies on. Where a view hides a feature altogether, no model can recover it.

Per instance, the size, proportions, colours, light direction and intensities,
background grey and a small per-view camera jitter are drawn from a generator seeded
only by the instance seed; the class only decides which feature is built. Instance
seeds come from ``(dataset seed, split, class, index)`` through
:class:`numpy.random.SeedSequence`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from gdaload.seeding import derive_seed

__all__ = [
    "CLASSES",
    "ELEVATION_DEG",
    "REVEALING_VIEWS",
    "VIEW_AZIMUTHS_DEG",
    "VIEW_NAMES",
    "MultiViewShapes",
    "SingleView",
    "lookalikes",
    "render_instance",
]

VIEW_NAMES: tuple[str, ...] = ("front", "back", "left", "right")
VIEW_AZIMUTHS_DEG: tuple[float, ...] = (0.0, 180.0, 90.0, 270.0)
ELEVATION_DEG: float = 20.0

_FAMILIES = ("crate", "house", "ramp", "drum")
_FEATURES = ("plain", "back_block", "back_knob", "left_knob")
_FEATURE_VIEWS = {
    "plain": (),
    "back_block": ("back", "left", "right"),
    "back_knob": ("back", "left", "right"),
    "left_knob": ("front", "back", "left"),
}

#: Class names, family-major: ``CLASSES[4 * family + feature]``.
CLASSES: tuple[str, ...] = tuple(
    family if feature == "plain" else f"{family}_{feature}"
    for family in _FAMILIES
    for feature in _FEATURES
)

#: For each class, the views in which it differs from the plain body of its family
#: rendered from the same instance seed (empty for the plain classes).
REVEALING_VIEWS: dict[str, tuple[str, ...]] = {
    name: _FEATURE_VIEWS[_FEATURES[i % len(_FEATURES)]] for i, name in enumerate(CLASSES)
}

_SPLITS = {"train": 0, "test": 1}
_MIN_SIZE = 16
_SUPERSAMPLE = 2
_CAMERA_DISTANCE = 6.0
# Half the frame width at the object's distance, in world units: the largest object
# (a crate with a back block, seen from the side) still fits with a margin.
_FRAME_HALF_WIDTH = 1.3
# Bound on the ray-plane tests held in memory at once, so that memory use stays at
# tens of MB whatever the number of instances rendered in one call.
_CHUNK_ELEMENTS = 1 << 22
# Most half-spaces in one piece (the octagonal prism).
_MAX_PLANES = 10

# Every instance draws the same uniforms in the same order whatever its class, so the
# classes of a family share body, colours and light for a given instance seed and
# differ only by their feature.
_PARAMS = (
    "scale",
    "width",
    "depth",
    "height",
    "shape",
    "block_width",
    "block_height",
    "block_depth",
    "knob_radius",
    "hue",
    "saturation",
    "value",
    "accent_hue",
    "accent_saturation",
    "accent_value",
    "knob_grey",
    "light_azimuth",
    "light_elevation",
    "key",
    "ambient",
    "fill",
    "background",
    "knob_length",
)
_P = {name: i for i, name in enumerate(_PARAMS)}
_JITTER = 0.05
# How deep a knob reaches into the face it stands on, so no seam shows where they meet.
_KNOB_INSET = 0.05


def _lerp(u: np.ndarray, low: float, high: float) -> np.ndarray:
    return low + u * (high - low)


def _box(
    x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray, z0: np.ndarray, z1: np.ndarray
) -> np.ndarray:
    """Half-spaces ``n . p <= c`` of axis-aligned boxes, shape ``(N, 6, 4)``."""
    n = x0.shape[0]
    normals = np.array(
        [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64
    )
    offsets = np.stack([x1, -x0, y1, -y0, z1, -z0], axis=1)
    return np.concatenate([np.broadcast_to(normals, (n, 6, 3)), offsets[..., None]], axis=2)


def _plane(normal: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Half-space with outward ``normal`` (N, 3) through ``point`` (N, 3), shape (N, 1, 4)."""
    normal = normal / np.linalg.norm(normal, axis=1, keepdims=True)
    offset = np.sum(normal * point, axis=1, keepdims=True)
    return np.concatenate([normal, offset], axis=1)[:, None, :]


def _knob(
    base: np.ndarray, axis: int, sign: float, radius: np.ndarray, length: np.ndarray
) -> np.ndarray:
    """Half-spaces ``(N, 10, 4)`` of an octagonal peg standing on a face.

    Args:
        base: ``(N, 3)`` centre of the peg's foot, on the face.
        axis: World axis of the face's normal (0 for x, 2 for z).
        sign: Direction of the normal along ``axis`` (+1 or -1).
        radius: ``(N,)`` apothem of the octagon.
        length: ``(N,)`` how far the peg stands out of the face.
    """
    n = base.shape[0]
    across = [k for k in range(3) if k != axis]
    angles = np.arange(8) * (math.pi / 4)
    normals = np.zeros((8, 3))
    normals[:, across[0]] = np.cos(angles)
    normals[:, across[1]] = np.sin(angles)
    sides = np.concatenate(
        [np.broadcast_to(normals, (n, 8, 3)), (base @ normals.T + radius[:, None])[..., None]], 2
    )
    outward = np.zeros(3)
    outward[axis] = sign
    top = np.concatenate(
        [np.broadcast_to(outward, (n, 3)), (sign * base[:, axis] + length)[:, None]], 1
    )
    foot = np.concatenate(
        [np.broadcast_to(-outward, (n, 3)), (-sign * base[:, axis] + _KNOB_INSET)[:, None]], 1
    )
    return np.concatenate([sides, top[:, None], foot[:, None]], 1)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + 6.0 * (h % 1.0)[:, None]) % 6.0
    return v[:, None] - (v * s)[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


class _Scene:
    """Geometry and materials of ``N`` instances of one class, in world units.

    ``pieces`` are convex polyhedra ``(planes (N, P, 4), material)`` whose union is the
    object; material 0 is the body colour, 1 the accent colour, 2 the knobs' dark grey.
    """

    def __init__(self, class_index: int, u: np.ndarray) -> None:
        family = _FAMILIES[class_index // len(_FEATURES)]
        feature = _FEATURES[class_index % len(_FEATURES)]
        n = u.shape[0]
        zero = np.zeros(n)
        width = _lerp(u[:, _P["width"]], 1.1, 1.6)
        depth = _lerp(u[:, _P["depth"]], 0.9, 1.3)
        height = u[:, _P["height"]]
        shape = u[:, _P["shape"]]

        # Per family: the body's half-spaces; back_h, the back face's height; top, the
        # highest point; back_z and side_x, where the back and left faces lie; back_w and
        # side_w, their usable widths; side_z and side_h, the depth of the left knob's
        # centre and the face's height there; reach, the body's horizontal radius.
        if family == "crate":
            height = _lerp(height, 0.8, 1.2)
            body = _box(-width / 2, width / 2, zero, height, -depth / 2, depth / 2)
            back_h, top = height, height
            side_z, side_h = zero, height
            back_z, side_x, back_w, side_w = -depth / 2, width / 2, width, depth
            reach = np.hypot(width, depth) / 2
        elif family == "house":
            wall = _lerp(height, 0.65, 0.95)
            # Roof slopes steeper than the line of sight keep the back slope, and what
            # stands behind the house, out of the front view.
            roof = _lerp(shape, 0.55, 0.9) * depth / 2
            walls = _box(-width / 2, width / 2, zero, wall + roof, -depth / 2, depth / 2)
            front_slope = _plane(
                np.stack([zero, depth / 2, roof], 1), np.stack([zero, wall, depth / 2], 1)
            )
            back_slope = _plane(
                np.stack([zero, depth / 2, -roof], 1), np.stack([zero, wall, -depth / 2], 1)
            )
            body = np.concatenate([walls, front_slope, back_slope], axis=1)
            back_h, top = wall, wall + roof
            side_z, side_h = zero, wall
            back_z, side_x, back_w, side_w = -depth / 2, width / 2, width, depth
            reach = np.hypot(width, depth) / 2
        elif family == "ramp":
            height = _lerp(height, 0.9, 1.3)
            lip = _lerp(shape, 0.2, 0.4) * height
            box = _box(-width / 2, width / 2, zero, height, -depth / 2, depth / 2)
            slope = _plane(
                np.stack([zero, depth, height - lip], 1),
                np.stack([zero, height, -depth / 2], 1),
            )
            body = np.concatenate([box, slope], axis=1)
            back_h, top = height, height
            # The left face is a trapezoid: its knob sits in the taller, rear part.
            side_z = -depth / 6
            side_h = height - (height - lip) / 3
            back_z, side_x, back_w, side_w = -depth / 2, width / 2, width, depth * 2 / 3
            reach = np.hypot(width, depth) / 2
        else:
            height = _lerp(height, 0.9, 1.4)
            apothem = 0.42 * width
            angles = np.arange(8) * (math.pi / 4)
            normals = np.stack([np.sin(angles), np.zeros(8), np.cos(angles)], 1)
            sides = np.concatenate(
                [
                    np.broadcast_to(normals, (n, 8, 3)),
                    np.broadcast_to(apothem[:, None, None], (n, 8, 1)),
                ],
                axis=2,
            )
            caps = _box(-apothem, apothem, zero, height, -apothem, apothem)[:, 2:4]
            body = np.concatenate([sides, caps], axis=1)
            facet = 2 * apothem * math.tan(math.pi / 8)
            back_h, top = height, height
            side_z, side_h = zero, height
            back_z, side_x, back_w, side_w = -apothem, apothem, facet, facet
            reach = apothem / math.cos(math.pi / 8)

        self.pieces: list[tuple[np.ndarray, int]] = [(body, 0)]
        if feature == "back_block":
            half = _lerp(u[:, _P["block_width"]], 0.3, 0.6) * np.minimum(back_w, width * 0.6) / 2
            block_h = _lerp(u[:, _P["block_height"]], 0.35, 0.5) * back_h
            block_d = _lerp(u[:, _P["block_depth"]], 0.25, 0.35) * depth
            # The block reaches into the body so no seam shows where they meet.
            self.pieces.append(
                (_box(-half, half, zero, block_h, back_z - block_d, back_z + 0.2 * depth), 1)
            )
            reach = np.maximum(reach, np.hypot(half, block_d - back_z))
        elif feature == "back_knob":
            radius = _lerp(u[:, _P["knob_radius"]], 0.25, 0.35) * np.minimum(back_w, back_h)
            length = _lerp(u[:, _P["knob_length"]], 0.15, 0.25)
            base = np.stack([zero, back_h / 2, back_z], 1)
            self.pieces.append((_knob(base, 2, -1.0, radius, length), 2))
            reach = np.maximum(reach, np.hypot(radius, length - back_z))
        elif feature == "left_knob":
            radius = _lerp(u[:, _P["knob_radius"]], 0.25, 0.35) * np.minimum(side_w, side_h)
            length = _lerp(u[:, _P["knob_length"]], 0.15, 0.25)
            base = np.stack([side_x, 0.45 * side_h, side_z], 1)
            self.pieces.append((_knob(base, 0, 1.0, radius, length), 2))
            reach = np.maximum(reach, np.hypot(side_x + length, np.abs(side_z) + radius))

        scale = _lerp(u[:, _P["scale"]], 0.85, 1.1)
        self.pieces = [(_scaled(planes, scale), m) for planes, m in self.pieces]
        # The cameras aim a little below mid-height because they look down on the top.
        self.target_y = 0.45 * top * scale
        # A sphere around the object: only rays that meet it are traced further.
        self.centre_y = top / 2 * scale
        self.radius = np.hypot(reach, top / 2) * scale


def _scaled(planes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    out = planes.copy()
    out[..., 3] *= scale[:, None]
    return out


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


def _render(class_index: int, u: np.ndarray, jitter: np.ndarray, size: int) -> np.ndarray:
    """Render ``N`` instances of one class from the four views, as uint8 ``(N, 4, 3, H, W)``."""
    scene = _Scene(class_index, u)
    n = u.shape[0]
    s = size * _SUPERSAMPLE
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

    body = _hsv_to_rgb(
        u[:, _P["hue"]],
        _lerp(u[:, _P["saturation"]], 0.35, 0.8),
        _lerp(u[:, _P["value"]], 0.6, 0.95),
    )
    accent = _hsv_to_rgb(
        u[:, _P["hue"]] + _lerp(u[:, _P["accent_hue"]], 0.3, 0.7),
        _lerp(u[:, _P["accent_saturation"]], 0.5, 0.9),
        _lerp(u[:, _P["accent_value"]], 0.45, 0.85),
    )
    grey = np.repeat(_lerp(u[:, _P["knob_grey"]], 0.05, 0.15)[:, None], 3, 1)
    albedo = np.stack([body, accent, grey], 1)[inst, material]

    az = u[:, _P["light_azimuth"]] * 2 * math.pi
    el = np.radians(_lerp(u[:, _P["light_elevation"]], 25.0, 65.0))
    light = np.stack([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], 1)
    key = _lerp(u[:, _P["key"]], 0.45, 0.75)
    ambient = _lerp(u[:, _P["ambient"]], 0.25, 0.4)
    # A light at the camera keeps faces turned away from the key light readable.
    fill = _lerp(u[:, _P["fill"]], 0.15, 0.3)
    light = light[inst]
    lambert = np.clip(sum(best_n[:, k] * light[:, k] for k in range(3)), 0.0, None)
    facing = np.clip(-sum(best_n[:, k] * d[:, k] for k in range(3)), 0.0, None)
    shade = ambient[inst] + key[inst] * lambert + fill[inst] * facing
    background = _lerp(u[:, _P["background"]], 0.85, 1.0)
    colour = np.repeat(background.astype(np.float32), 4 * s * s)[:, None].repeat(3, 1)
    colour[rays[hit]] = np.clip(albedo[hit] * shade[hit, None], 0.0, 1.0)

    colour = colour.reshape(n, 4, size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3)
    colour = sum(colour[:, :, :, i, :, j] for i in range(_SUPERSAMPLE) for j in range(_SUPERSAMPLE))
    colour /= _SUPERSAMPLE**2
    return np.round(colour.transpose(0, 1, 4, 2, 3) * 255.0).astype(np.uint8)


def _draw(instance_seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence(instance_seed))
    u = rng.random(len(_PARAMS))
    jitter = rng.uniform(-_JITTER, _JITTER, (4, 3))
    return u, jitter


def _render_class(class_index: int, instance_seeds: Sequence[int], size: int) -> np.ndarray:
    drawn = [_draw(seed) for seed in instance_seeds]
    u = np.stack([d[0] for d in drawn])
    jitter = np.stack([d[1] for d in drawn])
    chunk = max(1, _CHUNK_ELEMENTS // (4 * (size * _SUPERSAMPLE) ** 2 * _MAX_PLANES))
    parts = [
        _render(class_index, u[i : i + chunk], jitter[i : i + chunk], size)
        for i in range(0, len(drawn), chunk)
    ]
    return np.concatenate(parts)


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32).div(255.0)


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < _MIN_SIZE:
        raise ValueError(
            f"size must be an integer of at least {_MIN_SIZE} pixels, got {size!r}; "
            f"pass e.g. size=32"
        )


def _check_class(class_index: int) -> None:
    if (
        isinstance(class_index, bool)
        or not isinstance(class_index, (int, np.integer))
        or not (0 <= class_index < len(CLASSES))
    ):
        raise ValueError(
            f"class_index must be an integer in [0, {len(CLASSES)}), got {class_index!r}"
        )


def _check_seed(seed: int, what: str) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {seed!r}")


def lookalikes(class_index: int, view: int | str) -> tuple[int, ...]:
    """The classes that render exactly like ``class_index`` from ``view``.

    For a given instance seed, these classes give identical pixels in that view (see
    :data:`REVEALING_VIEWS`): the class itself when the view reveals its feature, else
    every class of its family whose feature the view hides, the plain one included. A
    perfect classifier that sees only ``view`` can do no better than guess among them.

    Args:
        class_index: Index into :data:`CLASSES`.
        view: Index into :data:`VIEW_NAMES` or a view name.

    Returns:
        Class indices in increasing order, ``class_index`` among them.

    Example:
        >>> [CLASSES[c] for c in lookalikes(CLASSES.index("crate"), "front")]
        ['crate', 'crate_back_block', 'crate_back_knob']
        >>> [CLASSES[c] for c in lookalikes(CLASSES.index("crate_left_knob"), "front")]
        ['crate_left_knob']
    """
    _check_class(class_index)
    name = VIEW_NAMES[_view_index(view)]
    if name in REVEALING_VIEWS[CLASSES[class_index]]:
        return (int(class_index),)
    family = class_index - class_index % len(_FEATURES)
    return tuple(
        k for k in range(family, family + len(_FEATURES)) if name not in REVEALING_VIEWS[CLASSES[k]]
    )


def render_instance(class_index: int, instance_seed: int, size: int = 32) -> torch.Tensor:
    """Render one object from the four views.

    A pure function: the result depends only on the arguments. The instance's body,
    colours, light and camera jitter depend only on ``instance_seed``, so the classes
    of one family rendered from the same seed differ only where their feature shows.

    Args:
        class_index: Index into :data:`CLASSES`.
        instance_seed: Non-negative integer.
        size: Image height and width in pixels, at least 16.

    Returns:
        Float tensor ``(4, 3, size, size)`` in ``[0, 1]``, views in :data:`VIEW_NAMES`
        order, quantised to multiples of 1/255 exactly as :class:`MultiViewShapes`
        returns them.

    Example:
        >>> views = render_instance(CLASSES.index("crate_back_knob"), instance_seed=7)
        >>> views.shape
        torch.Size([4, 3, 32, 32])
        >>> plain = render_instance(CLASSES.index("crate"), instance_seed=7)
        >>> bool((views[0] == plain[0]).all()), bool((views[1] == plain[1]).all())
        (True, False)
    """
    _check_class(class_index)
    _check_seed(instance_seed, "instance_seed")
    _check_size(size)
    images = _render_class(int(class_index), [int(instance_seed)], size)
    return _to_float(torch.from_numpy(images[0]))


@functools.lru_cache(maxsize=4)
def _render_split(seed: int, split: str, per_class: int, size: int) -> torch.Tensor:
    """All four views of a split, ``(C * per_class, 4, 3, size, size)`` uint8, class-major.

    Memoised because train/test datasets, single-view wrappers and repeated test or
    notebook constructions ask for the same images again.
    """
    split_id = _SPLITS[split]
    images = [
        _render_class(c, [derive_seed(seed, split_id, c, k) for k in range(per_class)], size)
        for c in range(len(CLASSES))
    ]
    return torch.from_numpy(np.concatenate(images))


def _view_index(view: int | str) -> int:
    if isinstance(view, str):
        if view not in VIEW_NAMES:
            raise ValueError(f"unknown view name {view!r}; use one of {VIEW_NAMES} or 0..3")
        return VIEW_NAMES.index(view)
    if isinstance(view, bool) or not isinstance(view, (int, np.integer)) or not 0 <= view < 4:
        raise ValueError(f"unknown view {view!r}; use an index 0..3 or a name in {VIEW_NAMES}")
    return int(view)


class MultiViewShapes(Dataset):
    """Procedural objects seen from four views; single views are ambiguous by design.

    Sixteen classes (:data:`CLASSES`), each with ``num_instances_per_class`` instances
    per split. Item ``i`` is ``(views, label)``: ``views`` is a float tensor
    ``(V, 3, size, size)`` in ``[0, 1]`` holding the requested ``views`` in the order
    given, ``label`` an int. Items are class-major (``label = i // num_instances_per_class``).
    See the module documentation for which views tell which classes apart.

    All images are rendered when the dataset is built (a few seconds for the default
    sizes) and kept as uint8; datasets with equal ``(seed, split,
    num_instances_per_class, size)`` share one rendering.

    Args:
        num_instances_per_class: Instances of each class, at least 1.
        seed: Non-negative dataset seed; instance ``k`` of class ``c`` has the seed
            ``SeedSequence``-derived from ``(seed, split, c, k)``.
        size: Image height and width in pixels, at least 16.
        split: ``"train"`` or ``"test"``; the splits hold different instances.
        views: Views to return, as indices into :data:`VIEW_NAMES` or names, distinct.
        transform: Called on the ``(V, 3, size, size)`` stack, so a random transform
            sees all views of an item together.

    Attributes:
        classes: Class names.
        targets: Label of every item, without rendering anything new.
        instance_seeds: Seed of every item, for :func:`render_instance`.
        view_names: Names of all four views.
        views: Indices of the returned views.

    Example:
        >>> ds = MultiViewShapes(num_instances_per_class=2, seed=0)
        >>> views, label = ds[0]
        >>> views.shape, ds.classes[label]
        (torch.Size([4, 3, 32, 32]), 'crate')
        >>> front, label = ds.single_view("front")[0]
        >>> front.shape
        torch.Size([3, 32, 32])
    """

    view_names: tuple[str, ...] = VIEW_NAMES

    def __init__(
        self,
        num_instances_per_class: int = 100,
        *,
        seed: int = 0,
        size: int = 32,
        split: str = "train",
        views: Sequence[int | str] = (0, 1, 2, 3),
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if (
            isinstance(num_instances_per_class, bool)
            or not isinstance(num_instances_per_class, (int, np.integer))
            or num_instances_per_class < 1
        ):
            raise ValueError(
                "num_instances_per_class must be a positive integer, got "
                f"{num_instances_per_class!r}"
            )
        _check_seed(seed, "seed")
        _check_size(size)
        if split not in _SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {tuple(_SPLITS)}")
        if isinstance(views, (str, int)) or len(views) == 0:
            raise ValueError(
                f"views must be a non-empty sequence of view indices or names, got {views!r}; "
                "e.g. views=(0,) or views=('front', 'back')"
            )
        indices = tuple(_view_index(v) for v in views)
        if len(set(indices)) != len(indices):
            raise ValueError(f"views must be distinct, got {tuple(views)!r}")

        self.num_instances_per_class = int(num_instances_per_class)
        self.seed = int(seed)
        self.size = int(size)
        self.split = split
        self.views = indices
        self.transform = transform
        self.classes: list[str] = list(CLASSES)
        n = self.num_instances_per_class
        self.targets: list[int] = [c for c in range(len(CLASSES)) for _ in range(n)]
        split_id = _SPLITS[split]
        self.instance_seeds: list[int] = [
            derive_seed(self.seed, split_id, c, k) for c in range(len(CLASSES)) for k in range(n)
        ]
        self._images = _render_split(self.seed, split, n, self.size)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        views = _to_float(self._images[index, list(self.views)])
        if self.transform is not None:
            views = self.transform(views)
        return views, self.targets[index]

    def single_view(
        self,
        view: int | str = 0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> SingleView:
        """This dataset seen from one view only; see :class:`SingleView`."""
        return SingleView(self, view, transform=transform)


class SingleView(Dataset):
    """One view of a :class:`MultiViewShapes`: items ``(image (3, H, W), label)``.

    Args:
        dataset: The multi-view dataset; its own transform runs first.
        view: Index into :data:`VIEW_NAMES` or a view name; must be among
            ``dataset.views``.
        transform: Called on the single image.

    Example:
        >>> ds = SingleView(MultiViewShapes(num_instances_per_class=2), view="back")
        >>> image, label = ds[0]
        >>> image.shape, len(ds) == len(ds.targets)
        (torch.Size([3, 32, 32]), True)
    """

    def __init__(
        self,
        dataset: MultiViewShapes,
        view: int | str = 0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        index = _view_index(view)
        if index not in dataset.views:
            raise ValueError(
                f"view {VIEW_NAMES[index]!r} is not among the dataset's views "
                f"{[VIEW_NAMES[v] for v in dataset.views]}; build the dataset with it"
            )
        self.dataset = dataset
        self.view = index
        self.transform = transform
        self._position = dataset.views.index(index)
        self.classes = dataset.classes
        self.targets = dataset.targets

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        views, label = self.dataset[index]
        image = views[self._position]
        if self.transform is not None:
            image = self.transform(image)
        return image, label
