"""``i2p reproduce``: the paper's protocol as one command (pipeline/runner/reproduce.py), ending with the
paper's table beside ours under both protocols. Importing this module costs only typer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli_options import request, session, with_global_options
from cli_output import say


@with_global_options
def reproduce_command(
    ctx: typer.Context,
    shapenet: Annotated[Path | None, typer.Option("--shapenet", help="ShapeNet-55 (pre-training).")] = None,
    modelnet40_h5: Annotated[
        Path | None, typer.Option("--modelnet40-h5", help="modelnet40_ply_hdf5_2048 (SVM, the monitor).")
    ] = None,
    modelnet40: Annotated[
        Path | None, typer.Option("--modelnet40", help="modelnet40_normal_resampled (fine-tuning, few-shot).")
    ] = None,
    scanobjectnn: Annotated[
        Path | None, typer.Option("--scanobjectnn", help="ScanObjectNN h5 files.")
    ] = None,
    shapenetpart: Annotated[
        Path | None,
        typer.Option("--shapenetpart", help="shapenetcore_partanno_segmentation_benchmark_v0_normal."),
    ] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="Run name (default i2pmae; reproduce-quick with --quick).")
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Fine-tuning seeds per recipe (mean ± std).")] = 1,
    quick: Annotated[
        bool, typer.Option("--quick", help="Generated stand-ins for every release, a few steps per stage.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan with estimated time and disk; run nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """The paper's whole protocol: prepare, pre-train with the monitor, every evaluation, then the table."""
    with session(
        ctx, interrupted="interrupted: finished steps are kept; rerun the same command to go on"
    ) as (
        config,
        root,
    ):
        import json
        from dataclasses import asdict

        from pipeline.core.errors import ConfigError
        from pipeline.runner import reproduce as rp
        from pipeline.storage import rundir
        from pipeline.storage.store import atomic_write_bytes

        roots = {
            "shapenet": shapenet, "modelnet40-h5": modelnet40_h5, "modelnet40": modelnet40,
            "scanobjectnn": scanobjectnn, "shapenetpart": shapenetpart,
        }  # fmt: skip
        if quick and any(roots.values()):
            raise ConfigError(
                "--quick stands generated data in for every release", "drop --quick or the roots"
            )
        if seeds < 1:
            raise ConfigError(f"--seeds {seeds}: at least 1", "pass --seeds 1 or more")
        run = run or ("reproduce-quick" if quick else "i2pmae")
        steps = rp.protocol(roots, run, seeds, quick)
        req = request(config, root, None, run)
        if dry_run:
            for line in rp.dry_run(req, steps):
                say(line)
            return
        rows, table = rp.reproduce(req, steps, run, quick)
        target = rundir.run_dir(root, run) / "reproduce.md"
        atomic_write_bytes(target, f"# Reproduction: run {run}\n\n{table}".encode())
        if as_json:
            say(json.dumps([asdict(r) for r in rows], indent=1))
        else:
            say(f"{table}\ntable → {target}")
