"""Dataset records: which source a dataset name is bound to, and which outputs the user built for it.

``<data-root>/datasets/<name>.json`` (written atomically, read without locks)::

    {"name": "mymeshes",
     "source": {"source": "folder", "root": "/abs/path", "variant": "obj-bg"},   # bound at first prepare
     "current": {"prepare": "points/mymeshes-1a2b3c4d.zarr",                     # what later commands use
                 "render": "views/mymeshes-….zarr",
                 "cache-features": "features/mymeshes-tiny-random-….zarr",      # the last teacher built
                 "cache-features/tiny-random": "features/…"},                    # per teacher
     "run": "quick"}                                                             # the last run trained on it

A name maps to one source: preparing another root (or source, or ScanObjectNN variant) under a name
already taken is an error: datasets never shadow each other. The record is updated by the stage
runner after a stage's output is complete, so "current" always names complete outputs.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.names import check_name
from pipeline.storage.remote import is_url, location
from pipeline.storage.store import atomic_write_bytes

BINDING_KEYS = ("source", "root", "variant")  # what a dataset name is bound to


@dataclass
class DatasetRecord:
    """One dataset's binding and current outputs (paths relative to the data root)."""

    name: str
    source: dict[str, Any] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)
    run: str | None = None

    def output(self, data_root: Path, key: str) -> Path | None:
        """Absolute path of the current output ``key`` ("prepare", "cache-features/<teacher>", …); a store
        on object storage is recorded by its URL."""
        rel = self.current.get(key)
        if rel and is_url(rel):
            return location(rel)
        return Path(data_root) / rel if rel else None

    def teachers(self) -> list[str]:
        """Teachers whose features were built for this dataset, in record order."""
        return [k.split("/", 1)[1] for k in self.current if k.startswith("cache-features/")]


def record_path(data_root: Path, name: str) -> Path:
    """``<data root>/datasets/<name>.json``; ConfigError for a dataset name that is not one path component."""
    return Path(data_root) / "datasets" / f"{check_name('dataset', name)}.json"


def load(data_root: Path, name: str) -> DatasetRecord | None:
    listed = Path(data_root) / "datasets" / f"{name}.json"  # a record made before names were checked reads
    path = listed if "/" not in name and listed.is_file() else record_path(data_root, name)
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    return DatasetRecord(raw["name"], raw.get("source", {}), raw.get("current", {}), raw.get("run"))


def save(data_root: Path, record: DatasetRecord) -> None:
    payload = {"name": record.name, "source": record.source, "current": record.current, "run": record.run}
    atomic_write_bytes(record_path(data_root, record.name), json.dumps(payload, indent=1).encode())


def names(data_root: Path) -> list[str]:
    """Every dataset with a record under the data root, sorted."""
    folder = Path(data_root) / "datasets"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def describe_source(source: dict[str, Any]) -> str:
    if source.get("source") in ("synthetic", "synthetic-parts"):  # generated: no root
        return f"the {source['source']} source"
    extra = f" (variant {source['variant']})" if source.get("source") == "scanobjectnn" else ""
    return f"{source.get('source')} at {source.get('root')}{extra}"


def binding_of(params: dict[str, Any]) -> dict[str, Any]:
    """The part of prepare's params a dataset name is bound to."""
    binding = {k: params.get(k) for k in BINDING_KEYS}
    if binding["source"] != "scanobjectnn":
        binding["variant"] = None
    return binding


def check_binding(
    data_root: Path, name: str, params: dict[str, Any], record: DatasetRecord | None = None
) -> None:
    """A name maps to one source: raise when ``name`` is bound to another source/root/variant
    (``record``: the dataset's record when already read)."""
    record = record or load(data_root, name)
    if record is None or not record.source:
        return
    wanted = binding_of(params)
    if record.source != wanted:
        raise ConfigError(
            f"dataset name {name!r} is already bound to {describe_source(record.source)}; "
            f"this prepare reads {describe_source(wanted)}",
            f"give this source its own name with --dataset NAME (or remove {record_path(data_root, name)} "
            "and the stores of the old one)",
        )


def unknown_dataset(data_root: Path, name: str) -> ConfigError:
    """The error for a dataset name with no record, with "did you mean" when one is close."""
    known = names(data_root)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        hint = f"did you mean {close[0]!r}? (prepared: {', '.join(known)})"
    elif known:
        hint = f"prepared datasets: {', '.join(known)}; prepare this one with `i2p prepare SOURCE --root PATH --dataset {name}`"
    else:
        hint = "prepare it first: `i2p prepare SOURCE --root PATH` (or `i2p run` for the synthetic demo)"
    return ConfigError(f"dataset {name!r} has not been prepared under {data_root}", hint)


def choose(data_root: Path, name: str | None, default: str = "synthetic") -> str:
    """``name`` if given; else the only dataset with a record; else ``default`` when there is none."""
    if name:
        return name
    known = names(data_root)
    if len(known) == 1:
        return known[0]
    if not known:
        return default
    raise ConfigError(
        f"several datasets are prepared under {data_root}: {', '.join(known)}",
        "choose one with --dataset NAME",
    )
