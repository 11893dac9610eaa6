"""Per-file reports that stay small whatever the input holds: a folder of 30,000 stray files is a few
lines of log and a few kilobytes of attrs, never 30,000 of each.

* :class:`CappedLog` logs the first :data:`LOGGED` lines of one kind, counts the rest by file extension and
  says so in one line at the end (``… and 29,983 more skipped: 29,980 .txt, 3 .py``);
* :func:`capped` keeps the first :data:`KEPT` entries of a list in full (for a store's ``failures`` and
  ``warnings`` attrs) and summarises the rest as ``{"count": n, "by_extension": {".txt": n1, …}}``;
* :func:`trimmed` is what an entry past the first :data:`KEPT` keeps while a store fills: its ``row`` and
  ``ext`` (enough to compact the store and count the entry; docs/pipeline.md, "Stores").
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import PurePath
from typing import Any

LOGGED = 20  # per-file lines of one kind a command logs before it only counts
KEPT = 100  # entries a store's failures / warnings attrs keep in full


def extension(path: Any) -> str:
    """``".txt"`` for ``"a/b.TXT"``, ``"(none)"`` for a name without one (a folder, ``README``)."""
    return PurePath(str(path)).suffix.lower() or "(none)"


def by_extension(counts: Counter | dict[str, int]) -> str:
    """``"29,980 .txt, 3 .py"``: counts by extension, the most frequent first (ties by name)."""
    return ", ".join(f"{n:,} {ext}" for ext, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


class CappedLog:
    """Log the first ``limit`` lines of one kind (``what``: "skipped", "warnings"); count the others by the
    extension of their file; :meth:`close` logs one line for those left out. Usable as a context manager."""

    def __init__(self, logger: logging.Logger, what: str, limit: int = LOGGED, level: int = logging.WARNING):
        self.logger, self.what, self.limit, self.level = logger, what, limit, level
        self.logged = 0
        self.left_out: Counter = Counter()

    def add(self, path: Any, message: str, *args: Any) -> None:
        """Log ``message % args`` (about the file ``path``) while under the limit, else count it."""
        if self.logged < self.limit:
            self.logged += 1
            self.logger.log(self.level, message, *args)
        else:
            self.left_out[extension(path)] += 1

    def close(self) -> None:
        """One line for the lines left out (nothing when none were); counting starts again."""
        if self.left_out:
            n = sum(self.left_out.values())
            self.logger.log(
                self.level, "… and %s more %s: %s", f"{n:,}", self.what, by_extension(self.left_out)
            )
            self.left_out = Counter()

    def __enter__(self) -> CappedLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def trimmed(entry: dict[str, Any]) -> dict[str, Any]:
    """What an entry past the first :data:`KEPT` keeps: its ``row`` (when it has one) and ``ext``."""
    kept = {"row": entry["row"]} if "row" in entry else {}
    return {**kept, "ext": entry.get("ext") or extension(entry.get("path", ""))}


def is_full(entry: dict[str, Any]) -> bool:
    """An entry kept in full (with its path), not a :func:`trimmed` one."""
    return "path" in entry


def capped(
    entries: list[dict[str, Any]], keep: int = KEPT
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(the first ``keep`` full entries, in order; ``{"count": n, "by_extension": {ext: n}}`` of every other
    entry, or None when none is left out). Trimmed entries are always counted, never kept."""
    kept: list[dict[str, Any]] = []
    left_out: Counter = Counter()
    for entry in entries:
        if is_full(entry) and len(kept) < keep:
            kept.append(entry)
        else:
            left_out[trimmed(entry)["ext"]] += 1
    if not left_out:
        return kept, None
    return kept, {"count": sum(left_out.values()), "by_extension": dict(sorted(left_out.items()))}
