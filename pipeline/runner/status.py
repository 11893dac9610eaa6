"""``i2p status``: every stage per dataset, every store with its size, every run with its evaluations.

Each stage row comes from the same plan and the same state function that ``i2p run`` uses
(:func:`pipeline.runner.execute.output_state`), so status never disagrees with what run would do. No torch, no
source scan. :func:`collect` returns plain data; ``--json`` prints it (schema in docs/pipeline.md), the
default prints tables on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.config import Config
from pipeline.core.errors import ConfigError, I2PError
from pipeline.runner.execute import output_state
from pipeline.runner.plan import plan
from pipeline.runner.stages import STAGES
from pipeline.storage import datasets, rundir
from pipeline.storage.contract import Context, Reads
from pipeline.storage.remote import relative
from pipeline.storage.store import STORE_KINDS, list_states, store_bytes

STYLES = {"up to date": "green", "partial": "yellow", "missing": "red", "changed": "magenta", "error": "red"}


def stage_rows(
    config: Config, data_root: Path, dataset: str, store_root: Any = None, reads: Reads | None = None
) -> list[dict[str, Any]]:
    """One row per stage of the table: state, output, fingerprint (or the error planning gives).
    reads: what this command has already read (status reads each store and record once)."""
    ctx = Context(config, data_root, dataset, store_root=store_root, reads=reads or Reads())
    rows, memo = [], {}  # one plan per stage for all rows, as one command would make it
    for stage in STAGES:
        try:
            p = plan(stage, ctx, memo)
            state = output_state(p, ctx)
            rows.append(
                {
                    "stage": stage,
                    "state": state.label,
                    "output": relative(p.out, data_root),
                    "fingerprint": p.fingerprint[:8],
                    **state.detail,
                }
            )
        except I2PError as err:
            rows.append({"stage": stage, "state": f"error: {err.message}", "output": "", "fingerprint": ""})
    return rows


def store_rows(data_root: Path, store_root: Any = None, reads: Reads | None = None) -> list[dict[str, Any]]:
    """Every store under the store root: its stage, dataset, state and size."""
    rows, read = [], (reads or Reads()).state
    for stage in STORE_KINDS:
        for state in list_states(store_root or data_root, stage, read=read):
            done, total = state.progress
            rows.append(
                {
                    "store": relative(state.path, data_root),
                    "stage": stage,
                    "dataset": state.attrs.get("dataset"),
                    "state": "complete" if state.complete else f"partial {done}/{total} chunks",
                    "bytes": store_bytes(state.path),
                }
            )
    return rows


def run_rows(config: Config, data_root: Path) -> list[dict[str, Any]]:
    """Every run: its state, the params that differ from stages.yaml, checkpoints and evaluations."""
    declared = config.params("train").fingerprint_params()
    rows = []
    for run in rundir.list_runs(data_root):
        differ = {k: v for k, v in run.params.items() if declared.get(k) != v}
        evals = [
            {
                "kind": e.get("kind"),
                "dataset": e.get("dataset"),
                "points_store": relative(e.get("points_store") or "", data_root),
                "result": e.get("result"),
            }
            for e in rundir.list_evals(run.path)
        ]
        rows.append(
            {
                "run": run.path.name,
                "dataset": run.dataset,
                "state": run.label,
                "steps_done": run.steps_logged,
                "max_steps": (run.config or {}).get("runtime", {}).get("max_steps"),
                "epochs": run.params.get("epochs"),
                "parameters": (run.config or {}).get("parameters"),
                "params_differ": differ,
                "checkpoints": sorted(p.name for p in run.path.glob("ckpt-*.pt")),
                "bytes": store_bytes(run.path),
                "evaluations": evals,
            }
        )
    return rows


def collect(config: Config, data_root: Path, dataset: str | None, store_root: Any = None) -> dict[str, Any]:
    """The whole state: {data_root, stages_file, datasets: [{name, source, stages}], stores, runs}.
    store_root: where stores live when not under the data root (a folder or an fsspec URL)."""
    if not Path(data_root).is_dir():
        raise ConfigError(
            f"data root {data_root} does not exist",
            "check --data-root / I2P_DATA_ROOT, or run `i2p run --quick` to create one",
        )
    known = datasets.names(data_root)
    if dataset is not None and dataset not in known and dataset != "synthetic":
        raise datasets.unknown_dataset(data_root, dataset)
    names = [dataset] if dataset else (known or ["synthetic"])
    out, reads = [], Reads()
    for name in names:
        record = reads.dataset(data_root, name)
        out.append(
            {
                "name": name,
                "source": record.source if record else None,
                "stages": stage_rows(config, data_root, name, store_root, reads),
            }
        )
    return {
        "data_root": str(data_root),
        "store_root": str(store_root or data_root),
        "stages_file": str(config.path),
        "datasets": out,
        "stores": store_rows(data_root, store_root, reads),
        "runs": run_rows(config, data_root),
    }


def render_json(state: dict[str, Any]) -> str:
    return json.dumps(state, indent=1, default=str)


def size_text(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _accuracy(evals: list[dict[str, Any]]) -> str:
    parts = []
    for e in evals:
        r = e.get("result") or {}
        if "accuracy" in r:
            parts.append(f"{e['kind']} {e['dataset']}: {100 * r['accuracy']:.2f} %")
        elif "last_acc" in r and r["last_acc"]:
            parts.append(f"{e['kind']} {e['dataset']}: {100 * sum(r['last_acc']) / len(r['last_acc']):.2f} %")
    return "; ".join(parts)


def render_tables(state: dict[str, Any]) -> None:
    """Tables on stdout: stages per dataset, stores with sizes, runs (a view across runs)."""
    from rich.console import Console
    from rich.table import Table

    out = Console(soft_wrap=True)
    for ds in state["datasets"]:
        source = datasets.describe_source(ds["source"]) if ds["source"] else "not prepared yet"
        table = Table(title=f"{ds['name']} ({source})", title_justify="left")
        for col in ("stage", "state", "output"):
            table.add_column(col)
        for row in ds["stages"]:
            style = next((v for k, v in STYLES.items() if row["state"].startswith(k)), "dim")
            table.add_row(row["stage"], f"[{style}]{row['state']}[/]", row["output"])
        out.print(table)
    if state["stores"]:
        table = Table(title=f"stores under {state['store_root']}", title_justify="left")
        for col in ("store", "state", "size"):
            table.add_column(col)
        for row in state["stores"]:
            table.add_row(row["store"], row["state"], size_text(row["bytes"]))
        out.print(table)
    if state["runs"]:
        table = Table(title="runs (params that differ from stages.yaml)", title_justify="left")
        for col in ("run", "dataset", "state", "steps", "differs", "accuracy", "size"):
            table.add_column(col)
        for r in state["runs"]:
            differs = ", ".join(f"{k}={v}" for k, v in r["params_differ"].items())
            planned = f"/{r['max_steps']}" if r["max_steps"] else f" ({r['epochs']} epochs planned)"
            table.add_row(
                r["run"],
                str(r["dataset"]),
                r["state"],
                f"{r['steps_done']}{planned}",
                differs,
                _accuracy(r["evaluations"]),
                size_text(r["bytes"]),
            )
        out.print(table)
