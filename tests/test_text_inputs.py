"""Files other tools write: any text encoding, the whole OFF family, point text.

Every variant holds the same octahedron (or the same scan) and must read to the same geometry as a
plain control file.
"""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest

from pipeline import sources
from pipeline.core.errors import BadInput
from pipeline.prepare.points import load_chunk
from pipeline.sources import meshes
from pipeline.sources.base import Item, MissingPackage
from pipeline.sources.textformats import decode_text
from tests.builders import SOURCE_POINTS as P
from tests.builders import assert_unit_sphere, source_params

V = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
F = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
LATIN1 = "Terraind\u00e6k".encode("latin-1")  # one byte 0xE6: valid Latin-1, invalid UTF-8


def obj_text(head: str = "") -> str:
    return (
        head
        + "".join(f"v {x:g} {y:g} {z:g}\n" for x, y, z in V)
        + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in F)
    )


def stl_ascii(solid: bytes) -> bytes:
    s = b"solid " + solid + b"\n"
    for f in F:
        s += b" facet normal 0 0 0\n  outer loop\n"
        s += b"".join(b"   vertex %g %g %g\n" % tuple(V[i]) for i in f)
        s += b"  endloop\n endfacet\n"
    return s + b"endsolid " + solid + b"\n"


def stl_binary(header: bytes) -> bytes:
    rows = b"".join(struct.pack("<12fH", 0, 0, 0, *V[f[0]], *V[f[1]], *V[f[2]], 0) for f in F)
    return header.ljust(80, b" ") + struct.pack("<I", len(F)) + rows


def ply(comment: bytes, binary: bool = False) -> bytes:
    fmt = b"binary_little_endian" if binary else b"ascii"
    head = b"ply\nformat " + fmt + b" 1.0\ncomment " + comment + b"\nelement vertex 6\n"
    head += b"property float x\nproperty float y\nproperty float z\n"
    head += b"element face 8\nproperty list uchar int vertex_indices\nend_header\n"
    if binary:
        body = V.astype("<f4").tobytes() + b"".join(struct.pack("<B3i", 3, *f) for f in F)
    else:
        body = b"".join(b"%g %g %g\n" % tuple(v) for v in V) + b"".join(b"3 %d %d %d\n" % tuple(f) for f in F)
    return head + body


ENCODED = {
    "control.obj": obj_text("# plain ascii\n").encode(),
    "latin1_comment.obj": b"# exported by " + LATIN1 + b"\n" + obj_text().encode(),
    "latin1_usemtl.obj": b"usemtl " + LATIN1 + b"\n" + obj_text().encode(),
    "utf16_bom.obj": obj_text("# Terraindæk\n").encode("utf-16"),
    "utf16le_no_bom.obj": obj_text("# Terraindæk\n").encode("utf-16-le"),
    "utf8_bom.obj": b"\xef\xbb\xbf" + obj_text("# Terraindæk\n").encode(),
    "latin1_solid.stl": stl_ascii(LATIN1),
    "latin1_header_binary.stl": stl_binary(b"binary STL by " + LATIN1),
    "latin1_comment.off": b"OFF\n# "
    + LATIN1
    + b"\n6 8 0\n"
    + b"".join(b"%g %g %g\n" % tuple(v) for v in V)
    + b"".join(b"3 %d %d %d\n" % tuple(f) for f in F),
    "latin1_comment_ascii.ply": ply(LATIN1),
    "latin1_comment_binary.ply": ply(LATIN1, binary=True),
    "utf16_ascii.ply": ply(LATIN1).decode("latin-1").encode("utf-16"),
    "utf16_solid.stl": stl_ascii(LATIN1).decode("latin-1").encode("utf-16"),
    "utf16_comment.off": (
        b"OFF\n# "
        + LATIN1
        + b"\n6 8 0\n"
        + b"".join(b"%g %g %g\n" % tuple(v) for v in V)
        + b"".join(b"3 %d %d %d\n" % tuple(f) for f in F)
    )
    .decode("latin-1")
    .encode("utf-16"),
    "latin1_group_names.obj": b"mtllib "
    + LATIN1
    + b".mtl\no "
    + LATIN1
    + b"\ng "
    + LATIN1
    + b"\n"
    + obj_text().encode(),
}


def same_mesh(vertices, faces):
    """The octahedron, up to vertex order: the same triangles as sets of coordinates."""
    tris = {tuple(sorted(map(tuple, np.round(vertices[f], 6)))) for f in faces}
    expected = {tuple(sorted(map(tuple, V[f].astype(float)))) for f in F}
    return tris == expected


@pytest.mark.parametrize("name", sorted(ENCODED))
def test_text_meshes_in_any_encoding_read(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(ENCODED[name])
    vertices, faces = meshes.read_geometry(path)
    assert same_mesh(vertices, faces), name
    assert_unit_sphere(meshes.sample_mesh_file(path, P, 2, "bucket", 0, name))


def test_decode_text_never_fails_and_keeps_ascii():
    assert decode_text(b"v 1 2 3 # " + LATIN1) == "v 1 2 3 # Terraindæk"
    assert decode_text("x ä".encode("utf-16-be")) == "x ä"
    assert decode_text(bytes(range(256))).startswith("\x00\x01")  # any bytes decode (Latin-1 at worst)


def test_a_missing_package_stops_prepare_and_is_never_a_bad_input(tmp_path, monkeypatch):
    (tmp_path / "m.obj").write_text(obj_text())
    monkeypatch.setitem(sys.modules, "trimesh", None)  # as if trimesh were not installed
    item = Item("c/m", str(tmp_path / "m.obj"), 0, "mesh")
    with pytest.raises(MissingPackage) as err:
        load_chunk("train", 0, [item], source_params(), P)
    assert "trimesh" in err.value.message and err.value.hint == "pip install trimesh"


# ---- the OFF family ---------------------------------------------------------------------------------


def off_file(header, vrow, frow, glued=False, newline="\n", comments=False, counts="6 8 0"):
    lines = ["# written by a CAD exporter", ""] if comments else []
    lines += [f"{header}{counts}"] if glued else [header, counts]
    lines += [vrow(v) for v in V] + [frow(f) for f in F]
    return (newline.join(lines) + newline).encode()


xyz = lambda v: f"{v[0]:.6f} {v[1]:.6f} {v[2]:.6f}"  # noqa: E731
tri = lambda f: f"3 {f[0]} {f[1]} {f[2]}"  # noqa: E731
OFF_VARIANTS = {
    "plain": off_file("OFF", xyz, tri),
    "glued": off_file("OFF", xyz, tri, glued=True),
    "crlf_comments": off_file("OFF", xyz, tri, newline="\r\n", comments=True),
    "coff_rgba_int": off_file("COFF", lambda v: xyz(v) + " 192 192 192 255", tri),
    "coff_rgb_float": off_file("COFF", lambda v: xyz(v) + " 0.9 0.1 0.1", tri),
    "noff_normals": off_file("NOFF", lambda v: xyz(v) + " " + xyz(v), tri),
    "cnoff": off_file("CNOFF", lambda v: xyz(v) + " " + xyz(v) + " 0.5 0.5 0.5 1", tri),
    "stcnoff": off_file("STCNOFF", lambda v: xyz(v) + " " + xyz(v) + " 0.5 0.5 0.5 1 0.25 0.75", tri),
    "coff_glued": off_file("COFF ", lambda v: xyz(v) + " 1 1 1 1", tri, glued=True),
    "face_rgb_float": off_file("OFF", xyz, lambda f: tri(f) + " 0.7 0 0"),
    "face_rgb_int": off_file("OFF", xyz, lambda f: tri(f) + " 255 0 0"),
    "face_colour_mixed": off_file("OFF", xyz, lambda f: tri(f) + (" 0.7 0 0" if f[0] % 2 else "")),
    "homogeneous_4off": off_file("4OFF", lambda v: f"{2 * v[0]} {2 * v[1]} {2 * v[2]} 2", tri),
    "noff_dimension_3": off_file("nOFF", xyz, tri, counts="3\n6 8 0"),
    "lowercase_off": off_file("off", xyz, tri),
}


@pytest.mark.parametrize("name", sorted(OFF_VARIANTS))
def test_the_whole_off_family_reads(tmp_path, name):
    path = tmp_path / f"{name}.off"
    path.write_bytes(OFF_VARIANTS[name])
    vertices, faces = meshes.read_geometry(path)
    assert same_mesh(vertices, faces), name


def test_off_polygons_with_colours_become_fans_and_bad_headers_are_named(tmp_path):
    quads = "COFF\n4 1 0\n0 0 0 1 0 0\n1 0 0 1 0 0\n1 1 0 1 0 0\n0 1 0 1 0 0\n4 0 1 2 3 0.2 0.4 0.6 1\n"
    (tmp_path / "q.off").write_text(quads)
    assert meshes.read_geometry(tmp_path / "q.off")[1].tolist() == [[0, 1, 2], [0, 2, 3]]
    for text, reason in (
        ("OFF BINARY\n6 8 0\n", "binary OFF"),
        ("nOFF\n4 6 8 0\n", "dimension 4"),
        ("PLY\n6 8 0\n", "no \\[ST\\]\\[C\\]\\[N\\]\\[4\\]\\[n\\]OFF header"),
    ):
        (tmp_path / "bad.off").write_text(text)
        with pytest.raises(BadInput, match=reason):
            meshes.read_geometry(tmp_path / "bad.off")


# ---- point text, and mesh formats holding only vertices -------------------------------------------


def scan_variants():
    """One 300-point scan written the ways point tools write ASCII, keyed by file name."""
    rng = np.random.default_rng(0)
    p, rgb = rng.normal(size=(300, 3)), rng.integers(0, 256, (300, 3))
    rows = lambda sep: "".join(sep.join(f"{v:.6f}" for v in r) + "\n" for r in p)  # noqa: E731
    with_rgb = lambda sep: "".join(  # noqa: E731
        sep.join([f"{v:.6f}" for v in r] + [str(c) for c in k]) + "\n" for r, k in zip(p, rgb, strict=True)
    )
    return p, {
        "spaces.txt": rows(" "),
        "commas.txt": rows(","),
        "comma_space.txt": rows(", "),
        "tabs.txt": rows("\t"),
        "semicolons.txt": rows(";"),
        "cloudcompare_header.txt": "//X,Y,Z,R,G,B\n" + with_rgb(","),
        "csv_header.txt": "x,y,z\n" + rows(","),
        "xyzrgb.txt": with_rgb(" "),
        "hash_comment.txt": "# scan 1\n" + rows(" "),
        "latin1_header.txt": "x;y;z (Kärnten)\n" + rows(";"),
        "same.xyz": rows(" "),
        "count_line.pts": "300\n" + rows(" "),
        "same.csv": "X,Y,Z\n" + rows(","),
        "trailing_commas.csv": rows(",").replace("\n", ",\n"),
        "decimal_comma_semicolons.csv": rows(";").replace(".", ","),
        "decimal_comma_tabs.txt": "X\tY\tZ\n" + rows("\t").replace(".", ","),
        "decimal_comma_spaces.asc": rows(" ").replace(".", ","),
    }


def test_point_text_in_every_common_form_reads(tmp_path):
    p, files = scan_variants()
    for name, text in files.items():
        path = tmp_path / name
        path.write_bytes(text.encode("latin-1"))
        cloud = meshes.read_point_file(path)
        assert cloud.shape[0] == 300 and np.allclose(cloud[:, :3], p, atol=1e-6), name
        item = sources.folder.make_item(path, "scan", 0)
        assert item.kind == "txt"
        assert_unit_sphere(sources.load_points(item, source_params(points=P)))


def test_point_text_that_disagrees_is_a_bad_input(tmp_path):
    (tmp_path / "ragged.txt").write_text("1 2 3\n4 5\n")
    (tmp_path / "words.csv").write_text("a,b,c\nd,e,f\n")
    (tmp_path / "ints.csv").write_text("1,2,3\n4,5,6\n")  # integers, comma-separated: no decimal comma
    assert meshes.read_point_file(tmp_path / "ints.csv").tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(BadInput, match="line 2 has 2 values"):
        meshes.read_point_file(tmp_path / "ragged.txt")
    with pytest.raises(BadInput, match="no row of at least 3 numbers"):
        meshes.read_point_file(tmp_path / "words.csv")


def test_mesh_formats_holding_only_vertices_are_point_files(tmp_path):
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(P + 20, 3))
    (tmp_path / "v_only.obj").write_text("".join(f"v {x} {y} {z}\n" for x, y, z in cloud))
    (tmp_path / "zero_faces.off").write_text(
        f"OFF\n{len(cloud)} 0 0\n" + "".join(f"{x} {y} {z}\n" for x, y, z in cloud)
    )
    expected = meshes.cloud_to_points(cloud, P, "bucket")  # the file's own points, not surface samples
    for name in ("v_only.obj", "zero_faces.off"):
        points = meshes.sample_mesh_file(tmp_path / name, P, 2, "bucket", 0, name)
        assert np.allclose(points, expected, atol=1e-6), name
