"""Where a store lives: a local folder or an fsspec URL (``s3://bucket/prefix/…``, ``gs://…``, …).

A *location* is a :class:`pathlib.Path` for a local folder and a :class:`upath.UPath` (universal_pathlib:
the pathlib API over fsspec) for a URL, so code that joins, names, lists and tests stores
(``root / "points" / name``, ``.exists()``, ``.glob``) is the same for both. Zarr opens either from
``str(location)``: a local path, or a URL it opens with its ``FsspecStore``. No storage options are
passed: fsspec's filesystem (s3fs for ``s3://``) takes credentials and endpoint from its usual
sources, e.g. ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_ENDPOINT_URL`` /
``AWS_PROFILE``, ``~/.aws/config``, or fsspec's config files; requests are signed (never anonymous).

Never call ``Path(x)`` on a value that may be a URL (``Path("s3://b/k")`` is ``s3:/b/k``): use
:func:`location`. Locks (``flock``) need a local file: a store on a URL is locked through a file in a
per-machine folder (:func:`lock_file`), so two writers of one store on one machine still exclude each
other, while writers on different machines are not detected (docs/object-storage.md, "How it works").
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from pipeline.core.errors import StoreError

LOCAL_SCHEMES = ("file://", "local://")


def is_url(where: Any) -> bool:
    """True for a location on a remote filesystem (``scheme://…`` other than ``file://``)."""
    text = str(where)
    return "://" in text and not text.startswith(LOCAL_SCHEMES)


def location(where: str | os.PathLike) -> Path:
    """``where`` as a path object: a ``UPath`` for a URL (also when given one), else a local ``Path``.

    Errors: StoreError when no fsspec filesystem for the URL's scheme is installed (e.g. s3fs)."""
    if isinstance(where, Path) and not is_url(where):
        return where
    text = str(where)
    if text.startswith(LOCAL_SCHEMES):
        return Path(text.split("://", 1)[1])
    if not is_url(text):
        return Path(text)
    import fsspec
    from upath import UPath

    try:
        fsspec.get_filesystem_class(text.split("://", 1)[0])
    except (ImportError, ValueError) as err:
        raise StoreError(
            f"cannot open {text}: {err}",
            "for s3:// install s3fs (pip install 'i2p[s3]'); for other schemes the fsspec package it names",
        ) from None
    return UPath(text)


def absolute(where: str | os.PathLike) -> Path:
    """:func:`location`, with a local path made absolute (``~`` expanded): a root that records name."""
    loc = location(where)
    return loc if is_url(loc) else loc.expanduser().resolve()


def lock_file(store: Path, suffix: str) -> Path:
    """The local file whose ``flock`` guards ``store``: ``<store><suffix>`` beside a local store; for a
    URL, ``<tmp>/i2p-locks-<uid>/<name>-<sha256(url)[:16]><suffix>`` on this machine."""
    if not is_url(store):
        return Path(str(store) + suffix)
    digest = hashlib.sha256(str(store).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"i2p-locks-{os.getuid()}"
    return folder / f"{location(store).name}-{digest}{suffix}"


def relative(path: str | os.PathLike, root: Path) -> str:
    """``path`` relative to ``root`` when it lies under it, else as given; a URL as itself (records, logs)."""
    if is_url(path):
        return str(path)
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)
