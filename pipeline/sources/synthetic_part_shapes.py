"""The categories of the synthetic part-segmentation set: objects built from named parts.

Each builder takes a numpy Generator and returns ``{part name: [meshes]}`` (y up, about unit size), every
category's mandatory parts first; optional parts (a chair's arms, a table's shelf, an airplane's engines)
appear in some objects only. :data:`CATEGORIES` fixes the part names and their order, and so the global
part ids (contiguous per category, in category order: :func:`global_ids`). trimesh is imported inside
the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.sources.primitives import box, cyl, lathe, legs, ring

if TYPE_CHECKING:
    import trimesh

Parts = dict[str, list["trimesh.Trimesh"]]


def _about_y(mesh: trimesh.Trimesh, angle: float) -> trimesh.Trimesh:
    import trimesh

    return mesh.apply_transform(trimesh.transformations.rotation_matrix(angle, (0, 1, 0)))


def airplane(rng) -> Parts:
    length, radius = 1.0, rng.uniform(0.04, 0.08)
    span, chord = rng.uniform(0.7, 1.1), rng.uniform(0.12, 0.22)
    fin = rng.uniform(0.1, 0.2)
    nose = lathe([radius, 0.0], [0.0, rng.uniform(0.08, 0.16)]).apply_transform(_y_to_x())
    out: Parts = {
        "fuselage": [cyl(radius, length, axis="x"), nose.apply_translation((length / 2, 0, 0))],
        "wing": [box(chord, 0.02, span, x=rng.uniform(-0.05, 0.1))],
        "tail": [
            box(0.12, fin, 0.015, x=-length / 2 + 0.06, y=radius + fin / 2),
            box(0.1, 0.015, span * 0.35, x=-length / 2 + 0.06),
        ],
    }
    if rng.random() < 0.7:
        out["engine"] = [cyl(0.035, 0.16, x=0.03, y=-0.06, z=s * span * 0.25, axis="x") for s in (-1, 1)]
    return out


def _y_to_x() -> np.ndarray:
    """4×4 rotation taking the y axis to the x axis (a quarter turn about z)."""
    import trimesh

    return trimesh.transformations.rotation_matrix(-np.pi / 2, (0, 0, 1))


def chair(rng) -> Parts:
    w, d, h, t = 0.5, rng.uniform(0.4, 0.55), rng.uniform(0.4, 0.5), 0.05
    back_h = rng.uniform(0.4, 0.7)
    out: Parts = {
        "seat": [box(w, t, d, y=h - t / 2)],
        "back": [box(w, back_h, 0.04, y=h + back_h / 2, z=-d / 2 + 0.02)],
        "leg": legs(rng, 4, w * 0.9, d * 0.9, h - t, rng.uniform(0.03, 0.06)),
    }
    if rng.random() < 0.5:
        out["arm"] = [box(0.04, 0.04, d * 0.8, x=s * (w / 2 - 0.02), y=h + 0.22) for s in (-1, 1)]
    return out


def table(rng) -> Parts:
    w, h, t = 1.0, rng.uniform(0.45, 0.8), rng.uniform(0.03, 0.06)
    d = w * rng.uniform(0.45, 0.9)
    round_top = rng.random() < 0.3
    out: Parts = {
        "top": [cyl(w / 2, t, y=h - t / 2)] if round_top else [box(w, t, d, y=h - t / 2)],
        "leg": legs(rng, 4, w * 0.8, (w if round_top else d) * 0.8, h - t, rng.uniform(0.04, 0.07)),
    }
    if rng.random() < 0.5:
        out["shelf"] = [box(w * 0.75, t * 0.7, d * 0.7, y=h * rng.uniform(0.2, 0.35))]
    return out


def lamp(rng) -> Parts:
    h, r = rng.uniform(0.6, 1.0), rng.uniform(0.12, 0.2)
    shade_h = rng.uniform(0.15, 0.3)
    return {
        "base": [cyl(r, 0.05, y=0.025)],
        "stem": [cyl(0.015, h, y=0.05 + h / 2)],
        "shade": [lathe([rng.uniform(0.15, 0.25), rng.uniform(0.05, 0.1)], [0.0, shade_h], y=h - 0.05)],
    }


def mug(rng) -> Parts:
    r, h = rng.uniform(0.2, 0.3), rng.uniform(0.35, 0.6)
    return {
        "body": [lathe([0.0, r, r * rng.uniform(1.0, 1.15)], [0.0, 0.0, h])],
        "handle": [ring(h * 0.22, 0.03, x=r + h * 0.15, y=h / 2, upright=True)],
    }


def guitar(rng) -> Parts:
    lower, upper, depth = rng.uniform(0.18, 0.24), rng.uniform(0.13, 0.18), 0.08
    neck = rng.uniform(0.45, 0.6)
    return {
        "body": [
            cyl(lower, depth, y=lower, axis="z"),
            cyl(upper, depth, y=2 * lower + upper * 0.6, axis="z"),
        ],
        "neck": [box(0.05, neck, 0.03, y=2 * lower + upper * 1.4 + neck / 2)],
        "head": [box(0.08, 0.14, 0.03, y=2 * lower + upper * 1.4 + neck + 0.07)],
    }


def rocket(rng) -> Parts:
    r, h = rng.uniform(0.07, 0.12), rng.uniform(0.7, 1.0)
    n_fins, fin = int(rng.choice([3, 4])), rng.uniform(0.12, 0.2)
    fins = [box(0.01, fin, fin * 0.8, y=fin / 2, z=r + fin * 0.4) for _ in range(n_fins)]
    return {
        "body": [cyl(r, h, y=h / 2)],
        "nose": [lathe([r, 0.0], [0.0, rng.uniform(0.15, 0.3)], y=h)],
        "fin": [_about_y(f, 2 * np.pi * k / n_fins) for k, f in enumerate(fins)],
    }


def knife(rng) -> Parts:
    blade, handle = rng.uniform(0.5, 0.7), rng.uniform(0.25, 0.35)
    return {
        "blade": [box(rng.uniform(0.06, 0.1), blade, 0.01, y=handle + blade / 2)],
        "handle": [
            box(0.07, handle, 0.035, y=handle / 2) if rng.random() < 0.5 else cyl(0.03, handle, y=handle / 2)
        ],
    }


BUILDERS = {
    "airplane": airplane,
    "chair": chair,
    "table": table,
    "lamp": lamp,
    "mug": mug,
    "guitar": guitar,
    "rocket": rocket,
    "knife": knife,
}
CATEGORIES: dict[str, tuple[str, ...]] = {  # category → its part names, in global id order
    "airplane": ("fuselage", "wing", "tail", "engine"),
    "chair": ("seat", "back", "leg", "arm"),
    "table": ("top", "leg", "shelf"),
    "lamp": ("base", "stem", "shade"),
    "mug": ("body", "handle"),
    "guitar": ("body", "neck", "head"),
    "rocket": ("body", "nose", "fin"),
    "knife": ("blade", "handle"),
}


def global_ids() -> dict[str, dict[str, int]]:
    """category → part name → global part id: contiguous per category, in :data:`CATEGORIES` order
    (airplane 0-3, chair 4-7, table 8-10, lamp 11-13, mug 14-15, guitar 16-18, rocket 19-21, knife 22-23)."""
    out, start = {}, 0
    for category, names in CATEGORIES.items():
        out[category] = {name: start + k for k, name in enumerate(names)}
        start += len(names)
    return out


def make_parts(category: str, rng: np.random.Generator) -> dict[str, trimesh.Trimesh]:
    """One object of ``category``: part name → one mesh (the part's pieces concatenated)."""
    import trimesh

    built = BUILDERS[category](rng)
    assert set(built) <= set(CATEGORIES[category]), (category, sorted(built))
    return {name: trimesh.util.concatenate(built[name]) for name in CATEGORIES[category] if name in built}
