"""A fast reader for the one PLY layout most meshes come in (binary, triangles), without trimesh.

trimesh takes about a second to import and a millisecond per file to parse; every prepare worker
used to pay the import. :func:`read_simple_ply` reads a binary PLY whose only elements are ``vertex``
(scalar properties including x, y, z) and optionally ``face`` (a single list property of triangles),
which is what trimesh and most exporters write. For anything else (ASCII, quads, extra elements,
face properties, a short file) it returns None and the caller falls back to trimesh, so what a file
means, and the error a broken file gives, are trimesh's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TYPES = {  # PLY scalar type -> numpy type
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
ENDIAN = {"binary_little_endian": "<", "binary_big_endian": ">"}
END = b"end_header"


def read_simple_ply(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Vertices (V, 3) float64 and triangles (F, 3) int64 (F = 0 without faces), or None (use trimesh)."""
    data = Path(path).read_bytes()
    stop = data.find(END, 0, 4096)
    if not data.startswith(b"ply") or stop < 0:
        return None
    body = stop + len(END) + (2 if data[stop + len(END) : stop + len(END) + 2] == b"\r\n" else 1)
    header = _parse_header(data[:stop].decode("ascii", errors="replace"))
    if header is None:
        return None
    endian, n_vertices, vertex_props, n_faces, face_types = header
    vertex = np.dtype([(name, endian + TYPES[kind]) for name, kind in vertex_props])
    face = np.dtype([("n", endian + TYPES[face_types[0]]), ("i", endian + TYPES[face_types[1]], 3)])
    if n_vertices == 0 or len(data) - body < vertex.itemsize * n_vertices + face.itemsize * n_faces:
        return None
    rows = np.frombuffer(data, vertex, count=n_vertices, offset=body)
    vertices = np.column_stack([rows["x"], rows["y"], rows["z"]]).astype(np.float64)
    if n_faces == 0:
        return vertices, np.zeros((0, 3), np.int64)
    faces = np.frombuffer(data, face, count=n_faces, offset=body + vertex.itemsize * n_vertices)
    if not (faces["n"] == 3).all():  # a polygon: trimesh triangulates it
        return None
    return vertices, faces["i"].astype(np.int64)


def _parse_header(text: str) -> tuple[str, int, list[tuple[str, str]], int, tuple[str, str]] | None:
    """(endian, V, vertex properties, F, (count type, index type)) of a supported header, else None."""
    endian, elements = None, []  # elements: [name, count, [property words, ...]]
    for line in text.splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) == 3 and words[2] == "1.0":
            endian = ENDIAN.get(words[1])
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            elements[-1][2].append(words[1:])
        else:
            return None
    names = [e[0] for e in elements]
    if endian is None or names not in (["vertex"], ["vertex", "face"]):
        return None
    _, n_vertices, props = elements[0]
    if any(len(p) != 2 or p[0] not in TYPES for p in props):
        return None
    vertex_props = [(p[1], p[0]) for p in props]
    names = [name for name, _ in vertex_props]
    if not {"x", "y", "z"} <= set(names) or len(set(names)) != len(names):
        return None
    if len(elements) == 1:
        return endian, n_vertices, vertex_props, 0, ("uchar", "int")
    _, n_faces, face_props = elements[1]
    if len(face_props) != 1:
        return None
    p = face_props[0]
    if len(p) != 4 or p[0] != "list" or p[3] not in ("vertex_indices", "vertex_index"):
        return None
    if TYPES.get(p[1], "f")[0] not in "iu" or TYPES.get(p[2], "f")[0] not in "iu":
        return None  # counts and indices are integers
    return endian, n_vertices, vertex_props, n_faces, (p[1], p[2])
