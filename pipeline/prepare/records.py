"""What a prepare run records about its inputs: bad inputs (``failures``) and warnings about inputs that
were read (``warnings``), per chunk while the store fills and for the whole store once it is complete.

Both stay small whatever the source holds (:mod:`pipeline.core.capped`): the log shows the first 20 lines of
each kind and one line counting the rest by extension; the attrs keep the first 100 entries of each kind in
full, and of the others, while the store fills, only ``row`` (what compaction needs) and ``ext``; a complete
store's ``failures_omitted`` / ``warnings_omitted`` count them by extension (docs/pipeline.md, "Stores").
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.core.capped import KEPT, CappedLog, capped, is_full, trimmed
from pipeline.core.errors import BadInput
from pipeline.sources.base import Item

log = logging.getLogger("i2p")

CHUNK_KEYS = {"failures": "chunk_failures", "notes": "chunk_notes"}  # kind → the attr of a filling store


class FillRecords:
    """The records of one prepare run: ``skipped`` and ``noted`` (capped logs) and, once :meth:`resume` read
    them from the store, the per-chunk records ``chunks["failures"]`` / ``chunks["notes"]``
    ({"<split>/<chunk>": [entry, …]})."""

    def __init__(self) -> None:
        self.skipped = CappedLog(log, "skipped")
        self.noted = CappedLog(log, "warnings about inputs")
        self.chunks: dict[str, dict[str, list]] = {kind: {} for kind in CHUNK_KEYS}
        self.room = dict.fromkeys(CHUNK_KEYS, KEPT)

    def resume(self, attrs: Any) -> None:
        """Start from what the store already records (a resumed run)."""
        for kind, key in CHUNK_KEYS.items():
            self.chunks[kind] = dict(attrs.get(key, {}))
            self.room[kind] = KEPT - sum(is_full(e) for v in self.chunks[kind].values() for e in v)

    def chunk(self, split: str, index: int, start: int, failures: list, notes: list) -> dict[str, Any] | None:
        """Record and log one written chunk's failures [(row, id, path, reason)] (rows of the chunk) and
        notes [(id, path, warning)]; the attrs to write before the chunk counts as done (None: none)."""
        key = f"{split}/{index}"
        if failures:
            self._add("failures", key, [{"split": split, "row": start + r, "id": i, "path": p, "reason": why}
                                        for r, i, p, why in failures])  # fmt: skip
        if notes:
            self._add("notes", key, [{"split": split, "id": i, "path": p, "warning": w} for i, p, w in notes])
        for i, p, w in notes:
            self.noted.add(p, "%s (%s): %s", i, p, w)
        for _, i, p, why in failures:
            self.skipped.add(p, "skipped %s (%s): %s", i, p, why)
        return {CHUNK_KEYS[k]: v for k, v in self.chunks.items()} if failures or notes else None

    def _add(self, kind: str, key: str, entries: list[dict]) -> None:
        n = max(0, min(len(entries), self.room[kind]))
        self.chunks[kind][key] = entries[:n] + [trimmed(e) for e in entries[n:]]
        self.room[kind] -= n

    def finish(self, scanned: list[dict], duplicates: list[dict]) -> tuple[list[dict], list[dict]]:
        """Log the failures found when the source was scanned and close the logs; (every failure: scanned,
        duplicates, then the chunks' in chunk order; every warning)."""
        for f in scanned:
            self.skipped.add(f["path"], "skipped %s (%s): %s", f["id"], f["path"], f["reason"])
        self.skipped.close()
        self.noted.close()
        chunks = self.chunks
        failures = (
            scanned + duplicates + [f for k in sorted(chunks["failures"]) for f in chunks["failures"][k]]
        )
        return failures, [n for k in sorted(chunks["notes"]) for n in chunks["notes"][k]]


def complete_attrs(failures: list[dict], warnings: list[dict], counts: dict[str, int], attrs: Any) -> dict:
    """The attrs a finished points store gets: ``failures`` and ``warnings`` (the first KEPT of each in full;
    ``failures_omitted`` / ``warnings_omitted`` ({"count", "by_extension"}) when others are left out),
    ``counts``; of the per-chunk records, only the rows of ``chunk_failures`` stay (compaction's input)."""
    out: dict[str, Any] = {"counts": counts}
    for name, entries in (("failures", failures), ("warnings", warnings)):
        out[name], omitted = capped(entries)
        if omitted is not None:
            out[f"{name}_omitted"] = omitted
    if "chunk_failures" in attrs:
        out["chunk_failures"] = {
            k: [{"row": f["row"]} for f in v] for k, v in attrs["chunk_failures"].items()
        }
    if "chunk_notes" in attrs:
        out["chunk_notes"] = {}
    return out


def refuse_emptied_splits(splits: dict[str, list], counts: dict[str, int], failures: list[dict]) -> None:
    """A split whose every object failed is an error, never a complete store of 0 objects."""
    for split, items in sorted(splits.items()):
        if items and counts.get(split, 0) == 0:
            full = [f for f in failures if is_full(f) and f.get("split", split) == split]
            reasons = [f"{f['id']}: {f['reason']}" for f in full][:3] or ["see the store's failures"]
            first = "; ".join(reasons)
            raise BadInput(
                f"every one of the {len(items)} objects of the {split} split failed (first: {first})",
                "fix the inputs (the store keeps what was read; it is not marked complete), or check --root",
            )


def drop_duplicates(
    splits: dict[str, list[Item]], skipped: CappedLog
) -> tuple[dict[str, list[Item]], list[dict]]:
    """Keep the first item of every id (over all splits, in split order); record (and log) the others."""
    seen: dict[str, Item] = {}
    kept: dict[str, list[Item]] = {}
    failures = []
    for split in sorted(splits):
        kept[split] = []
        for item in splits[split]:
            if item.id in seen:
                reason = f"duplicate id, already read from {seen[item.id].path}"
                failures.append(
                    {"split": split, "row": -1, "id": item.id, "path": item.path, "reason": reason}
                )
                skipped.add(item.path, "skipped %s (%s): %s", item.id, item.path, reason)
                continue
            seen[item.id] = item
            kept[split].append(item)
    return kept, failures
