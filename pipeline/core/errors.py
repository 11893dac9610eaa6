"""One family of errors for everything a user can cause.

Every boundary (readers, config, stage runner, model entry) raises a subclass of :class:`I2PError`
(defined in :mod:`i2pmae.errors`, so that the method code raises the same family).
The CLI prints such errors as one red line plus the hint, without a traceback (``I2P_DEBUG=1`` shows it).
A message states the rule, the offending value and where it was found; the hint says how to fix it.
"""

from __future__ import annotations

from pathlib import Path

from i2pmae.errors import I2PError, InputError, TooFewPoints
from pipeline.core.tempfiles import TEMPORARY

__all__ = ["I2PError", "InputError", "TooFewPoints", "write_error"]


class ConfigError(I2PError):
    """A parameter, override or stages.yaml entry is invalid."""


class LayoutError(I2PError):
    """A dataset root does not hold any layout we know, or a split file / h5 key is missing."""


class BadInput(I2PError):
    """One input object cannot be used (unreadable, empty, degenerate, duplicate).

    Raised by readers for a single object; the prepare stage records it in the store's ``failures``
    and skips the object, or stops the run with ``--strict``.
    """


class ResourceError(I2PError):
    """The machine ran out of something (memory): never the input's fault, so nothing is recorded against it."""


class UnsafeFile(I2PError):
    """A file asks to run code (a pickle global outside the allow-list) while it is read."""


class StoreError(I2PError):
    """A store is missing, belongs to another stage, or is in a state we cannot continue from."""


class LockError(StoreError):
    """Another process is writing the same store."""


class DamagedStore(StoreError):
    """A store's files no longer hold what was written: a checksum mismatch, a missing or truncated chunk
    file, unreadable metadata, non-finite points (``pipeline.storage.damage`` words the message: store,
    split, array, object; the hint: "rebuild: remove <store> and rerun i2p <stage> …").

    Raised in a DataLoader worker, it arrives in the main process rebuilt by torch from the worker's
    traceback text alone (``type(err)(text)``); the message and hint are recovered from its last line."""

    def __init__(self, message: str, hint: str | None = None):
        if hint is None and message.startswith("Caught ") and "Original Traceback" in message:
            last = message.rstrip().rpartition("\n")[2].partition(f"{type(self).__name__}: ")[2]
            if " (hint: " in last:
                message, _, hint = last.rpartition(" (hint: ")
                hint = hint.removesuffix(")")
            elif last:
                message = last
        super().__init__(message, hint)


class TeacherError(I2PError):
    """A 2D teacher cannot be built (unknown name, weights unavailable offline, bad checkpoint)."""


class Interrupted(I2PError):
    """Ctrl-C, or a scheduler's SIGTERM / SIGUSR1, stopped the command; the message says what was kept (a
    checkpoint, finished chunks, nothing). ``exit_code``: 128 + the signal's number (130 for Ctrl-C)."""

    exit_code: int = 130


def write_error(err: OSError, data_root: Path | None, store_root: str | None = None) -> I2PError | None:
    """One line for a write the filesystem refused: read-only or not permitted (with the working layout for a
    read-only data root), or full (with the free space). None for any other OSError (a bug: traceback)."""
    import errno
    import shutil

    where = Path(err.filename) if err.filename else None
    if where is not None and (temporary := TEMPORARY.fullmatch(where.name)):  # name the file being written
        where = where.with_name(temporary.group(1))
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        # EROFS only comes from a write; a permission error may come from a read too: say which it was not
        what = f"cannot write {where}" if err.errno == errno.EROFS else f"permission denied on {where}"
        inside = where is not None and data_root is not None and data_root in (where, *where.parents)
        stores = store_root and "://" not in store_root and where is not None
        if stores and Path(store_root).resolve() in (where, *where.parents) and not inside:
            return I2PError(
                f"{what}: {err.strerror}",
                f"the store root {store_root} is read-only: it serves the stores built there; this command "
                "would build a new one (its params differ from theirs: `i2p status` says which)",
            )
        return I2PError(
            f"{what}: {err.strerror}",
            f"data root {data_root} is read-only: runs, records and locks need a writable one; keep its stores "
            f"read-only with `i2p --store-root {data_root} --data-root <a writable folder> …`; an evaluation can "
            "write its report elsewhere with --report FILE (docs/pipeline.md)"
            if inside
            else "check that path's permissions: i2p reads it, and writes it where it is an output",
        )
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        place = where or data_root  # a write() on an open file names no file: the data root's disk then
        folder = next((p for p in (place, *place.parents) if p.exists()), None) if place else None
        free = f"{shutil.disk_usage(folder).free / 1e9:.2f} GB free" if folder else "free space unknown"
        what = f"writing {where}" if where else f"on the disk of {data_root}"
        return I2PError(
            f"no space left {what} ({free}); nothing partial is kept as finished",
            "free space (`i2p gc` lists stores and optimizer states that can go) or point --data-root / "
            "--store-root at a larger disk, then rerun: finished work is kept",
        )
    return None
