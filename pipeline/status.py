"""``i2p status``: every declared stage per dataset, and every store on disk.

Reads store attrs and ``done`` masks only (no torch, no source scan), so it answers in well under a
second: up to date, partial k/n chunks, missing, or which parameter differs from stages.yaml.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from pipeline.config import Config
from pipeline.console import console
from pipeline.runner import STAGE_FUNCS, prepared_datasets, stage_status
from pipeline.store import STORE_KINDS, list_states

STYLES = {"up to date": "green", "partial": "yellow", "missing": "red", "changed": "magenta"}


def status_rows(config: Config, data_root: Path, dataset: str | None) -> list[tuple[str, str, str, str]]:
    """(stage, dataset, state, path) for every declared stage and dataset."""
    datasets = [dataset] if dataset else sorted(prepared_datasets(data_root)) or ["synthetic"]
    rows = []
    for name in datasets:
        for stage in config.order():
            if stage not in STAGE_FUNCS:
                rows.append((stage, name, "not implemented in this version", ""))
                continue
            row = stage_status(config, data_root, stage, name)
            rows.append((stage, name, row.state, _rel(row.path, data_root)))
    return rows


def store_rows(data_root: Path) -> list[tuple[str, str, str]]:
    """(store path, stage, state) for every store under the data root."""
    rows = []
    for stage in STORE_KINDS:
        for state in list_states(data_root, stage):
            done, total = state.progress
            label = "complete" if state.complete else f"partial {done}/{total} chunks"
            rows.append((_rel(state.path, data_root), stage, label))
    return rows


def print_status(config: Config, data_root: Path, dataset: str | None) -> None:
    table = Table(title=f"stages ({config.path})", title_justify="left")
    for col in ("stage", "dataset", "state", "store"):
        table.add_column(col)
    for stage, name, state, path in status_rows(config, data_root, dataset):
        style = next((v for k, v in STYLES.items() if state.startswith(k)), "dim")
        table.add_row(stage, name, f"[{style}]{state}[/]", path)
    console.print(table)
    stores = store_rows(data_root)
    if stores:
        listing = Table(title=f"stores under {data_root}", title_justify="left")
        for col in ("store", "stage", "state"):
            listing.add_column(col)
        for row in stores:
            listing.add_row(*row)
        console.print(listing)


def _rel(path: Path | None, root: Path) -> str:
    if path is None:
        return ""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)
