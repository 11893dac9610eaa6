"""The 15 classes of the version-2 synthetic dataset: class-specific LOCAL geometry.

Version 1 (synthetic_shapes.py) tells classes apart by how boxes, cylinders and lathes connect. At the
scale of a pre-training target (8 of the 512 scale-0 centres around a scale-1 centre, radius ≈ 0.06–0.12
in the unit sphere) its patches are flat or gently curved pieces in every orientation, the same in
every class, so one constant pattern solves the 3D pretext task (findings/learning-probe.md).

What makes a patch class-specific at that scale (measured, benchmarks/synthetic_fairness.py): most of
an object's surface must share one local pattern: a sheet thinner than the point spacing (0.01–0.02
here; a thicker one mixes its two faces into a 3-D "sandwich"), lying in one orientation, with its
sheets or strands further apart than a patch, and no thin strut crossing it (one rail through a row
of fins made their patches as varied as a sphere's). So most classes are thin sheets or strands of
their own orientation and spacing, with their own features (teeth, holes, slats, spikes, twist);
a few are curved solids (column, crown, twist, crystal, umbrella) for varied curvature. Silhouettes
differ by class for the depth views. Every object varies in counts, proportions and pose, all drawn
from (seed, class, index) exactly as in version 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.sources.base import object_seed
from pipeline.sources.primitives_v2 import boxes, grid_faces, loft, polar_prism, revolve, slab, struts, walls
from pipeline.sources.synthetic_shapes import posed

if TYPE_CHECKING:
    import trimesh


def gear(rng):
    """A thin toothed ring lying flat: square or saw teeth, a hole."""
    n, depth = int(rng.integers(8, 20)), rng.uniform(0.12, 0.25)
    t = np.linspace(0, 1, n * 12, endpoint=False) * n % 1.0  # phase within a tooth
    tooth = np.clip(np.abs(t - 0.5) * 4 - 0.5, 0, 1) if rng.random() < 0.5 else t  # square or saw
    outer = 1.0 - depth * tooth
    return [polar_prism(outer, rng.uniform(0.01, 0.02), inner=rng.uniform(0.15, 0.45))]


def grille(rng):
    """A thin lying grid of crossing bars: a perforated plate."""
    w, d = 1.0, rng.uniform(0.6, 1.0)
    n, m = int(rng.integers(5, 10)), int(rng.integers(4, 9))
    bar, t = rng.uniform(0.03, 0.06), rng.uniform(0.003, 0.006)  # half-widths: a thin lying grid
    xs, zs = np.linspace(-w, w, n), np.linspace(-d, d, m)
    centres = np.array([[x, 0, 0] for x in xs] + [[0, 0, z] for z in zs], float)
    half = np.array([np.diag([bar, t, d]) for _ in xs] + [np.diag([w, t, bar]) for _ in zs])
    return [boxes(centres, half)]


def harp(rng):
    """Parallel vertical strings of falling length in a frame: strands in one direction."""
    n, w = int(rng.integers(8, 20)), 1.0
    xs = np.linspace(-w, w, n)
    top = rng.uniform(1.2, 2.2) - rng.uniform(0.0, 0.8) * (xs + w) / (2 * w)  # strings shorten
    bottom = np.full(n, 0.1)
    strings = struts(np.column_stack([xs, bottom, 0 * xs]), np.column_stack([xs, top, 0 * xs]), 0.008, 4)
    frame = struts(
        np.array([[-w, 0.1, 0], [-w, top[0], 0], [-w - 0.05, 0.0, 0]]),
        np.array([[w, 0.1, 0], [w, top[-1], 0], [-w - 0.05, top[0], 0]]),
        rng.uniform(0.03, 0.05),
        8,
    )
    return [strings, frame]


def washboard(rng):
    """A thin corrugated sheet, sine or zig-zag ridges, sagging along them."""
    x, z = np.linspace(-1, 1, 40), np.linspace(-1, 1, 120) * rng.uniform(0.6, 1.0)
    wave, amp = rng.uniform(0.35, 0.6), rng.uniform(0.06, 0.12)
    zigzag = 2 * np.abs((z / wave) % 1 - 0.5) - 0.5
    profile = amp * (np.sin(2 * np.pi * z / wave) if rng.random() < 0.5 else zigzag)
    bend = rng.uniform(-0.4, 0.4) * x**2  # a slight sag along the ridges
    return [slab(x, z, profile[None, :] + bend[:, None], rng.uniform(0.005, 0.01))]


def star(rng):
    """A thin upright star plate: sharp points and re-entrant corners."""
    n, inner = int(rng.integers(5, 10)), rng.uniform(0.3, 0.55)
    outer = np.where(np.arange(n * 2) % 2 == 0, 1.0, inner) * rng.uniform(0.9, 1.0, n * 2)
    plate = polar_prism(outer, rng.uniform(0.01, 0.02)).apply_transform(_rot((1, 0, 0), np.pi / 2))
    return [plate]  # standing upright, facing z


def twist(rng):
    """A tapering bar of triangular to pentagonal section twisted along its length."""
    k = int(rng.choice([3, 4, 4, 5]))
    size, length = rng.uniform(0.25, 0.45), rng.uniform(1.6, 2.6)
    turns = rng.uniform(0.5, 1.5) * rng.choice([-1, 1])
    corner = np.linspace(0, 2 * np.pi, k, endpoint=False)
    s = np.linspace(0, 1, 60)
    angle = corner[None, :] + 2 * np.pi * turns * s[:, None]  # (R, k)
    sections = size * np.stack([np.cos(angle), np.sin(angle)], -1) * (1 - 0.3 * s)[:, None, None]
    return [loft(sections, length * s)]


def column(rng):
    """A fluted, tapering column between two plinths: vertical grooves."""
    n, depth = int(rng.integers(8, 20)), rng.uniform(0.12, 0.25)
    C, R = n * 8, 30
    theta = np.linspace(0, 2 * np.pi, C, endpoint=False)
    r = 0.35 * (1 - depth * np.abs(np.sin(n * theta / 2)) ** 0.5)
    s = np.linspace(0, 1, R)
    taper = 1 - rng.uniform(0.0, 0.25) * s
    sections = (r[None, :] * taper[:, None])[..., None] * np.stack([np.cos(theta), np.sin(theta)], -1)
    height = rng.uniform(1.5, 3.0)
    parts = [loft(sections, height * s)]
    plinth = rng.uniform(0.4, 0.55)
    plinths = np.array([np.diag([plinth, 0.06, plinth])] * 2)
    return parts + [boxes(np.array([[0, 0, 0], [0, height, 0]]), plinths)]


def honeycomb(rng):
    """A thin upright screen of hexagonal cells: bars around hexagonal holes."""
    cell, bar = rng.uniform(0.15, 0.3), rng.uniform(0.03, 0.06)
    rings = int(np.ceil(1.0 / (cell * 1.7)))
    corners = cell * np.stack([np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3)], -1)
    starts, ends = [], []
    for q in range(-rings, rings + 1):
        for p in range(-rings, rings + 1):
            c = cell * np.array([1.5 * q, np.sqrt(3) * (p + q / 2)])
            if np.linalg.norm(c) <= 1.0:
                starts.append(c + corners)
                ends.append(c + np.roll(corners, -1, 0))
    screen = walls(np.concatenate(starts), np.concatenate(ends), rng.uniform(0.006, 0.012), bar)
    return [screen.apply_transform(_rot((1, 0, 0), np.pi / 2))]  # a thin hexagonal mesh, upright


def crystal(rng):
    """A druse of near-upright hexagonal prisms with pointed tips: facets, edges, apexes."""
    import trimesh

    parts = []
    for _ in range(int(rng.integers(5, 12))):
        r, length = rng.uniform(0.06, 0.16), rng.uniform(0.4, 1.2)
        body = revolve([0, r, r, 0], [0, 0, length, length + r * rng.uniform(1.5, 3.0)], 6)
        direction = rng.normal(0, 0.35, 3) * [1, 0, 1] + [0, 1, 0]  # a near-upright druse
        turn = trimesh.geometry.align_vectors([0, 1, 0], direction / np.linalg.norm(direction))
        body.apply_transform(turn)
        parts.append(body.apply_translation(rng.normal(0, 0.1, 3) * [1, 0, 1]))
    return parts


def propeller(rng):
    """Two to six thin twisted blades on a hub, in an upright plane."""
    import trimesh

    n, length, chord = int(rng.integers(2, 7)), rng.uniform(0.6, 1.0), rng.uniform(0.15, 0.3)
    pitch, thick = rng.uniform(0.3, 1.0), rng.uniform(0.004, 0.008)
    s = np.linspace(0, 1, 16)
    w = chord * (1 - 0.5 * s)  # blade narrows to the tip
    a = pitch * (1 - s)  # blade twist
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)  # (4, 2): chord × thickness
    local = corners[None] * np.stack([w, np.full_like(w, thick)], -1)[:, None]  # (R, 4, 2)
    rot = np.stack([np.cos(a), -np.sin(a), np.sin(a), np.cos(a)], -1).reshape(-1, 1, 2, 2)
    blade = loft(np.einsum("rcij,rcj->rci", rot, local), 0.12 + length * s)  # along y, then turned
    hub = trimesh.creation.cylinder(0.12, 0.25, sections=16)
    parts = [hub.apply_transform(_rot((1, 0, 0), np.pi / 2))]
    for k in range(n):
        b = blade.copy().apply_transform(_rot((0, 0, 1), np.pi / 2))
        parts.append(b.apply_transform(_rot((0, 0, 1), 2 * np.pi * k / n)))
    return parts


def fins(rng):
    """Three to five thin parallel upright panels, flat or arched tops: a radiator's fins."""
    n, w, d = int(rng.integers(3, 6)), 1.0, rng.uniform(0.5, 0.9)
    xs = np.linspace(-w, w, n)
    h = rng.uniform(0.5, 1.2) * (1 - rng.uniform(0, 0.5) * np.abs(xs))  # flat or arched tops
    t = rng.uniform(0.003, 0.006)
    centres = np.column_stack([xs, 0.1 + h / 2, 0 * xs])
    half = np.array([np.diag([t, hk / 2, d]) for hk in h])
    return [boxes(centres, half)]  # free-standing parallel panels


def louvre(rng):
    """Thin tilted slats stacked further apart than a patch: blinds."""
    n, w, chord = int(rng.integers(4, 8)), 1.0, rng.uniform(0.2, 0.35)
    tilt, t = rng.uniform(0.4, 1.0), rng.uniform(0.003, 0.006)
    ys = np.arange(n) * rng.uniform(0.3, 0.45)
    across = np.array([0, np.sin(tilt), np.cos(tilt)]) * chord / 2
    normal = np.array([0, np.cos(tilt), -np.sin(tilt)]) * t
    slats = boxes(np.column_stack([0 * ys, ys, 0 * ys]), np.array([[[w, 0, 0], across, normal]] * n))
    return [slats]  # blinds: the slats alone, further apart than a patch


def stairs(rng):
    """Thin treads fanning round a vertical axis: a spiral staircase."""
    n, rise = int(rng.integers(6, 12)), rng.uniform(0.18, 0.28)
    step, inner, outer = rng.uniform(0.5, 0.9), 0.05, rng.uniform(0.7, 1.0)
    a = np.arange(n) * step
    radial = np.column_stack([np.cos(a), 0 * a, np.sin(a)])
    tangent = np.column_stack([-np.sin(a), 0 * a, np.cos(a)])
    width = (inner + outer) / 2 * step * 0.6
    thick = np.tile([0, rng.uniform(0.003, 0.006), 0], (n, 1))
    half = np.stack([radial * (outer - inner) / 2, thick, tangent * width], 1)
    centres = radial * (inner + outer) / 2 + np.column_stack([0 * a, np.arange(n) * rise, 0 * a])
    return [boxes(centres, half)]  # treads fanning round an invisible axis


def crown(rng):
    """An open flaring band with triangular spikes on its rim: a saw-tooth edge."""
    import trimesh

    n, h, spike = int(rng.integers(5, 14)), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
    C = n * 10
    theta = np.linspace(0, 2 * np.pi, C, endpoint=False)
    tooth = 1 - np.abs((theta * n / (2 * np.pi)) % 1.0 - 0.5) * 2  # triangular spikes, 1 at each tip
    r = 1.0 + rng.uniform(-0.2, 0.2) * np.linspace(0, 1, 12)[:, None]  # the band flares or narrows
    s = np.linspace(0, 1, 12)[:, None]
    y = s * (h + spike * tooth[None])
    rings = np.stack([r * np.cos(theta), y, r * np.sin(theta)], -1)  # (12, C, 3): an open band
    return [trimesh.Trimesh(rings.reshape(-1, 3), grid_faces(12, C), process=False)]


def umbrella(rng):
    """A ribbed, scalloped canopy on a handle: curved sheet with radial ridges."""
    import trimesh

    n, depth, rib = int(rng.integers(6, 12)), rng.uniform(0.2, 0.6), rng.uniform(0.04, 0.12)
    C, R = n * 12, 14
    theta = np.linspace(0, 2 * np.pi, C, endpoint=False)
    rho = np.linspace(0, 1, R)[:, None]
    scallop = 1 - np.abs(np.sin(n * theta / 2))[None] ** 0.5  # 1 on the ribs, 0 between
    y = -depth * rho**2 + rib * rho * scallop
    rings = np.stack(np.broadcast_arrays(rho * np.cos(theta), y, rho * np.sin(theta)), -1)  # (R, C, 3)
    canopy = trimesh.Trimesh(rings.reshape(-1, 3), grid_faces(R, C), process=False)
    handle = struts(np.array([[0, -rng.uniform(0.8, 1.4), 0]]), np.array([[0, 0.05, 0]]), 0.025, 8)
    return [canopy, handle]


def _rot(axis, angle: float) -> np.ndarray:
    import trimesh

    return trimesh.transformations.rotation_matrix(angle, axis)


_ALL = (
    column,
    crown,
    crystal,
    fins,
    gear,
    grille,
    harp,
    honeycomb,
    louvre,
    propeller,
    stairs,
    star,
    twist,
    umbrella,
    washboard,
)
BUILDERS = {f.__name__: f for f in _ALL}  # class name → builder(rng) -> parts (y up, about unit size)
CLASSES = sorted(BUILDERS)


def make_object(name: str, seed: int, index: int) -> trimesh.Trimesh:
    """Object ``index`` of class ``name``: its parts, a random scale in [0.5, 2] and a small random pose."""
    import trimesh

    rng = np.random.default_rng(object_seed(seed, f"synthetic/{name}/{index}"))
    return posed(trimesh.util.concatenate(BUILDERS[name](rng)), rng)
