"""``i2p gc`` (as ``dvc gc``): what no run and no dataset's current stage uses, and its size.

In use: every output a dataset record names (its current points, views and features of every teacher)
and every store a run's config.yaml names. Everything else under ``points/``, ``views/`` and
``features/`` is garbage, with its lock files; so is the optimizer state inside the ``ckpt-last.pt`` of
a run that reached its last epoch (not one stopped at ``--max-steps``, which may be extended exactly) (≈ two thirds of the file: AdamW keeps two moments per parameter), which only an
extension of that run would need. So are temporaries an atomic write left behind
(``.<name>.tmp-<pid>``) when that process is no longer running on this machine and the file is an hour
old (a data root shared by several machines may hold another machine's live writer). Nothing is removed
unless asked.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.tempfiles import TEMPORARY
from pipeline.storage import datasets, rundir
from pipeline.storage.store import STORE_KINDS, store_bytes


@dataclass(frozen=True)
class Garbage:
    path: Path
    kind: str  # "store" | "lock" | "optimizer state" | "temporary"
    bytes: int
    why: str


def used_outputs(data_root: Path) -> set[Path]:
    """Every store a dataset record or a run's config.yaml names (resolved paths)."""
    used: set[Path] = set()
    for name in datasets.names(data_root):
        record = datasets.load(data_root, name)
        for key in record.current if record else {}:
            used.add(record.output(data_root, key).resolve())
    for run in rundir.list_runs(data_root):
        used |= {Path(p).resolve() for p in rundir.input_paths(run.config or {}).values() if p}
    return used


def collect(data_root: Path) -> list[Garbage]:
    used = used_outputs(data_root)
    found = []
    for kind in STORE_KINDS.values():
        folder = Path(data_root) / kind
        for store in sorted(folder.glob("*.zarr")) if folder.is_dir() else []:
            if store.resolve() not in used:
                found.append(
                    Garbage(
                        store, "store", store_bytes(store), "no dataset's current stage and no run uses it"
                    )
                )
        for lock in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
            stem = Path(str(lock).split(".zarr")[0] + ".zarr")
            if not stem.exists() or stem.resolve() not in used:
                found.append(
                    Garbage(lock, "lock", lock.stat().st_size, "lock file of a store that is gone or unused")
                )
    for run in rundir.list_runs(data_root):
        ckpt = rundir.checkpoint(run.path)
        if rundir.finished_for_good(run.path) and ckpt.is_file() and rundir.has_optimizer_state(run.path):
            size = ckpt.stat().st_size
            found.append(
                Garbage(
                    ckpt,
                    "optimizer state",
                    size * 2 // 3,
                    f"run {run.path.name} is finished; only extending it needs the optimizer state",
                )
            )
    return found + stale_temporaries(data_root)


STALE_AFTER_S = 3600


def stale_temporaries(data_root: Path) -> list[Garbage]:
    """Temporaries of atomic writes (records, run files, reports, evaluations, exports, store attrs) whose
    writer is not a live process here and that are older than an hour. Not searched: inside stores."""
    root, found, now = Path(data_root), [], time.time()
    places = [root / "datasets", root / "exports", *(root / kind for kind in STORE_KINDS.values())]
    runs = root / "runs"
    places += [runs, *(p for p in runs.rglob("*") if p.is_dir())] if runs.is_dir() else []
    for folder in places:
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            match = TEMPORARY.fullmatch(path.name)
            if not match or _alive(int(match.group(2))) or now - path.stat().st_mtime < STALE_AFTER_S:
                continue
            size = store_bytes(path) if path.is_dir() else path.stat().st_size
            why = f"left by process {match.group(2)}, not running here; written {(now - path.stat().st_mtime) / 3600:.1f} h ago"
            found.append(Garbage(path, "temporary", size, why))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove(items: list[Garbage]) -> int:
    """Delete stores and locks, strip optimizer state from checkpoints; returns bytes freed."""
    freed = 0
    for g in items:
        if g.kind == "store":
            shutil.rmtree(g.path, ignore_errors=True)
        elif g.kind == "lock" or (g.kind == "temporary" and not g.path.is_dir()):
            g.path.unlink(missing_ok=True)
        elif g.kind == "temporary":
            shutil.rmtree(g.path, ignore_errors=True)
        else:
            before = g.path.stat().st_size
            rundir.strip_optimizer_state(g.path.parent)
            freed += before - g.path.stat().st_size
            continue
        freed += g.bytes
    return freed
