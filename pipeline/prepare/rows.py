"""What every prepare chunk does with its rows, whatever it stores: read one object, recording a bad
input instead of stopping; write the labels and ids of the chunk's rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from pipeline.core.errors import BadInput, I2PError, LayoutError, ResourceError, UnsafeFile
from pipeline.core.params import PrepareParams
from pipeline.sources.base import Item

T = TypeVar("T")


def read_or_record(
    read: Callable[[], T],
    item: Item,
    params: PrepareParams,
    row: int,
    failures: list[tuple[int, str, str, str]],
) -> T | None:
    """``read()``, or None after appending ``(row, id, path, reason)`` to ``failures`` when the input is bad.

    With ``params.strict`` a bad input raises BadInput instead. A missing Python package (ImportError),
    a layout or unsafe-file error is the environment's or the source's, never the file's: it is raised.
    Running out of memory raises ResourceError and records nothing against the file.
    """
    try:
        return read()
    except (ImportError, LayoutError, UnsafeFile):  # the environment's or the source's, not the file's
        raise
    except MemoryError as err:  # the machine's, not the file's: stop, record nothing against it
        raise ResourceError(
            f"out of memory reading {item.path} ({item.id}): {err}",
            "lower prepare.workers, prepare.oversample or prepare.points; the file itself may be fine, "
            "and nothing was recorded against it (a rerun retries it)",
        ) from None
    except Exception as err:
        reason = err.message if isinstance(err, I2PError) else f"{type(err).__name__}: {err}"
        if params.strict:
            raise BadInput(
                f"bad input {item.id} ({item.path}): {reason}",
                "fix or remove the file, or run without --strict to record it and go on",
            ) from None
        failures.append((row, item.id, item.path, reason))
        return None


def write_labels_and_ids(group: Any, split: str, start: int, items: list[Item], failures: list) -> None:
    """Write ``label`` (int32, −1 for a bad input) and ``id`` ("" for a bad input) of rows
    ``start … start + len(items)`` of ``group[split]``."""
    ok = np.ones(len(items), bool)
    for row, *_ in failures:
        ok[row] = False
    group[f"{split}/label"][start : start + len(items)] = np.where(ok, [it.label for it in items], -1).astype(
        np.int32
    )
    ids = np.array([it.id if k else "" for it, k in zip(items, ok, strict=True)])
    group[f"{split}/id"][start : start + len(items)] = ids
