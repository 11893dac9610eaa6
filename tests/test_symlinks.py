"""Symlinks that leave a source's root and sources full of stray files (docs/datasets.md, "Symlinks and
stray files"): a link out of the root is listed, never walked nor read unless prepare.follow_links; links
inside the root are followed; per-file log lines and the failures / warnings attrs are capped (the first 20
lines, the first 100 entries, then counts by extension), whatever the source holds. Trees, links and
unreadable files are made for real in tmp_path."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import zarr

from pipeline import sources
from pipeline.core.errors import LayoutError
from pipeline.core.params import PrepareParams
from pipeline.prepare.points import prepare
from tests.builders import write_shapenet55


def _cloud(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.random.default_rng(seed).normal(size=(200, 3)).astype(np.float32))


def _params(root, **kw):
    return PrepareParams(source="folder", root=str(root), points=32, oversample=2, chunk=4, **kw)


@pytest.fixture
def linked(tmp_path):
    """root/{chair,table}/*.npy (3 each); root/shared -> ../outside (a tree with a point file at every
    level and 40 stray files); root/chair/leak.txt -> ../../outside/secret.txt; root/sofa -> chair (inside
    the root)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    for k, cls in enumerate(("chair", "table")):
        for i in range(3):
            _cloud(root / cls / f"{cls}_{i}.npy", 10 * k + i)
    _cloud(outside / "loose.npy", 99)  # read as a class's object if the link were followed
    _cloud(outside / "deep" / "er" / "buried.npy", 98)  # listed as unread if the tree were walked
    for k in range(40):
        (outside / f"pkg{k % 4}").mkdir(exist_ok=True)
        (outside / f"pkg{k % 4}" / f"m{k}.py").write_text("x = 1\n")
    (outside / "secret.txt").write_text("1 2 3\n4 5 6\n7 8 9\n" * 10)  # a readable point file
    (root / "shared").symlink_to(os.path.join("..", "outside"))
    (root / "chair" / "leak.txt").symlink_to(os.path.join("..", "..", "outside", "secret.txt"))
    (root / "sofa").symlink_to("chair")  # inside the root: followed
    (root / "chair" / "loop").symlink_to("..")  # a loop inside the root: never walked into
    return root, outside


def test_links_leaving_the_root_are_listed_and_nothing_behind_them_is_walked_or_read(linked, tmp_path):
    root, outside = linked
    catalog = sources.scan(_params(root), tmp_path / "data")
    assert catalog.classes == ["chair", "sofa", "table"]  # sofa: a link inside the root
    ids = {it.id for items in catalog.splits.values() for it in items}
    assert "chair/leak" not in ids and not any(i.startswith("shared/") for i in ids)
    refused = {f["id"]: f["reason"] for f in catalog.failures if "outside the root" in f["reason"]}
    assert set(refused) == {"shared/", "chair/leak.txt", "sofa/leak.txt"}, refused
    assert (
        f"leads to {outside}," in refused["shared/"]
        and "--set prepare.follow_links=true" in refused["shared/"]
    )
    assert not [f for f in catalog.failures if str(outside) in f["path"]]  # nothing under the link listed
    result = prepare(_params(root), tmp_path / "data", "linked")
    group = zarr.open_group(str(result.path), mode="r")
    stored = {str(i) for s in group.attrs["splits"] for i in group[f"{s}/id"][:]}
    assert len(stored) == 9 and not any(i.startswith("shared/") or i == "chair/leak" for i in stored)
    assert {"shared/", "chair/leak.txt"} <= {f["id"] for f in group.attrs["failures"]}


def test_follow_links_reads_them_but_never_walks_a_linked_tree_and_hashes_only_when_set(linked, tmp_path):
    root, outside = linked
    catalog = sources.scan(_params(root, follow_links=True), tmp_path / "data")
    ids = {it.id for items in catalog.splits.values() for it in items}
    assert {"shared/loose", "shared/secret", "chair/leak"} <= ids
    assert not [f for f in catalog.failures if "buried" in f["path"] or f["path"].endswith(".py")]
    default, followed = (
        _params(root).fingerprint_params(),
        _params(root, follow_links=True).fingerprint_params(),
    )
    assert "follow_links" not in default and followed["follow_links"] is True  # old fingerprints unchanged


def test_a_release_reached_only_through_a_link_is_one_line_naming_the_option(tmp_path):
    real, root = tmp_path / "elsewhere", tmp_path / "root"
    write_shapenet55(real)
    root.mkdir()
    (root / "shapenet_pc").symlink_to(real / "shapenet_pc")
    (root / "ShapeNet-55").symlink_to(real / "ShapeNet-55")  # the lists are read; the points are not
    with pytest.raises(LayoutError) as err:
        sources.scan(PrepareParams(source="shapenet", root=str(root)), tmp_path / "data")
    assert (
        "--set prepare.follow_links=true" in err.value.hint and str(real / "shapenet_pc") in err.value.message
    )
    followed = sources.scan(
        PrepareParams(source="shapenet", root=str(root), follow_links=True), tmp_path / "d"
    )
    assert sum(len(v) for v in followed.splits.values()) == 7  # every listed id (a missing file fails later)


def test_per_file_lines_and_attrs_are_capped_with_counts_by_extension(tmp_path, caplog):
    root = tmp_path / "root"
    for k, cls in enumerate(("chair", "table")):
        for i in range(3):
            _cloud(root / cls / f"{cls}_{i}.npy", 10 * k + i)
    (root / "chair" / "vendor").mkdir()
    for k in range(230):  # not read: no reader takes .py (scan failures)
        (root / "chair" / "vendor" / f"m{k}.py").write_text("x = 1\n")
    (root / "junk").mkdir()
    for k in range(70):  # read as point files, and fail: chunk failures, their rows removed by compaction
        (root / "junk" / f"bad{k:02d}.xyz").write_text("not a point\n")
    with caplog.at_level(logging.WARNING, logger="i2p"):
        result = prepare(_params(root), tmp_path / "data", "stray")
    lines = [r.getMessage() for r in caplog.records]
    skipped = [m for m in lines if m.startswith("skipped ")]
    assert len(skipped) == 20, len(skipped)
    assert "… and 280 more skipped: 230 .py, 50 .xyz" in lines  # the chunks' 70 are logged first
    attrs = zarr.open_group(str(result.path), mode="r").attrs
    assert len(attrs["failures"]) == 100 and all(
        f["id"] and f["path"] and f["reason"] for f in attrs["failures"]
    )
    omitted = attrs["failures_omitted"]
    assert omitted == {"count": 200, "by_extension": {".py": 130, ".xyz": 70}}  # scan failures listed first
    assert attrs["counts"] == {"test": 2, "train": 4}  # the 70 bad rows compacted away
    rows = [f for fs in attrs["chunk_failures"].values() for f in fs]
    assert len(rows) == 70 and all(set(f) == {"row"} for f in rows)  # rows only, once complete
    assert len(attrs["chunk_failures"]) < 30 and "warnings_omitted" not in attrs
