"""Symlinks that leave a source's root: reported, and neither walked nor read unless ``prepare.follow_links``.

``--root`` says what may be read. A symlink under it to a folder or file elsewhere (another data set, a home
directory, ``/usr``) would make prepare walk and read whatever lies there: a class folder linked to a tree
of 30,000 files was walked for files it could not read; one linked to ``/usr`` never finished; a linked file
outside the root was read as a point file. So, by default:

* a class folder of a ``folder`` source that is such a link is not a class: it is one entry of the store's
  ``failures`` (:func:`refusal`), and nothing under it is listed;
* every item a source found whose file lies outside the root once links are resolved (a linked file, or a
  file under a linked folder) is dropped, one failure per file (:func:`keep_inside`). When nothing is left,
  the scan stops with one line that names a link and the option.

Links that stay inside the root are followed as before. With ``prepare.follow_links=true`` links are
followed wherever they lead, but a linked class folder is still not walked for files it cannot read.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from pipeline.core.errors import LayoutError
from pipeline.sources.base import Catalog, scan_failure

log = logging.getLogger("i2p")

OPTION = "--set prepare.follow_links=true"


class Inside:
    """Where paths under ``root`` lead once symlinks are resolved: one ``lstat`` per path and folder (the
    resolved folders are remembered), so a catalog of 50,000 files costs a fraction of a second."""

    def __init__(self, root: Path):
        self.given = Path(root)
        self.real = os.path.realpath(root)
        self._known: dict[str, str] = {}

    def _resolved(self, path: Path) -> str:
        key = str(path)
        if key not in self._known:
            if path == self.given or path.parent == path or os.path.islink(path):
                self._known[key] = os.path.realpath(path)
            else:
                self._known[key] = os.path.join(self._resolved(path.parent), path.name)
        return self._known[key]

    def outside(self, path: Path | str) -> Path | None:
        """The place ``path`` leads to when that lies outside the root (symlinks resolved), else None."""
        real = self._resolved(Path(path))
        return None if real == self.real or real.startswith(self.real.rstrip(os.sep) + os.sep) else Path(real)


def refusal(path: Path, target: Path, root: Path, object_id: str, split: str = "", objects: int = 1) -> dict:
    """The failure entry of a symlink (or a file behind one) that leads out of the root."""
    what = f"its {objects} objects are" if objects > 1 else "it is"
    return scan_failure(
        object_id,
        path,
        f"not read: leads to {target}, outside the root {root} (a symlink); {what} read only with {OPTION}",
        split,
    )


def keep_inside(catalog: Catalog, root: Path, follow: bool) -> Catalog:
    """The catalog without the items whose file lies outside ``root`` (each such file: one failure); the
    catalog as it is when ``follow``. LayoutError when no item is left."""
    if follow:
        return catalog
    inside = Inside(root)
    splits, failures = {}, list(catalog.failures)
    for split, items in catalog.splits.items():
        kept, refused = [], {}
        for item in items:
            target = inside.outside(item.path)
            if target is None:
                kept.append(item)
            else:
                refused.setdefault(item.path, [target, 0])[1] += 1
        for path, (target, n) in refused.items():
            rel = os.path.relpath(path, root)
            failures.append(refusal(Path(path), target, root, rel, split, n))
        if kept:
            splits[split] = kept
    if len(failures) == len(catalog.failures):
        return catalog
    first = failures[len(catalog.failures)]
    if not splits:
        raise LayoutError(
            f"every file to read under {root} lies outside it behind a symlink, e.g. {first['path']}: "
            f"{first['reason'].partition(': ')[2].partition(';')[0]}",
            f"pass {OPTION} to read them (a download cache, e.g. a Hugging Face hub snapshot, links "
            "every file to blobs elsewhere), or point --root at the folder they lead to",
        )
    log.warning(
        "%s: %d files lie outside the root %s behind symlinks and are not read (first: %s); %s reads them",
        catalog.source,
        len(failures) - len(catalog.failures),
        root,
        first["path"],
        OPTION,
    )
    return replace(catalog, splits=splits, failures=failures)
