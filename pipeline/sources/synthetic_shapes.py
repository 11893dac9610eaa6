"""The 15 classes of the synthetic dataset: builders that compose trimesh primitives into parts.

Each builder takes a numpy Generator and returns the object's parts (y up, about unit size). Classes
differ by structure (parts and how they connect), not by size, and some pairs are deliberately close
(chair/stool/bench, table/desk, mug/vase/bottle, shelf/tower). trimesh is imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.sources.base import object_seed

if TYPE_CHECKING:
    import trimesh


from pipeline.sources.primitives import box, cyl, lathe, legs, ring, turn


def table(rng):
    w, h, t = 1.0, rng.uniform(0.35, 1.1), rng.uniform(0.02, 0.08)
    d = w * rng.uniform(0.35, 1.0)
    if rng.random() < 0.3:  # round top on three legs or a pedestal
        parts = [cyl(w / 2, t, y=h - t / 2)]
        if rng.random() < 0.5:
            return parts + [cyl(w * 0.06, h - t, y=(h - t) / 2), cyl(w * 0.25, 0.03, y=0.015)]
        return parts + legs(rng, rng.choice([3, 4]), w * 0.7, w * 0.7, h - t, w * 0.05)
    parts = [box(w, t, d, y=h - t / 2)]
    parts += legs(rng, 4, w * 0.9, d * 0.85, h - t, w * rng.uniform(0.03, 0.08))
    if rng.random() < 0.3:  # a lower shelf
        parts.append(box(w * 0.85, t * 0.7, d * 0.8, y=h * rng.uniform(0.15, 0.3)))
    return parts


def desk(rng):
    w, h, t = 1.0, rng.uniform(0.45, 0.8), 0.04
    d = w * rng.uniform(0.3, 0.65)
    parts = [box(w, t, d, y=h - t / 2)]
    if rng.random() < 0.5:  # two side panels
        parts += [box(t, h - t, d, s * (w / 2 - t / 2), (h - t) / 2) for s in (-1, 1)]
    else:  # a drawer pedestal and two legs
        pw = w * rng.uniform(0.25, 0.4)
        parts += [box(pw, h - t, d * 0.95, w / 2 - pw / 2, (h - t) / 2)]
        parts += [box(0.04, h - t, 0.04, -w / 2 + 0.03, (h - t) / 2, s * (d / 2 - 0.03)) for s in (-1, 1)]
    if rng.random() < 0.6:  # modesty panel
        parts.append(box(w * 0.9, (h - t) * 0.5, 0.02, y=h - t - (h - t) * 0.25, z=-d / 2 + 0.02))
    if rng.random() < 0.35:  # hutch on top
        parts.append(box(w, rng.uniform(0.2, 0.6), d * 0.3, y=h + 0.2, z=-d * 0.35))
    return parts


def _seat_back(rng, sw, sd, sh, bh, solid) -> list[trimesh.Trimesh]:
    """A backrest above the rear edge of a seat: one panel or several slats with a top rail."""
    if solid:
        return [box(sw, bh, 0.04, y=sh + bh / 2, z=-sd / 2 + 0.02)]
    n = int(rng.integers(2, 6))
    xs = np.linspace(-sw / 2 + 0.03, sw / 2 - 0.03, n)
    slats = [box(0.03, bh, 0.03, x, sh + bh / 2, -sd / 2 + 0.02) for x in xs]
    return slats + [box(sw, 0.06, 0.04, y=sh + bh - 0.03, z=-sd / 2 + 0.02)]


def chair(rng):
    sw = rng.uniform(0.4, 0.65)
    sd, sh, bh = sw * rng.uniform(0.8, 1.2), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.8)
    parts = [box(sw, 0.05, sd, y=sh)] + _seat_back(rng, sw, sd, sh, bh, rng.random() < 0.5)
    if rng.random() < 0.2:  # swivel: column and a star base
        parts += [cyl(0.03, sh, y=sh / 2)]
        parts += [box(0.35, 0.03, 0.04, y=0.02).apply_transform(_yaw(k * 2 * np.pi / 5)) for k in range(5)]
    else:
        parts += legs(rng, 4, sw * 0.9, sd * 0.9, sh, rng.uniform(0.025, 0.05))
    if rng.random() < 0.3:  # armrests
        parts += [box(0.05, 0.04, sd * 0.8, s * sw / 2, sh + 0.22) for s in (-1, 1)]
        parts += [box(0.03, 0.22, 0.03, s * sw / 2, sh + 0.11, sd * 0.3) for s in (-1, 1)]
    return parts


def stool(rng):
    r, sh = rng.uniform(0.15, 0.3), rng.uniform(0.35, 1.0)
    parts = [cyl(r, 0.05, y=sh)] if rng.random() < 0.6 else [box(2 * r, 0.05, 2 * r, y=sh)]
    if rng.random() < 0.25:
        parts += [cyl(0.04, sh, y=sh / 2), cyl(r * 0.9, 0.03, y=0.015)]
    else:
        parts += legs(rng, int(rng.choice([3, 4])), 1.6 * r, 1.6 * r, sh, rng.uniform(0.025, 0.05))
    if rng.random() < 0.5:  # foot ring
        parts.append(ring(r * 0.75, 0.015, y=sh * rng.uniform(0.25, 0.45)))
    if rng.random() < 0.15:  # a low back: close to a chair
        parts.append(box(2 * r, rng.uniform(0.1, 0.25), 0.04, y=sh + 0.12, z=-r))
    return parts


def bench(rng):
    w, d, sh = 1.0, rng.uniform(0.2, 0.5), rng.uniform(0.25, 0.5)
    if rng.random() < 0.5:
        parts = [box(w, 0.05, d, y=sh)]
    else:  # slatted seat
        n = int(rng.integers(3, 6))
        parts = [box(w, 0.04, d / n * 0.8, z=z, y=sh) for z in np.linspace(-d / 2, d / 2, n) * 0.85]
    if rng.random() < 0.5:
        parts += legs(rng, int(rng.choice([4, 6])), w * 0.9, d * 0.8, sh, 0.05)
    else:
        parts += [box(0.05, sh, d, s * w * 0.42, sh / 2) for s in (-1, 1)]
    if rng.random() < 0.4:
        parts += _seat_back(rng, w, d, sh, rng.uniform(0.2, 0.45), rng.random() < 0.5)
    return parts


def sofa(rng):
    w, d, sh, bh = 1.0, rng.uniform(0.35, 0.7), rng.uniform(0.15, 0.3), rng.uniform(0.15, 0.4)
    aw, ah = rng.uniform(0.04, 0.15), rng.uniform(0.08, 0.25)
    parts = [box(w, sh, d, y=sh / 2 + 0.05), box(w, bh, d * 0.25, y=sh + bh / 2, z=-d * 0.375)]
    n_arms = int(rng.choice([0, 1, 2], p=[0.1, 0.15, 0.75]))
    parts += [box(aw, sh + ah, d, s * (w / 2 + aw / 2), (sh + ah) / 2 + 0.05) for s in (-1, 1)[:n_arms]]
    cw = w / int(rng.integers(1, 4))  # one to three seat cushions
    parts += [
        box(cw * 0.95, 0.06, d * 0.7, x, sh + 0.08, d * 0.1)
        for x in np.arange(-w / 2, w / 2 - 1e-6, cw) + cw / 2
    ]
    return parts + legs(rng, 4, w * 0.95, d * 0.9, 0.05, 0.04)


def bed(rng):
    w, length, mh = rng.uniform(0.45, 1.0), 1.0, rng.uniform(0.08, 0.2)
    fh = rng.uniform(0.05, 0.25)
    parts = [box(w, fh, length, y=fh / 2 + 0.05), box(w * 0.97, mh, length * 0.97, y=0.05 + fh + mh / 2)]
    hh = rng.uniform(0.15, 0.6)
    parts.append(box(w * 1.04, fh + mh + hh, 0.05, y=(fh + mh + hh) / 2, z=-length / 2))
    if rng.random() < 0.5:
        parts.append(box(w * 1.04, fh + mh + hh * 0.4, 0.05, y=(fh + mh + hh * 0.4) / 2, z=length / 2))
    n = int(rng.integers(0, 3))  # pillows
    parts += [box(w / n * 0.8, 0.06, 0.15, (k + 0.5) * w / n - w / 2, 0.08 + fh + mh, -0.4) for k in range(n)]
    return parts + legs(rng, 4, w, length, 0.05, 0.05)


def shelf(rng):
    w, d, h = 1.0, rng.uniform(0.15, 0.45), rng.uniform(0.4, 2.5)
    n, t = int(rng.integers(2, 7)), 0.03
    parts = [box(t, h, d, s * (w / 2 - t / 2), h / 2) for s in (-1, 1)]
    parts += [box(w - 2 * t, t, d, y=y) for y in np.linspace(t / 2, h - t / 2, n)]
    if rng.random() < 0.6:
        parts.append(box(w, h, 0.015, y=h / 2, z=-d / 2))
    if rng.random() < 0.2:  # closed cupboard at the bottom
        parts.append(box(w - 2 * t, h / n, 0.02, y=h / n / 2, z=d / 2))
    return parts


def mug(rng):
    r, h = 0.5, rng.uniform(0.6, 2.2)
    parts = [lathe([0, r * rng.uniform(0.7, 1.0), r, r * 0.92, r * 0.92, 0], [0, 0, h, h, 0.06, 0.06])]
    big, y = h * rng.uniform(0.2, 0.35), h * rng.uniform(0.45, 0.6)
    return parts + [ring(big, rng.uniform(0.04, 0.08), x=r + big * 0.5, y=y, upright=True)]


def vase(rng):
    h, k = rng.uniform(0.8, 3.0), rng.uniform(0.3, 1.6, size=4)
    heights = np.array([0.0, 0.0, 0.25, 0.55, 0.8, 1.0]) * h
    radii = np.array([0.0, 0.3 * k[0], 0.5 * k[1], 0.5 * k[2], 0.25 * k[3], 0.3 * k[3]])
    parts = [lathe(radii, heights)]
    if rng.random() < 0.25:  # two handles: close to a mug
        parts += [ring(0.12 * h, 0.025, x=s * radii[3], y=0.65 * h, upright=True) for s in (-1, 1)]
    return parts


def bottle(rng):
    r, body = 0.5, rng.uniform(1.0, 3.5)
    neck_r, neck = r * rng.uniform(0.15, 0.5), rng.uniform(0.3, 1.2)
    shoulder = rng.uniform(0.1, 0.6)
    heights = [0, 0, body, body + shoulder, body + shoulder + neck, body + shoulder + neck]
    parts = [lathe([0, r, r, neck_r, neck_r, 0], heights)]
    if rng.random() < 0.7:  # a cap
        parts.append(cyl(neck_r * 1.15, 0.15, y=heights[-1] + 0.05))
    if rng.random() < 0.15:  # a jug handle: close to a mug
        parts.append(ring(body * 0.25, 0.05, x=r, y=body * 0.6, upright=True))
    return parts


def lamp(rng):
    import trimesh

    pole = rng.uniform(0.5, 3.0)
    base = cyl(rng.uniform(0.15, 0.4), 0.05, y=0.025) if rng.random() < 0.7 else box(0.4, 0.06, 0.3, y=0.03)
    parts = [base, cyl(0.025, pole, y=pole / 2)]
    top = np.array([0.0, pole, 0.0])
    if rng.random() < 0.4:  # bent arm
        arm = rng.uniform(0.3, 0.8)
        parts.append(cyl(0.02, arm, x=arm / 2, y=pole, axis="x"))
        top = np.array([arm, pole, 0.0])
    if rng.random() < 0.2:
        parts.append(trimesh.creation.icosphere(2, radius=rng.uniform(0.15, 0.35)).apply_translation(top))
    else:
        rb, rt, sh = rng.uniform(0.2, 0.6), rng.uniform(0.1, 0.4), rng.uniform(0.2, 0.6)
        parts.append(lathe([rb, rt], [0, sh], y=0).apply_translation(top - (0, sh * 0.4, 0)))
    return parts


def airplane(rng):
    import trimesh

    length = 1.0
    r = length * rng.uniform(0.035, 0.08)
    parts = [
        trimesh.creation.capsule(height=length - 2 * r, radius=r, count=(16, 16)).apply_transform(turn("x"))
    ]
    span, chord, sweep = rng.uniform(0.5, 1.3), rng.uniform(0.08, 0.25), rng.uniform(0.0, 0.6)
    wy = rng.choice([-0.6, 0.0, 0.6]) * r  # low, mid or high wing
    for s in (-1, 1):
        wing = box(chord, 0.015, span / 2, z=s * span / 4).apply_transform(_yaw(s * sweep))
        parts.append(wing.apply_translation((0.05, wy, 0)))
    ts, tx = span * rng.uniform(0.25, 0.45), -length * 0.42  # tail span and position
    parts += [box(chord * 0.6, 0.012, ts, tx), box(chord * 0.7, ts * 0.6, 0.012, tx, ts * 0.3)]
    for z in span * np.array([0.15, -0.15, 0.27, -0.27])[: 2 * int(rng.choice([0, 1, 2]))]:  # engines
        parts.append(cyl(r * 0.5, chord * 1.2, 0.12, wy - r, z, axis="x"))
    return parts


def car(rng):
    length, w, h = 1.0, rng.uniform(0.35, 0.55), rng.uniform(0.12, 0.3)
    wheel_r = h * rng.uniform(0.45, 0.8)
    parts = [box(length, h, w, y=wheel_r + h / 2 - wheel_r * 0.4)]
    cl, ch = length * rng.uniform(0.25, 0.65), h * rng.uniform(0.5, 1.2)
    parts.append(box(cl, ch, w * 0.9, rng.uniform(-0.2, 0.15), wheel_r + h + ch / 2 - wheel_r * 0.4))
    axles = [-0.35, 0.35] if rng.random() < 0.85 else [-0.38, -0.15, 0.35]  # a third axle: a truck
    parts += [
        cyl(wheel_r, w * 0.18, a * length, wheel_r, s * w / 2, axis="z") for a in axles for s in (-1, 1)
    ]
    if rng.random() < 0.2:  # spoiler
        parts.append(box(0.08, 0.02, w, -length * 0.47, wheel_r + h + 0.05))
    return parts


def tower(rng):
    import trimesh

    width, y, parts = 1.0, 0.0, []
    for _ in range(int(rng.integers(2, 6))):
        seg = width * rng.uniform(0.8, 3.0)
        part = box(width, seg, width) if rng.random() < 0.5 else cyl(width / 2, seg)
        parts.append(part.apply_translation((0, y + seg / 2, 0)))
        y += seg
        if rng.random() < 0.4:  # a balcony
            parts.append(cyl(width * 0.7, 0.05, y=y))
        width *= rng.uniform(0.55, 0.95)
    if rng.random() < 0.6:
        spire = width * rng.uniform(1.0, 5.0)
        cone = trimesh.creation.cone(width / 2, spire).apply_transform(turn("y"))
        parts.append(cone.apply_translation((0, y, 0)))
    return parts


def _yaw(angle: float) -> np.ndarray:
    import trimesh

    return trimesh.transformations.rotation_matrix(angle, (0, 1, 0))


_ALL = (airplane, bed, bench, bottle, car, chair, desk, lamp, mug, shelf, sofa, stool, table, tower, vase)
BUILDERS = {f.__name__: f for f in _ALL}  # class name → builder(rng) -> parts (y up, about unit size)
CLASSES = sorted(BUILDERS)


def make_object(name: str, seed: int, index: int) -> trimesh.Trimesh:
    """Object ``index`` of class ``name``: its parts, a random scale in [0.5, 2] and a small random pose."""
    import trimesh

    rng = np.random.default_rng(object_seed(seed, f"synthetic/{name}/{index}"))
    return posed(trimesh.util.concatenate(BUILDERS[name](rng)), rng)


def posed(mesh: trimesh.Trimesh, rng: np.random.Generator) -> trimesh.Trimesh:
    """``mesh`` tilted by N(0, 0.05) rad about x and z, turned by U(−0.5, 0.5) rad about y and scaled by
    U(0.5, 2): the pose every synthetic version draws last, in this order, from the object's generator."""
    import trimesh

    tilt = trimesh.transformations.euler_matrix(rng.normal(0, 0.05), 0.0, rng.normal(0, 0.05))
    mesh.apply_transform(_yaw(rng.uniform(-0.5, 0.5)) @ tilt)
    return mesh.apply_scale(rng.uniform(0.5, 2.0))
