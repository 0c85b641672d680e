"""What MultiViewShapes shows: classes, their shapes and features, views and instances.

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
background grey and a small per-view camera jitter are drawn by :func:`draw_instance`
from a generator seeded only by the instance seed; the class only decides which feature
:class:`Scene` builds.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "CLASSES",
    "ELEVATION_DEG",
    "MAX_PLANES",
    "REVEALING_VIEWS",
    "VIEW_AZIMUTHS_DEG",
    "VIEW_NAMES",
    "Scene",
    "check_class",
    "draw_instance",
    "lookalikes",
    "view_index",
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

# Most half-spaces in one piece (the octagonal prism).
MAX_PLANES = 10

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


class Scene:
    """Geometry, materials and lights of ``N`` instances of one class, in world units.

    Everything is a function of the class and of the instances' uniforms ``u`` from
    :func:`draw_instance`; the renderer only adds the cameras.

    Args:
        class_index: Index into :data:`CLASSES`.
        u: ``(N, len(_PARAMS))`` uniforms in ``[0, 1)``, one row per instance.

    Attributes:
        pieces: Convex polyhedra ``(planes (N, P, 4), material)`` whose union is the
            object, each plane a half-space ``n . p <= c``; material 0 is the body
            colour, 1 the accent colour, 2 the knobs' dark grey.
        target_y: ``(N,)`` height the cameras aim at.
        centre_y: ``(N,)`` height of the centre of a bounding sphere.
        radius: ``(N,)`` radius of that sphere.
        albedo: ``(N, 3, 3)`` RGB colour of each material.
        light: ``(N, 3)`` unit direction towards the key light.
        key: ``(N,)`` intensity of the key light.
        ambient: ``(N,)`` ambient intensity.
        fill: ``(N,)`` intensity of the weak light at the camera.
        background: ``(N,)`` background grey.

    Example:
        >>> u, jitter = draw_instance(7)
        >>> scene = Scene(CLASSES.index("crate_back_knob"), u[None])
        >>> [(planes.shape, material) for planes, material in scene.pieces]
        [((1, 6, 4), 0), ((1, 10, 4), 2)]
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

        body_colour = _hsv_to_rgb(
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
        self.albedo = np.stack([body_colour, accent, grey], 1)

        az = u[:, _P["light_azimuth"]] * 2 * math.pi
        el = np.radians(_lerp(u[:, _P["light_elevation"]], 25.0, 65.0))
        self.light = np.stack([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], 1)
        self.key = _lerp(u[:, _P["key"]], 0.45, 0.75)
        self.ambient = _lerp(u[:, _P["ambient"]], 0.25, 0.4)
        # A light at the camera keeps faces turned away from the key light readable.
        self.fill = _lerp(u[:, _P["fill"]], 0.15, 0.3)
        self.background = _lerp(u[:, _P["background"]], 0.85, 1.0)


def _scaled(planes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    out = planes.copy()
    out[..., 3] *= scale[:, None]
    return out


def draw_instance(instance_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The uniforms ``u`` of :class:`Scene` and the ``(4, 3)`` camera jitter of one instance.

    Drawn from a generator seeded only by ``instance_seed`` (through
    :class:`numpy.random.SeedSequence`), in the same order whatever the class.
    """
    rng = np.random.default_rng(np.random.SeedSequence(instance_seed))
    u = rng.random(len(_PARAMS))
    jitter = rng.uniform(-_JITTER, _JITTER, (4, 3))
    return u, jitter


def check_class(class_index: int) -> None:
    """Raise a ValueError unless ``class_index`` indexes :data:`CLASSES`."""
    if (
        isinstance(class_index, bool)
        or not isinstance(class_index, (int, np.integer))
        or not (0 <= class_index < len(CLASSES))
    ):
        raise ValueError(
            f"class_index must be an integer in [0, {len(CLASSES)}), got {class_index!r}"
        )


def view_index(view: int | str) -> int:
    """Index into :data:`VIEW_NAMES` of a view given by index or name."""
    if isinstance(view, str):
        if view not in VIEW_NAMES:
            raise ValueError(f"unknown view name {view!r}; use one of {VIEW_NAMES} or 0..3")
        return VIEW_NAMES.index(view)
    if isinstance(view, bool) or not isinstance(view, (int, np.integer)) or not 0 <= view < 4:
        raise ValueError(f"unknown view {view!r}; use an index 0..3 or a name in {VIEW_NAMES}")
    return int(view)


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
    check_class(class_index)
    name = VIEW_NAMES[view_index(view)]
    if name in REVEALING_VIEWS[CLASSES[class_index]]:
        return (int(class_index),)
    family = class_index - class_index % len(_FEATURES)
    return tuple(
        k for k in range(family, family + len(_FEATURES)) if name not in REVEALING_VIEWS[CLASSES[k]]
    )
