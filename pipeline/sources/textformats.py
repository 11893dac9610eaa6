"""Text geometry as other tools write it: any encoding, the whole OFF family, ASCII point files.

Geometry in text meshes and point files is ASCII; only comments, material and solid names carry other
bytes (Latin-1 from older Windows exporters, UTF-16 from some Windows tools). :func:`decode_text` never
fails: UTF-8 (with or without BOM), then UTF-16/32 by BOM or by the NUL-byte pattern of UTF-16 without
one, then Latin-1, which maps every byte to a character. :func:`ascii_bytes` gives trimesh the same
text as pure ASCII, so it never has to guess an encoding (its guesser is an optional package).

OFF (Geomview spec): a header ``[ST][C][N][4][n]OFF`` (texture coords, colour, normal, homogeneous
4-D, n-D), optionally glued to the counts ("OFF490 518 0", a ModelNet40 defect); x y z are the first
three numbers of a vertex row (divided by w for 4OFF); a face row is ``k i1 .. ik`` and anything after
the k indices (a colour, integers or floats) is ignored. Binary OFF is refused with a reason.
"""

from __future__ import annotations

import codecs
import io
import re
from pathlib import Path

import numpy as np

from pipeline.core.errors import BadInput

OFF_HEADER = re.compile(r"^(ST)?(C)?(N)?(4)?(n)?OFF(?![A-Za-z])")
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(data: bytes) -> str:
    """Bytes of a text file → str, never failing (see the module docstring for the order tried)."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    sample = data[:4096]
    if len(sample) >= 4 and sample.count(0) > len(sample) // 4:  # UTF-16 without a BOM
        odd_nuls = sample[1::2].count(0) > sample[0::2].count(0)
        return data.decode("utf-16-le" if odd_nuls else "utf-16-be", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def ascii_bytes(data: bytes) -> bytes:
    """Decoded text re-encoded as ASCII, every other character replaced by '?' (names and comments only)."""
    return decode_text(data).encode("ascii", errors="replace")


def read_text(path: Path) -> str:
    try:
        return decode_text(Path(path).read_bytes())
    except OSError as err:
        raise BadInput(f"unreadable file: {type(err).__name__}: {err}") from None


# ---- OFF ------------------------------------------------------------------------------------------


def read_off(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse an OFF file → vertices (V, 3) float64, triangles (F, 3) int64 (polygons split as fans).

    F = 0 for an OFF holding only vertices (a point file). BadInput names what is wrong.
    """
    lines = [ln.split("#", 1)[0].strip() for ln in read_text(path).splitlines()]
    lines = [ln for ln in lines if ln]
    match = (OFF_HEADER.match(lines[0]) or OFF_HEADER.match(lines[0].upper())) if lines else None
    if not lines:
        raise BadInput("empty OFF file: no header, no geometry")
    if match is None:
        raise BadInput(f"not an OFF file: the first line {lines[0][:40]!r} is no [ST][C][N][4][n]OFF header")
    homogeneous, n_dim = match.group(4) is not None, match.group(5) is not None
    rest, body = lines[0][match.end() :].split(), lines[1:]
    if rest[:1] == ["BINARY"]:
        raise BadInput("binary OFF is not read; convert it to ASCII OFF or PLY")
    if n_dim:  # nOFF: the dimension comes first, then the counts
        if not rest:
            rest, body = (body[0].split() if body else []), body[1:]
        dim = _int(rest[:1], "nOFF dimension")
        rest = rest[1:]
        if dim != 3:
            raise BadInput(f"nOFF with dimension {dim}: i2p reads 3-D geometry only")
    if not rest:  # counts on the next line
        if not body:
            raise BadInput("truncated OFF file: no counts line")
        rest, body = body[0].split(), body[1:]
    n_vertices, n_faces = _int(rest[:1], "vertex count"), _int(rest[1:2], "face count")
    if len(body) < n_vertices + n_faces:
        raise BadInput(
            f"truncated OFF file: header says {n_vertices} vertices + {n_faces} faces, found {len(body)} lines"
        )
    width = 4 if homogeneous else 3
    try:
        table = np.array([ln.split()[:width] for ln in body[:n_vertices]], dtype=np.float64)
    except ValueError as err:
        raise BadInput(f"malformed OFF vertex row: {err}") from None
    if table.ndim != 2 or (n_vertices and table.shape[1] != width):
        raise BadInput(f"malformed OFF file: a vertex row has fewer than {width} numbers")
    vertices = table.reshape(-1, width)
    if homogeneous:
        vertices = vertices[:, :3] / vertices[:, 3:4]
    return vertices, off_faces([ln.split() for ln in body[n_vertices : n_vertices + n_faces]])


def _int(words: list[str], what: str) -> int:
    try:
        return int(words[0])
    except (IndexError, ValueError):
        raise BadInput(f"bad OFF header: expected the {what}, found {' '.join(words)!r}") from None


def off_faces(rows: list[list[str]]) -> np.ndarray:
    """OFF face rows "k i1 .. ik [colour]" → triangles (F, 3) int64, each polygon split as a fan.

    Rows with k < 3 (points and edges, allowed by the spec) hold no surface and are left out.
    """
    if rows and all(len(r) == len(rows[0]) for r in rows) and rows[0][0].isdigit():
        k = int(rows[0][0])
        try:  # fast path: one polygon size; trailing colour columns are dropped unparsed
            table = np.array(rows if len(rows[0]) == k + 1 else [r[: k + 1] for r in rows], dtype=np.int64)
        except ValueError:
            table = None
        if table is not None and k >= 3 and table.shape[1] == k + 1 and (table[:, 0] == k).all():
            return np.stack([table[:, [1, i, i + 1]] for i in range(2, k)], axis=1).reshape(-1, 3)
    triangles = []
    for row in rows:
        try:
            k = int(row[0])
            idx = [int(v) for v in row[1 : 1 + k]]
        except (ValueError, IndexError):
            raise BadInput(f"malformed OFF face row {' '.join(row)[:80]!r}") from None
        if len(idx) != k:
            raise BadInput(f"malformed OFF face row {' '.join(row)[:80]!r}: {k} indices announced")
        triangles.extend((idx[0], idx[i], idx[i + 1]) for i in range(1, k - 1))
    return np.array(triangles, dtype=np.int64).reshape(-1, 3)


# ---- ASCII point files ----------------------------------------------------------------------------

SEPARATORS = re.compile(r"[,;\t ]+")
MAX_HEADER_LINES = 20


def read_point_text(path: Path) -> np.ndarray:
    """An ASCII point file → (N, C) float64, C ≥ 3 (x y z first).

    Separators: spaces, tabs, ',' (with or without spaces), ';'; a decimal comma is recognised when
    another separator parts the values ("1,5;2,25;0,5"). Leading lines that are not rows of
    ≥ 3 numbers (a column header such as ``x,y,z`` or CloudCompare's ``//X,Y,Z``, a point count as in
    ``.pts``) are skipped; '#' starts a comment. Rows must agree in their number of columns.
    """
    lines = read_text(path).splitlines()
    start = next((i for i, ln in enumerate(lines[: MAX_HEADER_LINES + 1]) if _is_row(ln)), None)
    if start is None:
        raise BadInput(f"no row of at least 3 numbers in the first {MAX_HEADER_LINES + 1} lines")
    rows = [ln.split("#", 1)[0].strip() for ln in lines[start:]]
    rows = [r for r in rows if r and not r.startswith("//")]
    if _decimal_comma(rows[0]):  # "1,5;2,25;0,5" or "1,5 2,25 0,5": European locales
        rows = [r.replace(",", ".") for r in rows]
    sample = rows[0]
    delimiter = ";" if ";" in sample else "," if "," in sample else None
    try:
        return np.loadtxt(io.StringIO("\n".join(rows)), delimiter=delimiter, ndmin=2, dtype=np.float64)
    except ValueError:
        pass
    try:  # mixed separators: split every row by hand
        table = [SEPARATORS.split(r.strip(" ,;\t")) for r in rows]
        width = len(table[0])
        bad = next((k for k, t in enumerate(table) if len(t) != width), None)
        if bad is not None:
            raise BadInput(
                f"line {start + bad + 1} has {len(table[bad])} values, the first row {width}: rows disagree"
            )
        return np.array(table, dtype=np.float64)
    except ValueError as err:
        raise BadInput(f"malformed point row: {err}") from None


def _decimal_comma(row: str) -> bool:
    """Commas between digits, no decimal point, and another separator (';', tab, space) between values."""
    return bool(re.search(r"\d,\d", row)) and "." not in row and bool(re.search(r"[;\t ]", row))


def _is_row(line: str) -> bool:
    words = [w for w in SEPARATORS.split(line.split("#", 1)[0].strip(" ,;\t")) if w]
    if len(words) < 3:
        return False
    try:
        [float(w) for w in words]
    except ValueError:
        return False
    return True
