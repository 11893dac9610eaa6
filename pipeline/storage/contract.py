"""The stage contract's types, low enough for every stage body to import.

* :class:`Context`: what one command plans with (config, data root, dataset, ranks, pinned stores) and
  :class:`Reads`, what the command has already read from the data root;
* :class:`Plan`: one stage planned for one dataset (params, resolved identity, fingerprint, output, the
  plans of what it needs, what the output recorded before);
* :class:`Recorded`: what an output on disk says about itself;
* :class:`StageBody`: ``run(plan, ctx) -> output``, the one signature of every stage body. A body trusts
  the plan: its identity (weights sha256, resolved precision), fingerprint and output are decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline.core.config import Config
from pipeline.core.devices import Distributed
from pipeline.core.stage_params import StageParams
from pipeline.storage import datasets
from pipeline.storage.remote import absolute
from pipeline.storage.store import StoreState, read_state


class Reads:
    """What one command read from the data root (dataset records, store states), each read once.

    The runner forgets a store's state when it writes the store and keeps the record it saves, so what
    is cached here is what is on disk for the rest of the command."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], datasets.DatasetRecord | None] = {}
        self._states: dict[str, tuple[bool, StoreState | None]] = {}

    def dataset(self, data_root: Path, name: str) -> datasets.DatasetRecord | None:
        """``data/datasets/<name>.json`` (None when the dataset was never prepared)."""
        key = (str(data_root), name)
        if key not in self._records:
            self._records[key] = datasets.load(data_root, name)
        return self._records[key]

    def save_dataset(self, data_root: Path, record: datasets.DatasetRecord) -> None:
        """Write a dataset record and keep it as this command's view of it."""
        datasets.save(data_root, record)
        self._records[(str(data_root), record.name)] = record

    def state(self, path: Path, progress: bool = True) -> StoreState | None:
        """:func:`pipeline.storage.store.read_state`, read once per path (again only for progress)."""
        hit = self._states.get(str(path))
        if hit is None or (progress and not hit[0]):
            hit = (progress, read_state(path, progress))
            self._states[str(path)] = hit
        return hit[1]

    def forget(self, path: Path) -> None:
        """The store at ``path`` was written: read it again next time."""
        self._states.pop(str(path), None)


@dataclass(frozen=True)
class Context:
    """What a command plans with: the config (stages.yaml + overrides), where data lives, which dataset."""

    config: Config
    data_root: Path
    dataset: str
    offline: bool = False
    dist: Distributed = Distributed()
    pins: dict[str, Path] = field(default_factory=dict)  # stage → an output to use as is (a run's stores)
    # where new stores go (a folder or an fsspec URL); None: the data root
    store_root: Path | str | None = None
    reads: Reads = field(
        default_factory=Reads, compare=False, repr=False
    )  # shared by contexts derived from it

    def stores_under(self) -> Path:
        """The root new stores go under: ``store_root`` made absolute, else the data root."""
        return absolute(self.store_root) if self.store_root else self.data_root


@dataclass(frozen=True)
class Recorded:
    """An output on disk: its fingerprint, the params that made it and its upstream fingerprints."""

    path: Path
    fingerprint: str
    params: dict[str, Any]
    upstream: dict[str, str]
    identity: dict[str, Any] = field(
        default_factory=dict
    )  # what the fingerprint hashed (e.g. weights_sha256)


@dataclass(frozen=True)
class Plan:
    """One stage planned for one dataset: what it builds, where, and from what."""

    stage: str
    dataset: str
    params: StageParams
    identity: dict[str, Any]  # what the fingerprint hashes (params, resolved where needed)
    fingerprint: str
    out: Path
    needs: dict[str, Plan]
    recorded: Recorded | None  # the output this dataset/run had for the stage before (for "changed: …")
    from_run: bool = False  # a store pinned by a run's config.yaml (not the dataset's current one)


class StageBody(Protocol):
    """A stage body: brings ``plan.out`` up to date and returns it."""

    def __call__(self, plan: Plan, ctx: Context) -> Path: ...
